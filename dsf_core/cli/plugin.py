"""``dsf plugin``: process plugins for plugin authors.

``new NAME`` writes a plugin distribution to ``./NAME`` (or ``--directory``): pyproject with
the ``dsf.process_plugins`` entry point, the package with ``PLUGIN``, a BPMN model (message
start event, one service task), its FHIR resources, the activity, a README and a test that
runs the process on a real network. docs/plugin-authoring.md goes on from there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dsf_core.cli.main import CommandError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``plugin`` command group to the top-level ``dsf`` parser."""
    from dsf_core.scaffold.plugin import DEFAULT_DOMAIN

    parser = subparsers.add_parser(
        "plugin",
        help="process plugins: start a new one",
        description="Tools for process plugin authors.",
    )
    commands = parser.add_subparsers(dest="plugin_command", metavar="COMMAND")
    commands.required = True
    new = commands.add_parser(
        "new",
        help="scaffold a process plugin distribution",
        description=(
            "Write a new process plugin distribution to ./NAME: pyproject.toml (version a.b.c.d, entry point in "
            "dsf.process_plugins), src/PACKAGE with PLUGIN, a BPMN model with a message start event and one "
            "service task, its FHIR resources (ActivityDefinition, start Task profile, draft Task), the activity, "
            "a README and a test that runs the process on a real network. An existing directory is never touched."
        ),
        epilog=(
            "Example: dsf plugin new my-plugin --domain example.org → package my_plugin, "
            "process exampleorg_myPlugin started by the message startMyPlugin."
        ),
    )
    new.add_argument("name", metavar="NAME",
                     help="plugin and distribution name: lowercase words joined by '-' or '_' (e.g. my-plugin)")
    new.add_argument("--domain", default=DEFAULT_DOMAIN,
                     help="your organisation's domain: process URLs are http://DOMAIN/bpe/Process/…, the process "
                          "id is DOMAIN without dots, '_', the name (default: %(default)s)")
    new.add_argument("--package", help="Python package name (default: NAME with '-' as '_')")
    new.add_argument("--directory", metavar="DIR", type=Path, help="where to write the plugin (default: ./NAME)")
    new.set_defaults(func=cmd_new)


def cmd_new(args: argparse.Namespace) -> int:
    from dsf_core.scaffold.plugin import ScaffoldError, create_plugin, plugin_names, render_plugin

    directory: Path = args.directory or Path(args.name)
    try:
        names = plugin_names(args.name, domain=args.domain, package=args.package)
        files = render_plugin(names)
        create_plugin(directory, files)
    except ScaffoldError as exc:
        raise CommandError(str(exc)) from None
    print(f"Process plugin {names.name} {names.version} in {directory}:")
    for path in sorted(files):
        print(f"  {path}")
    print(f"Process {names.process_id} (http://{names.domain}/bpe/Process/{names.process}|{names.resource_version}), "
          f"started by the message {names.message}.")
    print(f"Next: cd {directory} && pip install -e '.[test]' && pytest")
    return 0
