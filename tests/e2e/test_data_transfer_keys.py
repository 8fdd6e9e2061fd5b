"""``dsf keys create``: the DMS key pair an operator configures for the data transfer plugin."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from dsf_plugin_data_transfer import keys

from dsf_core.cli.main import main


def test_create_writes_a_private_key_only_its_owner_reads_and_the_plugin_loads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "keys"
    assert main(["keys", "create", str(directory), "--name", "dms"]) == 0
    private, public = directory / "dms.key", directory / "dms.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    out = capsys.readouterr().out
    assert "BEGIN" not in out and private.read_text().splitlines()[1] not in out  # paths and hash, never the key

    by_file = keys.load_private_key({f"{keys.PRIVATE_KEY}_FILE": str(private)}.get)
    by_path = keys.load_public_key({keys.PRIVATE_KEY: str(private), f"{keys.PUBLIC_KEY}_FILE": str(public)}.get)
    assert by_file is not None and by_file.key_size == 4096 and by_path is not None
    assert keys.public_key_hash(by_file.public_key()) == keys.public_key_hash(by_path)
    assert f"SHA-256 of the public key: {keys.public_key_hash(by_path)}" in out


def test_create_keeps_an_existing_pair_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", str(tmp_path)]) == 0
    first = (tmp_path / "dms.key").read_bytes()
    assert main(["keys", "create", str(tmp_path)]) == 2
    assert "use --force" in capsys.readouterr().err and (tmp_path / "dms.key").read_bytes() == first
    assert main(["keys", "create", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "dms.key").read_bytes() != first
    assert stat.S_IMODE((tmp_path / "dms.key").stat().st_mode) == 0o600
