"""``dsf pki``: a development PKI for local DSF nodes, and certificate thumbprints.

``init`` creates a CA directory, ``issue`` adds certificates to it (a server
and client pair per organisation with ``--organization``), and ``thumbprint``
prints the SHA-512 thumbprint by which DSF nodes recognise an organisation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dsf_core.cli.main import CommandError
from dsf_core.pki import (
    DEFAULT_CA_COMMON_NAME,
    DevPki,
    IssuedFiles,
    PkiError,
    load_certificate,
    thumbprint,
)

DEFAULT_DNS_NAMES = ("localhost",)
DEFAULT_IP_ADDRESSES = ("127.0.0.1",)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``pki`` command group to the top-level ``dsf`` parser."""
    parser = subparsers.add_parser(
        "pki",
        help="development PKI and certificate thumbprints",
        description="Create a development CA, issue TLS certificates and compute DSF thumbprints.",
    )
    commands = parser.add_subparsers(dest="pki_command", metavar="COMMAND")
    commands.required = True

    init = commands.add_parser(
        "init",
        help="create a development CA in a directory",
        description="Create DIR/ca.crt and DIR/ca.key (an unencrypted key: for development only).",
    )
    init.add_argument("directory", metavar="DIR", type=Path)
    init.add_argument("--cn", default=DEFAULT_CA_COMMON_NAME, help="CA common name (default: %(default)s)")
    init.add_argument("--force", action="store_true", help="replace an existing CA in DIR")
    init.set_defaults(func=cmd_init)

    issue = commands.add_parser(
        "issue",
        help="issue a certificate from the development CA",
        description=(
            "Issue DIR/NAME.crt and DIR/NAME.key, or with --organization the server and client "
            "certificates DIR/NAME/server.* and DIR/NAME/client.* of organisation NAME. "
            "Existing files of the same name are replaced."
        ),
    )
    issue.add_argument("directory", metavar="DIR", type=Path, help="PKI directory created by 'dsf pki init'")
    issue.add_argument("name", metavar="NAME", help="common name / organisation identifier")
    issue.add_argument("--server", action="store_true", help="TLS server certificate (EKU serverAuth)")
    issue.add_argument("--client", action="store_true", help="TLS client certificate (EKU clientAuth)")
    issue.add_argument(
        "--organization",
        action="store_true",
        help="server and client certificate pair for organisation NAME",
    )
    issue.add_argument(
        "--dns",
        metavar="NAME",
        nargs="+",
        action="extend",
        help="DNS subject alternative names of a server certificate (default: localhost)",
    )
    issue.add_argument(
        "--ip",
        metavar="ADDR",
        nargs="+",
        action="extend",
        help="IP subject alternative names of a server certificate (default: 127.0.0.1)",
    )
    issue.set_defaults(func=cmd_issue)

    thumb = commands.add_parser(
        "thumbprint",
        help="print the SHA-512 thumbprint of a certificate",
        description="Print the lower-case hex SHA-512 thumbprint of a PEM, DER or PKCS#12 certificate.",
    )
    thumb.add_argument("certificate", metavar="CERT", type=Path)
    thumb.add_argument(
        "--password-file",
        metavar="F",
        type=Path,
        help="file holding the PKCS#12 password (trailing newline ignored)",
    )
    thumb.set_defaults(func=cmd_thumbprint)


def cmd_init(args: argparse.Namespace) -> int:
    try:
        pki = DevPki.init(args.directory, common_name=args.cn, overwrite=args.force)
    except (PkiError, ValueError, OSError) as exc:
        message = _describe(exc)
        if not args.force and any((args.directory / n).exists() for n in (DevPki.CA_CERT, DevPki.CA_KEY)):
            message += " (use --force to replace it, invalidating all certificates it issued)"
        raise CommandError(message) from exc
    print(f"CA certificate: {pki.ca_cert_path}")
    print(f"CA key:         {pki.ca_key_path}")
    print(f"CA thumbprint:  {pki.ca.thumbprint}")
    return 0


def _print_files(label: str, files: IssuedFiles) -> None:
    print(f"{label} certificate: {files.cert_path}")
    print(f"{label} key:         {files.key_path}")
    print(f"{label} thumbprint:  {files.thumbprint}")


def cmd_issue(args: argparse.Namespace) -> int:
    if not (args.server or args.client or args.organization):
        raise CommandError("choose what to issue: --server, --client and/or --organization")
    if args.organization and (args.server or args.client):
        raise CommandError("--organization already issues a server and a client certificate; "
                           "do not combine it with --server/--client")
    if (args.dns or args.ip) and not (args.server or args.organization):
        raise CommandError("--dns/--ip only apply to server certificates (--server or --organization)")
    # Explicit SANs replace the localhost defaults entirely.
    if args.dns or args.ip:
        dns_names, ip_addresses = tuple(args.dns or ()), tuple(args.ip or ())
    else:
        dns_names, ip_addresses = DEFAULT_DNS_NAMES, DEFAULT_IP_ADDRESSES
    try:
        pki = DevPki.open(args.directory)
        if args.organization:
            org = pki.issue_organization(args.name, dns_names=dns_names, ip_addresses=ip_addresses)
            _print_files("server", org.server)
            _print_files("client", org.client)
            print(f"organization {org.identifier} client thumbprint: {org.client_thumbprint}")
        else:
            files = pki.issue(
                args.name, server=args.server, client=args.client, dns_names=dns_names, ip_addresses=ip_addresses
            )
            label = "/".join(k for k, on in (("server", args.server), ("client", args.client)) if on)
            _print_files(label, files)
    except (PkiError, ValueError, OSError) as exc:
        raise CommandError(_describe(exc)) from exc
    return 0


def cmd_thumbprint(args: argparse.Namespace) -> int:
    try:
        password = _read_password(args.password_file) if args.password_file else None
        cert = load_certificate(args.certificate, password)
    except (PkiError, OSError) as exc:
        raise CommandError(_describe(exc)) from exc
    print(thumbprint(cert))
    return 0


def _read_password(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PkiError(f"{path}: cannot read password file: {exc.strerror or exc}") from exc
    # Files written by editors or `echo` end with a newline that is not part of the password.
    return data.rstrip(b"\r\n")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)
