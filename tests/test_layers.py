"""Dependencies only point down: fhir knows no HTTP, the mailbox never imports the engine."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dsf_core"

# package (relative to dsf_core) -> packages it must never import
FORBIDDEN = {
    "fhir": ("dsf_core.server", "dsf_core.bpe", "dsf_core.cli", "dsf_core.testing", "aiohttp"),
    "server": ("dsf_core.bpe", "dsf_core.cli", "dsf_core.testing"),
    "pki": ("dsf_core.fhir", "dsf_core.server", "dsf_core.bpe", "dsf_core.cli"),
    "errors.py": ("dsf_core.",),
    "client.py": ("dsf_core.fhir", "dsf_core.server", "dsf_core.bpe", "dsf_core.api", "dsf_core.cli", "dsf_core.testing"),
    "api": ("dsf_core.bpe", "dsf_core.server", "dsf_core.cli", "dsf_core.testing", "dsf_core.node"),
    "bpe": ("dsf_core.server", "dsf_core.cli", "dsf_core.testing", "dsf_core.node"),
    "network": ("dsf_core.server", "dsf_core.bpe", "dsf_core.testing", "dsf_core.node"),
    "data": ("dsf_core.server", "dsf_core.bpe", "dsf_core.network", "dsf_core.testing", "dsf_core.cli", "dsf_core.node"),
    "settings.py": ("dsf_core.fhir", "dsf_core.server", "dsf_core.bpe"),
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("scope", sorted(FORBIDDEN))
def test_layer_contract(scope: str) -> None:
    root = PACKAGE / scope
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    assert files, f"nothing found for {scope}"
    violations = [
        f"{f.relative_to(PACKAGE.parent)} imports {name}"
        for f in files
        for name in sorted(imports_of(f))
        if any(name == bad.rstrip(".") or name.startswith(bad if bad.endswith(".") else bad + ".") or name == bad for bad in FORBIDDEN[scope])
    ]
    assert not violations, "\n".join(violations)
