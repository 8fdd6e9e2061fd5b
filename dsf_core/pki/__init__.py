"""Development PKI and TLS helpers.

The DSF identifies an organisation by the SHA-512 thumbprint of the client
certificate it presents over mutual TLS (the Java DSF keeps the thumbprints in
an extension of the Organization resource and looks the caller up by them).
This module provides everything dsf-py needs around that:

* thumbprints of certificates (objects, PEM/DER/PKCS#12 files, and the PEM a
  reverse proxy forwards in a request header),
* a small certificate authority for development and tests (``create_ca``,
  ``issue_certificate``, ``DevPki``),
* writing and loading keys/certificates with strict file permissions and error
  messages that name the offending file (``PkiError``),
* ``ssl.SSLContext`` factories for aiohttp servers and clients, accepting PEM
  files, PKCS#12 files or in-memory ``Issued`` objects.

Only ``cryptography`` and the standard ``ssl`` module are used.  Keys generated
here are meant for development: production deployments bring certificates from
a real CA and only use the loading and SSL-context functions.
"""

from __future__ import annotations

from dsf_core.pki._base import DEFAULT_CA_COMMON_NAME, PkiError, certificate_from_header, thumbprint, thumbprint_der, thumbprint_pem
from dsf_core.pki._dev import DevPki, IssuedFiles, OrganizationFiles
from dsf_core.pki._issue import Issued, create_ca, issue_certificate, issue_client_certificate, issue_server_certificate, write_issued, write_pkcs12
from dsf_core.pki._load import load_certificate, load_certificates, load_key_and_certificate, load_private_key
from dsf_core.pki._tls import client_ssl_context, client_ssl_context_from, server_ssl_context, server_ssl_context_from

__all__ = [
    "DEFAULT_CA_COMMON_NAME",
    "DevPki",
    "Issued",
    "IssuedFiles",
    "OrganizationFiles",
    "PkiError",
    "certificate_from_header",
    "client_ssl_context",
    "client_ssl_context_from",
    "create_ca",
    "issue_certificate",
    "issue_client_certificate",
    "issue_server_certificate",
    "load_certificate",
    "load_certificates",
    "load_key_and_certificate",
    "load_private_key",
    "server_ssl_context",
    "server_ssl_context_from",
    "thumbprint",
    "thumbprint_der",
    "thumbprint_pem",
    "write_issued",
    "write_pkcs12",
]
