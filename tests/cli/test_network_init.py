"""``dsf network init`` through the real ``dsf`` entry point: files, configs, manifest, usage errors."""

from __future__ import annotations

import stat
from pathlib import Path

import orjson
import pytest

import dsf_core.cli.main as cli_main
from dsf_core import pki
from dsf_core.network import load_network
from dsf_core.settings import load_settings

REGISTERED_GROUPS = cli_main.GROUPS


@pytest.fixture(autouse=True)
def only_network_group(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other command groups are developed separately; these tests only need network.
    monkeypatch.setattr(cli_main, "GROUPS", ("network",))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def same(a: Path | None, b: Path) -> bool:
    # Settings keep "../" from the relative paths in node.toml; the layout holds resolved paths.
    return a is not None and a.resolve() == b.resolve()


def test_network_is_a_registered_group() -> None:
    assert "network" in REGISTERED_GROUPS


def test_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "net"
    code, out, err = run(capsys, "network", "init", str(net))
    assert code == 0, err

    layout = load_network(net)
    assert layout.parent == "medizininformatik-initiative.de"
    assert [(o.identifier, o.roles) for o in layout.organizations] == [
        ("hrp.test", ("HRP",)),
        ("dms.test", ("DMS",)),
        ("dic-1.test", ("DIC",)),
        ("dic-2.test", ("DIC",)),
        ("dic-3.test", ("DIC",)),
    ]
    assert len({o.port for o in layout.organizations}) == 5
    for org in layout.organizations:
        assert f"{org.identifier}  " in out and org.base_url in out
    assert f"dsf network up {net}" in out

    assert mode(net / "pki" / "ca.key") == 0o600 and (net / "pki" / "ca.crt").is_file()
    for org in layout.organizations:
        assert same(org.config, net / org.identifier / "node.toml")
        assert same(org.client_cert, net / "pki" / org.identifier / "client.crt")
        assert mode(org.client_key) == 0o600 and mode(org.server_key) == 0o600
        settings = load_settings(org.config, environ={})
        assert settings.organization.identifier == org.identifier
        assert settings.server.base_url == org.base_url == f"https://127.0.0.1:{org.port}/fhir"
        assert (settings.server.host, settings.server.port) == ("127.0.0.1", org.port)
        assert settings.node.mode == "dsf" and same(settings.node.data_dir, net / org.identifier / "data")
        assert same(settings.tls.certificate, org.server_cert) and same(settings.tls.private_key, org.server_key)
        assert same(settings.tls.trust_client_cas, layout.ca_cert)
        assert same(settings.engine.trust_server_cas, layout.ca_cert)
        assert same(settings.organization.client_certificate, org.client_cert)
        assert same(settings.organization.client_private_key, org.client_key)
        assert same(settings.organization.init_bundle, net / "allow-list.json")


def test_orgs_and_parent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "net"
    code, out, err = run(capsys, "network", "init", str(net), "--org", "a.test:DIC", "--org", "b.test:HRP+DIC", "--parent", "p.test")
    assert code == 0, err
    assert "HRP+DIC" in out

    layout = load_network(net)
    assert layout.parent == "p.test"
    assert [(o.identifier, o.roles) for o in layout.organizations] == [("a.test", ("DIC",)), ("b.test", ("HRP", "DIC"))]
    assert sorted(p.name for p in net.iterdir()) == ["a.test", "allow-list.json", "b.test", "network.toml", "pki"]

    bundle = orjson.loads(layout.allow_list.read_bytes())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    resources = [e["resource"] for e in bundle["entry"]]
    organizations = {r["identifier"][0]["value"]: r for r in resources if r["resourceType"] == "Organization"}
    assert set(organizations) == {"p.test", "a.test", "b.test"}
    assert organizations["p.test"]["meta"]["profile"] == ["http://dsf.dev/fhir/StructureDefinition/organization-parent"]
    endpoints = {r["identifier"][0]["value"]: r["address"] for r in resources if r["resourceType"] == "Endpoint"}
    affiliations = [r for r in resources if r["resourceType"] == "OrganizationAffiliation"]
    for org in layout.organizations:
        thumbprint = pki.thumbprint(pki.load_certificate(org.client_cert))
        assert organizations[org.identifier]["extension"] == [
            {"url": "http://dsf.dev/fhir/StructureDefinition/extension-certificate-thumbprint", "valueString": thumbprint}
        ]
        settings = load_settings(org.config, environ={})
        assert endpoints[settings.organization.endpoint_identifier or ""] == org.base_url
        assert settings.organization.name == organizations[org.identifier]["name"]
    assert sorted([c["coding"][0]["code"] for c in a["code"]] for a in affiliations) == [["DIC"], ["HRP", "DIC"]]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--org", "a.test:XYZ"), "unknown role 'XYZ' for a.test"),
        (("--org", "a.test"), "expected IDENTIFIER:ROLE[+ROLE...]"),
        (("--org", "a.test:"), "expected IDENTIFIER:ROLE[+ROLE...]"),
        (("--org", "a.test:DIC+"), "empty role"),
        (("--org", "a.test:DIC+DIC"), "role DIC given twice"),
        (("--org", "../evil:DIC"), "invalid organization identifier '../evil'"),
        (("--org", "a.test:DIC", "--org", "A.test:HRP"), "clashes with organization a.test"),
        (("--org", "p.test:DIC", "--parent", "p.test"), "clashes with the parent organization p.test"),
        (("--org", "pki:DIC"), "reserved"),
        (("--parent", "bad parent"), "invalid parent organization identifier"),
    ],
)
def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], fragment: str) -> None:
    code, out, err = run(capsys, "network", "init", str(tmp_path / "net"), *args)
    assert code == 2
    assert err.startswith("dsf: error: ") and fragment in err
    assert not (tmp_path / "net").exists()  # nothing written on bad input


def test_existing_network_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "net"
    assert run(capsys, "network", "init", str(net), "--org", "a.test:DIC", "--org", "old.test:HRP")[0] == 0
    first = load_network(net)
    first_ca = pki.thumbprint(pki.load_certificate(first.ca_cert))
    (net / "old.test" / "data").mkdir()
    (net / "old.test" / "data" / "fhir.sqlite").write_bytes(b"")
    (net / "notes.txt").write_text("mine")

    code, _, err = run(capsys, "network", "init", str(net), "--org", "a.test:DIC")
    assert code == 2
    assert str(net / "network.toml") in err and "--force" in err
    assert load_network(net) == first  # untouched

    code, _, err = run(capsys, "network", "init", str(net), "--org", "a.test:DIC", "--force")
    assert code == 0, err
    second = load_network(net)
    assert [o.identifier for o in second.organizations] == ["a.test"]
    assert pki.thumbprint(pki.load_certificate(second.ca_cert)) != first_ca
    # The replaced network's organisation is gone with its database; files that are not ours stay.
    assert not (net / "old.test").exists() and not (net / "pki" / "old.test").exists()
    assert (net / "notes.txt").read_text() == "mine"


def test_directory_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "net").write_text("")
    code, _, err = run(capsys, "network", "init", str(tmp_path / "net"))
    assert code == 2 and "is not a directory" in err
