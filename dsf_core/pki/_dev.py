"""``DevPki``: a development PKI directory (``dsf pki``, test harnesses)."""

from __future__ import annotations


from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


from dsf_core.pki._base import DEFAULT_CA_COMMON_NAME, PkiError
from dsf_core.pki._issue import Issued, create_ca, issue_certificate, write_issued
from dsf_core.pki._load import load_key_and_certificate


# --------------------------------------------------------------------------- DevPki


@dataclass(frozen=True)
class IssuedFiles:
    """Where an issued certificate and key were written, and the certificate's thumbprint."""

    cert_path: Path
    key_path: Path
    thumbprint: str


@dataclass(frozen=True)
class OrganizationFiles:
    """The server and client certificates of one organisation in a :class:`DevPki`."""

    identifier: str
    server: IssuedFiles
    client: IssuedFiles

    @property
    def client_thumbprint(self) -> str:
        """The thumbprint other DSF nodes use to recognise this organisation."""
        return self.client.thumbprint


def _safe_name(name: str, what: str) -> str:
    # Names become file/directory names inside the PKI directory; refuse
    # anything that could escape it or clobber the CA files.
    if (
        not name
        or name in {".", ".."}
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
    ):
        raise PkiError(f"invalid {what} {name!r}: must be a plain file name")
    return name


class DevPki:
    """A development PKI kept in a directory: ``ca.crt``/``ca.key`` plus issued certificates.

    Layout: ``DIR/ca.crt``, ``DIR/ca.key``, ``DIR/<name>.crt|.key`` from
    :meth:`issue`, and ``DIR/<identifier>/server.crt|.key`` and
    ``client.crt|.key`` from :meth:`issue_organization`.  Keys are unencrypted
    PEM with mode 0600; re-issuing a name replaces its files.
    """

    CA_CERT = "ca.crt"
    CA_KEY = "ca.key"

    def __init__(self, directory: Path, ca: Issued) -> None:
        self.directory = Path(directory)
        self.ca = ca

    @property
    def ca_cert_path(self) -> Path:
        """Path of the CA certificate (the trust anchor to configure on every node)."""
        return self.directory / self.CA_CERT

    @property
    def ca_key_path(self) -> Path:
        """Path of the CA private key."""
        return self.directory / self.CA_KEY

    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        common_name: str = DEFAULT_CA_COMMON_NAME,
        overwrite: bool = False,
        key_type: str = "ec",
    ) -> DevPki:
        """Create a new CA in *directory* (created if needed).

        Refuses to replace an existing ``ca.crt``/``ca.key`` unless *overwrite*:
        a new CA invalidates every certificate issued by the old one.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise PkiError(f"{directory}: exists and is not a directory")
        if not overwrite:
            existing = [p for p in (directory / cls.CA_CERT, directory / cls.CA_KEY) if p.exists()]
            if existing:
                names = ", ".join(str(p) for p in existing)
                raise PkiError(f"{names}: already exists; refusing to overwrite an existing CA")
        directory.mkdir(parents=True, exist_ok=True)
        ca = create_ca(common_name, key_type=key_type)
        pki = cls(directory, ca)
        write_issued(ca, pki.ca_cert_path, pki.ca_key_path)
        return pki

    @classmethod
    def open(cls, directory: Path) -> DevPki:
        """Load the CA of an existing development PKI directory."""
        directory = Path(directory)
        cert_path = directory / cls.CA_CERT
        if not cert_path.exists():
            raise PkiError(f"{cert_path}: not found; is {directory} a PKI directory created with init?")
        ca = load_key_and_certificate(cert_path, key_path=directory / cls.CA_KEY)
        return cls(directory, ca)

    def _write(self, issued: Issued, cert_path: Path, key_path: Path) -> IssuedFiles:
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        write_issued(issued, cert_path, key_path)
        return IssuedFiles(cert_path, key_path, issued.thumbprint)

    def issue(
        self,
        name: str,
        *,
        server: bool,
        client: bool,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
    ) -> IssuedFiles:
        """Issue ``DIR/<name>.crt`` and ``DIR/<name>.key`` with CN = *name*.

        SANs are only added for server certificates; client-only certificates
        are identified by thumbprint and need none.
        """
        _safe_name(name, "certificate name")
        if name in {Path(self.CA_CERT).stem, Path(self.CA_KEY).stem}:
            raise PkiError(f"certificate name {name!r} is reserved for the CA")
        issued = issue_certificate(
            self.ca,
            name,
            server=server,
            client=client,
            dns_names=dns_names if server else (),
            ip_addresses=ip_addresses if server else (),
        )
        return self._write(issued, self.directory / f"{name}.crt", self.directory / f"{name}.key")

    def issue_organization(
        self,
        identifier: str,
        *,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
    ) -> OrganizationFiles:
        """Issue the server and client certificates of organisation *identifier*.

        Writes ``DIR/<identifier>/server.crt|.key`` (serverAuth, SANs) and
        ``DIR/<identifier>/client.crt|.key`` (clientAuth), both with CN = *identifier*.
        """
        _safe_name(identifier, "organization identifier")
        org_dir = self.directory / identifier
        server = issue_certificate(
            self.ca, identifier, server=True, dns_names=dns_names, ip_addresses=ip_addresses
        )
        client = issue_certificate(self.ca, identifier, client=True)
        return OrganizationFiles(
            identifier=identifier,
            server=self._write(server, org_dir / "server.crt", org_dir / "server.key"),
            client=self._write(client, org_dir / "client.crt", org_dir / "client.key"),
        )
