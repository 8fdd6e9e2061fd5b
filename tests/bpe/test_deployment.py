"""Deployment refuses what cannot run, naming the plugin, the file and the element."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from dsf_plugin_ping_pong import PLUGIN

from dsf_core.api import PluginDefinitionError, ProcessPlugin, ServiceTask
from dsf_core.bpe.deployment import (
    DeploymentError,
    discover_plugins,
    load_plugin,
    placeholders_for,
    plugin_resources,
    resource_upload_bundle,
)

BPMN_DIR = Path(__file__).resolve().parents[2] / "bpmn"


def plugin(tmp_path: Path, bpmn: str, *, version: str = "1.0.0.0", name: str = "p.bpmn", **kwargs: object) -> ProcessPlugin:
    path = tmp_path / name
    path.write_text(bpmn)
    return ProcessPlugin(name="test-plugin", version=version, release_date=date(2026, 1, 1), package="tests",
                         models=(str(path),), **kwargs)  # type: ignore[arg-type]


SERVICE = (BPMN_DIR / "message-start-service-end.bpmn").read_text()


class Record(ServiceTask):
    def execute(self, api: object, variables: object) -> None:
        return None


def test_ping_pong_deploys_with_bound_classes() -> None:
    processes = load_plugin(PLUGIN, placeholders_for(PLUGIN, "a.test", {}))
    assert {p.key for p in processes} == {"dsfdev_ping|1.0", "dsfdev_pingAutostart|1.0", "dsfdev_pong|1.0"}
    ping = next(p for p in processes if p.process_id == "dsfdev_ping")
    assert ping.classes["dsf_plugin_ping_pong.activities.SendPing"].__name__ == "SendPing"
    assert all(p.status == "active" for p in processes)


def test_an_unknown_activity_class_fails_naming_file_and_element(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError) as error:
        load_plugin(plugin(tmp_path, SERVICE), {"version": "1.0"})
    message = str(error.value)
    assert "test-plugin" in message and "p.bpmn" in message and "conformance.Record" in message
    assert "element 'Work'" in message


def test_a_class_of_the_wrong_kind_fails(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="not a dsf_core.api.ServiceTask"):
        load_plugin(plugin(tmp_path, SERVICE, class_map={"conformance.Record": dict}), {"version": "1.0"})


def test_class_map_binds_non_python_names(tmp_path: Path) -> None:
    [process] = load_plugin(plugin(tmp_path, SERVICE, class_map={"conformance.Record": Record}), {"version": "1.0"})
    assert process.classes == {"conformance.Record": Record}


def test_an_unsupported_construct_fails_naming_file_and_element(tmp_path: Path) -> None:
    bpmn = SERVICE.replace("</bpmn:process>", '<bpmn:scriptTask id="Script" scriptFormat="python"><bpmn:script>x = 1</bpmn:script></bpmn:scriptTask></bpmn:process>')
    with pytest.raises(DeploymentError) as error:
        load_plugin(plugin(tmp_path, bpmn, class_map={"conformance.Record": Record}), {"version": "1.0"})
    assert "p.bpmn" in str(error.value) and "'Script'" in str(error.value)


def test_version_tag_must_equal_the_resource_version(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="versionTag '1.0', expected .* '2.1'"):
        load_plugin(plugin(tmp_path, SERVICE, version="2.1.0.0", class_map={"conformance.Record": Record}),
                    {"version": "1.0"})


def test_unresolved_placeholder_fails_with_the_line(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match=r"line \d+\): unresolved placeholder #\{version\}"):
        load_plugin(plugin(tmp_path, SERVICE, class_map={"conformance.Record": Record}), {})


def test_the_same_process_twice_is_refused(tmp_path: Path) -> None:
    first = tmp_path / "a.bpmn"
    first.write_text(SERVICE)
    twice = ProcessPlugin(name="twice", version="1.0.0.0", release_date=date(2026, 1, 1), package="tests",
                          models=(str(first), str(first)), class_map={"conformance.Record": Record})
    with pytest.raises(DeploymentError, match=r"dsfdev_serviceTask\|1.0 is defined twice"):
        load_plugin(twice, {"version": "1.0"})


def test_excluded_and_retired_processes() -> None:
    placeholders = placeholders_for(PLUGIN, "a.test", {})
    processes = load_plugin(PLUGIN, placeholders, excluded=["dsfdev_pingAutostart"], retired=["dsfdev_pong|1.0"])
    assert {p.key: p.status for p in processes} == {"dsfdev_ping|1.0": "active", "dsfdev_pong|1.0": "retired"}


@pytest.mark.parametrize(("version", "error"), [("1.0", "a.b.c.d"), ("1.0.0.x", "a.b.c.d")])
def test_plugin_version_must_have_four_numbers(version: str, error: str) -> None:
    with pytest.raises(PluginDefinitionError, match=error):
        ProcessPlugin(name="p", version=version, release_date=date(2026, 1, 1), package="x", models=("a.bpmn",))


def test_resources_get_placeholders_status_and_a_conditional_upload() -> None:
    placeholders = placeholders_for(PLUGIN, "a.test", {})
    resources = plugin_resources(PLUGIN, "dsfdev_ping", placeholders, status="active")
    ad = next(r for r in resources if r["resourceType"] == "ActivityDefinition")
    assert ad["version"] == "1.0" and ad["status"] == "active" and "#{" not in str(ad)
    draft = next(r for r in resources if r["resourceType"] == "Task")
    assert draft["status"] == "draft"
    bundle = resource_upload_bundle(resources)
    urls = [e["request"]["url"] for e in bundle["entry"]]
    assert "ActivityDefinition?url=http%3A%2F%2Fdsf.dev%2Fbpe%2FProcess%2Fping&version=1.0" in urls
    assert any(u.startswith("Task?identifier=http%3A%2F%2Fdsf.dev%2Fsid%2Ftask-identifier|") for u in urls)


def test_plugins_are_found_by_entry_point_and_in_plugin_folders(tmp_path: Path) -> None:
    names = [p.name for p in discover_plugins()]
    assert "dsf-plugin-ping-pong" in names and "dsf-plugin-hello-world" in names
    folder = tmp_path / "plugins"
    (folder / "folder_plugin").mkdir(parents=True)
    (folder / "folder_plugin" / "__init__.py").write_text(
        "from datetime import date\nfrom dsf_core.api import ProcessPlugin\n"
        "PLUGIN = ProcessPlugin(name='folder-plugin', version='0.1.0.0', release_date=date(2026, 1, 1),"
        " package=__name__, models=('x.bpmn',))\n"
    )
    found = discover_plugins([folder], entry_points=False)
    assert [p.name for p in found] == ["folder-plugin"] and found[0].pre_release
    with pytest.raises(DeploymentError, match="does not exist"):
        discover_plugins([tmp_path / "missing"], entry_points=False)


def test_a_naming_system_deploys_by_name(tmp_path: Path) -> None:
    (tmp_path / "ns.json").write_text(
        '{"resourceType": "NamingSystem", "name": "ProjectIdentifier", "status": "unknown", "kind": "identifier",'
        ' "date": "#{date}", "uniqueId": [{"type": "other", "value": "http://example.org/sid/project"}]}')
    (tmp_path / "nameless.json").write_text('{"resourceType": "NamingSystem", "status": "unknown"}')
    named = plugin(tmp_path, SERVICE, fhir_resources={"dsfdev_serviceTask": (str(tmp_path / "ns.json"),)})
    [resource] = plugin_resources(named, "dsfdev_serviceTask", placeholders_for(named, "a.test", {}), status="active")
    assert (resource["status"], resource["date"]) == ("active", "2026-01-01")
    [entry] = resource_upload_bundle([resource])["entry"]
    assert entry["request"] == {"method": "PUT", "url": "NamingSystem?name:exact=ProjectIdentifier"}
    nameless = plugin(tmp_path, SERVICE, fhir_resources={"dsfdev_serviceTask": (str(tmp_path / "nameless.json"),)})
    with pytest.raises(DeploymentError, match="NamingSystem needs a name"):
        plugin_resources(nameless, "dsfdev_serviceTask", placeholders_for(nameless, "a.test", {}), status="active")
