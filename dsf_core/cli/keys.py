"""``dsf keys``: key pairs process plugins need besides the TLS certificates.

``create`` writes an RSA-4096 key pair for a data management site (DMS) of the MII data transfer:
the private key unencrypted as PKCS#8 PEM, readable by its owner only (0600), and the public key
as PEM SubjectPublicKeyInfo. Point ``DE_MEDIZININFORMATIK_INITIATIVE_DMS_PRIVATE_KEY`` (or its
``…_FILE`` form) at the private key; the public key is derived from it when not configured.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dsf_core.cli.main import CommandError

KEY_BITS = 4096


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``keys`` command group to the top-level ``dsf`` parser."""
    parser = subparsers.add_parser(
        "keys",
        help="key pairs for process plugins (the MII data transfer DMS key)",
        description="Create key pairs process plugins use, e.g. the RSA-4096 key a DMS decrypts data sets with.",
    )
    commands = parser.add_subparsers(dest="keys_command", metavar="COMMAND")
    commands.required = True
    create = commands.add_parser(
        "create",
        help="create an RSA-4096 key pair",
        description=(
            "Write DIR/NAME.key (unencrypted PKCS#8 PEM, mode 0600) and DIR/NAME.pub (PEM public key). "
            "Existing files are kept unless --force is given."
        ),
    )
    create.add_argument("directory", metavar="DIR", type=Path)
    create.add_argument("--name", default="dms", help="file name without extension (default: %(default)s)")
    create.add_argument("--force", action="store_true", help="replace an existing key pair")
    create.set_defaults(func=cmd_create)


def _write(path: Path, data: bytes, mode: int, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    # The mode is set at creation: the private key is never readable by others, not even briefly.
    descriptor = os.open(path, flags, mode)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


def create_key_pair(directory: Path, name: str = "dms", *, force: bool = False) -> tuple[Path, Path, bytes]:
    """Write ``directory/name.key`` (PKCS#8 PEM, 0600) and ``name.pub``; returns both paths and the public key's DER."""
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    if not force:
        existing = [str(p) for p in (private_path, public_path) if p.exists()]
        if existing:
            raise CommandError(f"not replacing {', '.join(existing)} (use --force to replace the key pair)")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key()
    public_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write(private_path, private_pem, 0o600, force)
        _write(public_path, public_pem, 0o644, force)
    except OSError as exc:
        raise CommandError(f"{exc.filename or directory}: {exc.strerror or exc}") from exc
    return private_path, public_path, der


def cmd_create(args: argparse.Namespace) -> int:
    private_path, public_path, der = create_key_pair(args.directory, args.name, force=args.force)
    print(f"private key: {private_path} (RSA-{KEY_BITS}, mode 0600)")
    print(f"public key:  {public_path}")
    print(f"SHA-256 of the public key: {base64.b64encode(hashlib.sha256(der).digest()).decode()}")
    print(f"set DE_MEDIZININFORMATIK_INITIATIVE_DMS_PRIVATE_KEY_FILE={private_path.resolve()}")
    return 0
