"""``dsf plugin new`` through the real ``dsf`` entry point: names, refusals, and a scaffold that works.

The scaffold is not pip-installed (slow, and it would change the shared environment): its
``src`` goes on ``sys.path`` for the checks made here, its own test runs with pytest in a
subprocess from its directory (its pyproject puts ``src`` on the path, as for an author who
has not installed it yet), and ``mypy --strict`` checks its package and test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest

import dsf_core.cli.main as cli_main
from dsf_core.bpe.deployment import load_plugin, placeholders_for, plugin_resources
from dsf_core.scaffold import ScaffoldError, plugin_names, render_plugin

ROOT = Path(__file__).resolve().parents[2]
REGISTERED_GROUPS = cli_main.GROUPS


@pytest.fixture(autouse=True)
def only_plugin_group(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other command groups are developed separately; these tests only need plugin.
    monkeypatch.setattr(cli_main, "GROUPS", ("plugin",))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def unique_name() -> str:
    """A plugin name whose package is importable nowhere yet (the scaffold refuses a taken one)."""
    return f"scaffold-check-{uuid.uuid4().hex[:8]}"


def test_plugin_is_a_registered_group() -> None:
    assert "plugin" in REGISTERED_GROUPS


# ----------------------------------------------------------------------------- names


def test_names_follow_the_dsf_conventions() -> None:
    names = plugin_names("my-plugin", domain="Example.org")
    assert (names.package, names.process, names.process_id, names.message) == (
        "my_plugin", "myPlugin", "exampleorg_myPlugin", "startMyPlugin")
    assert (names.domain, names.title, names.version, names.resource_version) == (
        "example.org", "My plugin", "0.1.0.0", "0.1")
    mii = plugin_names("data_check2", domain="medizininformatik-initiative.de", package="mii_data_check")
    assert (mii.package, mii.process_id, mii.kebab) == (
        "mii_data_check", "medizininformatik-initiativede_dataCheck2", "data-check2")


@pytest.mark.parametrize(("argv", "message"), [
    (["My Plugin"], "plugin name 'My Plugin' is not valid"),
    (["2fast"], "plugin name '2fast' is not valid"),
    (["a--b"], "plugin name 'a--b' is not valid"),
    (["my-plugin", "--domain", "localhost"], "domain 'localhost' is not a DNS name"),
    (["my-plugin", "--domain", "exa_mple.org"], "domain 'exa_mple.org' is not a DNS name"),
    (["my-plugin", "--package", "my-plugin"], "package 'my-plugin' is not a valid Python package name"),
    (["my-plugin", "--package", "class"], "package 'class' is not a valid Python package name"),
    (["json"], "package 'json' would shadow the standard library module"),
    (["dsf_core"], "package 'dsf_core' is reserved"),
    (["pytest"], "a module 'pytest' is already importable here"),
])
def test_invalid_names_are_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "plugin", "new", *argv, "--directory", str(tmp_path / "plugin"))
    assert code == 2 and out == ""
    assert err.startswith(f"dsf: error: {message}"), err
    assert not (tmp_path / "plugin").exists()


@pytest.mark.parametrize("existing", ["empty", "with a file"])
def test_an_existing_directory_is_never_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], existing: str
) -> None:
    target = tmp_path / "my-plugin"
    target.mkdir()
    if existing == "with a file":
        (target / "notes.txt").write_text("mine")
    code, out, err = run(capsys, "plugin", "new", "my-plugin", "--directory", str(target))
    assert code == 2 and out == ""
    assert err == f"dsf: error: {target} already exists; not overwriting it (remove it or choose another --directory)\n"
    assert sorted(p.name for p in target.iterdir()) == ([] if existing == "empty" else ["notes.txt"])


def test_default_directory_is_the_name_in_the_current_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = unique_name()
    code, out, err = run(capsys, "plugin", "new", name)
    assert code == 0, err
    assert (tmp_path / name / "pyproject.toml").is_file()
    assert f"Next: cd {name} && pip install -e '.[test]' && pytest" in out


def test_every_template_token_is_filled() -> None:
    files = render_plugin(plugin_names("my-plugin"))
    assert not [path for path, text in files.items() if "{{" in path + text]
    for path, text in files.items():
        if path.endswith(".json"):
            json.loads(text)  # valid JSON once filled in


def test_the_templates_ship_with_dsf_py() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "scaffold/templates/**/*" in package_data["dsf_core"]


def test_a_scaffold_error_names_an_unknown_token() -> None:
    from dsf_core.scaffold.plugin import _fill

    with pytest.raises(ScaffoldError, match=r"template x.json: unknown token \{\{colour\}\}"):
        _fill("{{name}} is {{colour}}", {"name": "n"}, "x.json")


# ----------------------------------------------------------------------------- the scaffold works


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One plugin, written by the real command with a domain of its own."""
    directory = tmp_path_factory.mktemp("scaffold") / "my-plugin"
    name = unique_name()
    with pytest.MonkeyPatch.context() as patch:  # the function-scoped only_plugin_group is not active here
        patch.setattr(cli_main, "GROUPS", ("plugin",))
        code = cli_main.main(["plugin", "new", name, "--domain", "research.example-uni.de", "--directory", str(directory)])
    assert code == 0
    return directory


def test_the_scaffold_has_the_parts_of_a_plugin(scaffold: Path) -> None:
    pyproject = tomllib.loads((scaffold / "pyproject.toml").read_text())
    name = pyproject["project"]["name"]
    package = name.replace("-", "_")
    assert pyproject["project"]["version"] == "0.1.0.0"
    assert pyproject["project"]["dependencies"] == ["dsf-py"]
    assert pyproject["project"]["entry-points"]["dsf.process_plugins"] == {package: f"{package}:PLUGIN"}
    assert pyproject["tool"]["setuptools"]["package-data"][package] == ["py.typed", "bpe/*.bpmn", "fhir/**/*.json"]
    src = scaffold / "src" / package
    assert sorted(str(p.relative_to(scaffold)) for p in scaffold.rglob("*") if p.is_file()) == sorted([
        "README.md", "pyproject.toml", f"tests/test_{package}.py",
        f"src/{package}/__init__.py", f"src/{package}/activities.py", f"src/{package}/py.typed",
        f"src/{package}/bpe/{name}.bpmn",
        f"src/{package}/fhir/ActivityDefinition/{name}.json",
        f"src/{package}/fhir/StructureDefinition/task-start-{name}.json",
        f"src/{package}/fhir/Task/task-start-{name}.json",
    ])
    assert src.is_dir()


def test_the_scaffold_deploys_as_a_node_deploys_it(scaffold: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    name = tomllib.loads((scaffold / "pyproject.toml").read_text())["project"]["name"]
    package = name.replace("-", "_")
    monkeypatch.syspath_prepend(str(scaffold / "src"))
    try:
        plugin = importlib.import_module(package).PLUGIN
        placeholders = placeholders_for(plugin, "a.test", {})
        [process] = load_plugin(plugin, placeholders)
        process_name = "scaffoldCheck" + name.rsplit("-", 1)[1].capitalize()
        assert (process.process_id, process.version) == (f"researchexample-unide_{process_name}", "0.1")
        assert process.model.start_messages == (f"start{process_name[0].upper()}{process_name[1:]}",)
        assert set(process.classes) == {f"{package}.activities.LogStart"}
        resources = plugin_resources(plugin, process.process_id, placeholders, status="active")
        assert [r["resourceType"] for r in resources] == ["ActivityDefinition", "StructureDefinition", "Task"]
        assert resources[0]["url"] == f"http://research.example-uni.de/bpe/Process/{process_name}"
        assert {r["status"] for r in resources} == {"draft"}  # 0.x is a pre-release
    finally:
        for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[module]


def test_the_scaffolds_own_test_passes_and_it_type_checks(scaffold: Path) -> None:
    # Both at once: each waits mostly for the other's CPU otherwise.
    tests = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=scaffold,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    types = subprocess.Popen(
        [sys.executable, "-m", "mypy", "--strict", str(scaffold / "src"), str(scaffold / "tests")], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    test_output, _ = tests.communicate(timeout=120)
    type_output, _ = types.communicate(timeout=120)
    assert tests.returncode == 0, test_output
    assert "2 passed" in test_output, test_output
    assert types.returncode == 0, type_output
