"""``init_network`` from Python and ``load_network``: the manifest round-trips; bad manifests name the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dsf_core.network import NetworkError, OrgSpec, init_network, load_network, parse_org_spec
from dsf_core.settings import load_settings

ORGS = [OrgSpec("a.test", ("dic",), name="Org A"), OrgSpec("b.test", ("HRP", "DIC"))]


def test_manifest_round_trips(tmp_path: Path) -> None:
    layout = init_network(tmp_path, parent="p.test", organizations=ORGS, host="localhost")
    assert load_network(tmp_path) == layout == load_network(tmp_path / "network.toml")
    assert layout.directory == tmp_path.resolve() and layout.manifest == layout.directory / "network.toml"
    a = layout.organization("a.test")
    assert a.roles == ("DIC",)  # role codes are upper-cased
    assert a.base_url == f"https://localhost:{a.port}/fhir" and a.directory == layout.directory / "a.test"
    settings = load_settings(a.config, environ={})
    assert settings.organization.name == "Org A" and settings.server.host == "localhost"
    with pytest.raises(KeyError, match="'x.test' is not an organization.*a.test, b.test"):
        layout.organization("x.test")


def test_parse_org_spec() -> None:
    assert parse_org_spec("b.test:hrp+DIC") == OrgSpec("b.test", ("HRP", "DIC"))
    assert parse_org_spec(" Test_DIC_1 : DIC ") == OrgSpec("Test_DIC_1", ("DIC",))
    with pytest.raises(NetworkError, match="organization-role codes are UAC, COS"):
        parse_org_spec("a.test:DIX")


def test_library_refuses_bad_input_before_writing(tmp_path: Path) -> None:
    with pytest.raises(NetworkError, match="needs at least one role"):
        init_network(tmp_path / "n", organizations=[OrgSpec("a.test", ())])
    with pytest.raises(NetworkError, match="at least one organization"):
        init_network(tmp_path / "n", organizations=[])
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda text: text.replace('parent = "p.test"\n', ""), "network: parent missing"),
        (lambda text: text.replace('roles = ["DIC"]', 'roles = ["NOPE"]'), "unknown role 'NOPE' for a.test"),
        (lambda text: text.replace('roles = ["DIC"]', "roles = []"), "organization a.test: roles must be a non-empty list"),
        (lambda text: text.replace('identifier = "a.test"', 'identifier = "a/b"'), "organization[0].identifier"),
        (lambda text: text.replace("https://127.0.0.1:", "http://127.0.0.1:", 1), "base_url must be https://HOST:PORT"),
        (lambda text: text.replace("format = 1", "format = 7"), "network.format 7 is not supported"),
        (lambda text: text.replace("[network]", "[network"), "not valid TOML"),
        (lambda text: text.split("[[organization]]")[0], "needs at least one [[organization]]"),
        (lambda text: text.replace('identifier = "b.test"', 'identifier = "a.test"'), "a.test is listed twice"),
    ],
)
def test_bad_manifest(tmp_path: Path, edit: Callable[[str], str], fragment: str) -> None:
    init_network(tmp_path, parent="p.test", organizations=ORGS)
    manifest = tmp_path / "network.toml"
    manifest.write_text(edit(manifest.read_text()))
    with pytest.raises(NetworkError) as caught:
        load_network(tmp_path)
    assert str(manifest) in str(caught.value)
    assert fragment in str(caught.value)


def test_missing_files_are_named(tmp_path: Path) -> None:
    init_network(tmp_path, parent="p.test", organizations=ORGS)
    (tmp_path / "pki" / "b.test" / "client.key").unlink()
    with pytest.raises(NetworkError, match=r"organization b.test: client_private_key: .*pki/b.test/client.key not found"):
        load_network(tmp_path)
    with pytest.raises(NetworkError, match=r"network.toml: not found; create a network with `dsf network init"):
        load_network(tmp_path / "elsewhere")
