"""Documentation stays complete: a setting missing from docs/operating.md fails the suite."""

from __future__ import annotations

from pathlib import Path

from dsf_core.settings import documented_settings

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "operating.md").read_text()
    missing = [name for name, _, _ in documented_settings() if f"`{name}`" not in text]
    assert not missing, f"settings missing from docs/operating.md: {missing}"
