"""Tests for the ``dsf pki`` command group, run through the real ``dsf`` entry point."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

import dsf_core.cli.main as cli_main
from dsf_core.pki import load_certificate, thumbprint, write_pkcs12, load_key_and_certificate

HEX128 = re.compile(r"\b[0-9a-f]{128}\b")


@pytest.fixture(autouse=True)
def only_pki_group(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other command groups are developed separately; these tests only need pki.
    monkeypatch.setattr(cli_main, "GROUPS", ("pki",))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_init_issue_organization_and_thumbprint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki_dir = tmp_path / "pki"
    code, out, _ = run(capsys, "pki", "init", str(pki_dir), "--cn", "CLI Test CA")
    assert code == 0
    assert str(pki_dir / "ca.crt") in out and str(pki_dir / "ca.key") in out
    assert load_certificate(pki_dir / "ca.crt").subject.rfc4514_string() == "CN=CLI Test CA"

    code, out, _ = run(capsys, "pki", "issue", str(pki_dir), "Test_DIC", "--organization")
    assert code == 0
    client_crt = pki_dir / "Test_DIC" / "client.crt"
    expected = thumbprint(load_certificate(client_crt))
    assert str(client_crt) in out and str(pki_dir / "Test_DIC" / "server.crt") in out
    assert f"client thumbprint: {expected}" in out
    assert stat.S_IMODE((pki_dir / "Test_DIC" / "client.key").stat().st_mode) == 0o600

    code, out, _ = run(capsys, "pki", "thumbprint", str(client_crt))
    assert code == 0
    assert out.strip() == expected


def test_init_twice_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "pki", "init", str(tmp_path))[0] == 0
    first = thumbprint(load_certificate(tmp_path / "ca.crt"))
    code, out, err = run(capsys, "pki", "init", str(tmp_path))
    assert code == 2
    assert err.startswith("dsf: error: ")
    assert str(tmp_path / "ca.crt") in err and "already exists" in err and "--force" in err
    assert thumbprint(load_certificate(tmp_path / "ca.crt")) == first

    assert run(capsys, "pki", "init", str(tmp_path), "--force")[0] == 0
    assert thumbprint(load_certificate(tmp_path / "ca.crt")) != first


def test_issue_server_and_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "pki", "init", str(tmp_path))
    code, out, _ = run(
        capsys, "pki", "issue", str(tmp_path), "fhir.test", "--server", "--dns", "fhir.test", "bpe.test", "--ip", "::1"
    )
    assert code == 0
    issued = load_key_and_certificate(tmp_path / "fhir.test.crt", key_path=tmp_path / "fhir.test.key")
    assert issued.thumbprint in out
    code, out, _ = run(capsys, "pki", "issue", str(tmp_path), "alice", "--client")
    assert code == 0
    assert thumbprint(load_certificate(tmp_path / "alice.crt")) in out


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ((), "--server, --client and/or --organization"),
        (("--organization", "--client"), "do not combine"),
        (("--client", "--dns", "x.test"), "only apply to server"),
        (("--server", "--ip", "not-an-ip"), "not-an-ip"),
    ],
)
def test_issue_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], fragment: str
) -> None:
    run(capsys, "pki", "init", str(tmp_path))
    code, _, err = run(capsys, "pki", "issue", str(tmp_path), "x", *extra)
    assert code == 2
    assert fragment in err


def test_issue_without_pki(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "pki", "issue", str(tmp_path / "none"), "x", "--client")
    assert code == 2
    assert str(tmp_path / "none" / "ca.crt") in err


def test_thumbprint_of_pkcs12_with_password_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "pki", "init", str(tmp_path))
    run(capsys, "pki", "issue", str(tmp_path), "bob", "--client")
    issued = load_key_and_certificate(tmp_path / "bob.crt", key_path=tmp_path / "bob.key")
    write_pkcs12(issued, tmp_path / "bob.p12", b"s3cret")
    (tmp_path / "pw.txt").write_text("s3cret\n")

    code, out, _ = run(capsys, "pki", "thumbprint", str(tmp_path / "bob.p12"), "--password-file", str(tmp_path / "pw.txt"))
    assert code == 0 and out.strip() == issued.thumbprint

    code, _, err = run(capsys, "pki", "thumbprint", str(tmp_path / "bob.p12"))
    assert code == 2 and str(tmp_path / "bob.p12") in err and "password" in err

    code, _, err = run(capsys, "pki", "thumbprint", str(tmp_path / "missing.crt"))
    assert code == 2 and "not found" in err
