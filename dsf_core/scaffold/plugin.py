"""``dsf plugin new``: a process plugin distribution, ready to test and install.

The files come from ``templates/plugin``: every file there ends in ``.tmpl`` (so neither
pytest, mypy nor setuptools take the templates for code) and may hold ``{{name}}`` tokens,
in its text and in its path, for the names :class:`PluginNames` derives. A token that is not
one of those names is a bug in a template and fails loudly, never silently left in a file.

Names follow the DSF conventions the rest of dsf-py checks at deployment: the plugin
``my-plugin`` with domain ``example.org`` gets the package ``my_plugin``, the
process ``exampleorg_myPlugin`` (URL ``http://example.org/bpe/Process/myPlugin``)
and the start message ``startMyPlugin``.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from datetime import date
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from dsf_core.bpe.subset import PROCESS_ID_PATTERN

__all__ = ["VERSION", "PluginNames", "ScaffoldError", "create_plugin", "plugin_names", "render_plugin"]

#: The version a new plugin starts with: ``0.x`` is a pre-release, its FHIR resources deploy as draft.
VERSION = "0.1.0.0"
DEFAULT_DOMAIN = "example.org"

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$")
_PACKAGE = re.compile(r"^[a-z_][a-z0-9_]*$")
_TOKEN = re.compile(r"\{\{(\w+)\}\}")
_SUFFIX = ".tmpl"
_RESERVED_PACKAGES = frozenset({"dsf_core", "tests", "test", "src"})


class ScaffoldError(Exception):
    """The scaffold cannot be written as asked; the message says what to change."""


@dataclass(frozen=True)
class PluginNames:
    """Every name the templates use, derived from the plugin name and domain."""

    name: str  # distribution, plugin and directory name: my-plugin
    kebab: str  # in file names and FHIR URLs: my-plugin
    package: str  # the Python package: my_plugin
    process: str  # the process name in URLs: myPlugin
    Process: str  # the same, capitalised, in resource names and the start message: MyPlugin
    process_id: str  # <domain without dots>_<process>: exampleorg_myPlugin
    message: str  # the start message: startMyPlugin
    domain: str  # example.org
    title: str  # Site inventory
    version: str  # a.b.c.d
    resource_version: str  # a.b
    year: str
    month: str
    day: str


def plugin_names(name: str, *, domain: str = DEFAULT_DOMAIN, package: str | None = None,
                 today: date | None = None) -> PluginNames:
    """Check ``name``, ``domain`` and ``package`` and derive the rest; :class:`ScaffoldError` says what is wrong."""
    if not _NAME.match(name):
        raise ScaffoldError(
            f"plugin name {name!r} is not valid: use lowercase letters and digits, words joined by single "
            "'-' or '_', starting with a letter (e.g. my-plugin)"
        )
    domain = domain.lower()
    if not _DOMAIN.match(domain):
        raise ScaffoldError(f"domain {domain!r} is not a DNS name like example.org (the process URLs are http://<domain>/…)")
    package = package if package is not None else name.replace("-", "_")
    _check_package(package)
    words = re.split(r"[-_]", name)
    process = words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])
    process_id = f"{domain.replace('.', '')}_{process}"
    if not PROCESS_ID_PATTERN.match(process_id):  # cannot happen with the checks above; the engine's rule decides
        raise ScaffoldError(f"process id {process_id!r} does not match {PROCESS_ID_PATTERN.pattern}")
    today = today or date.today()
    capitalised = process[:1].upper() + process[1:]
    return PluginNames(
        name=name, kebab=name.replace("_", "-"), package=package, process=process, Process=capitalised,
        process_id=process_id, message=f"start{capitalised}", domain=domain,
        title=" ".join(words).capitalize(), version=VERSION, resource_version=".".join(VERSION.split(".")[:2]),
        year=str(today.year), month=str(today.month), day=str(today.day),
    )


def _check_package(package: str) -> None:
    if not _PACKAGE.match(package) or keyword.iskeyword(package):
        raise ScaffoldError(f"package {package!r} is not a valid Python package name (lowercase letters, digits, '_')")
    if package in sys.stdlib_module_names:
        raise ScaffoldError(f"package {package!r} would shadow the standard library module; choose another name or --package")
    if package in _RESERVED_PACKAGES:
        raise ScaffoldError(f"package {package!r} is reserved (dsf-py and test layouts use it); choose another name or --package")
    if importlib.util.find_spec(package) is not None:
        raise ScaffoldError(f"a module {package!r} is already importable here (an installed distribution or a module on the Python path); "
                            "choose another name or --package")


def render_plugin(names: PluginNames) -> dict[str, str]:
    """Relative path → text of every file of the new plugin."""
    values = asdict(names)
    root = resources.files("dsf_core.scaffold").joinpath("templates/plugin")
    return {_fill(path, values, path): _fill(item.read_text(encoding="utf-8"), values, path)
            for path, item in _walk(root, "")}


def _walk(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        if item.is_dir():
            found += _walk(item, f"{prefix}{item.name}/")
        elif item.name.endswith(_SUFFIX):
            found.append((f"{prefix}{item.name[:-len(_SUFFIX)]}", item))
    return found


def _fill(text: str, values: dict[str, str], template: str) -> str:
    def value(match: re.Match[str]) -> str:
        try:
            return values[match.group(1)]
        except KeyError:
            raise ScaffoldError(f"template {template}: unknown token {match.group(0)}") from None

    return _TOKEN.sub(value, text)


def create_plugin(directory: Path, files: dict[str, str]) -> None:
    """Write ``files`` into the new ``directory``, all or nothing; an existing directory is never touched."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir()  # exclusive: fails when it exists, even if it appeared a moment ago
    except FileExistsError:
        raise ScaffoldError(f"{directory} already exists; not overwriting it (remove it or choose another --directory)") from None
    except OSError as exc:
        raise ScaffoldError(f"cannot create {directory}: {exc.strerror or exc}") from None
    try:
        for relative, text in files.items():
            path = directory / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise ScaffoldError(f"cannot write {directory}: {exc.strerror or exc}") from None
