"""Documentation stays complete: a setting missing from docs/operating.md fails the suite."""

from __future__ import annotations

from pathlib import Path

from dsf_core.settings import documented_settings

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "operating.md").read_text()
    missing = [name for name, _, _ in documented_settings() if f"`{name}`" not in text]
    assert not missing, f"settings missing from docs/operating.md: {missing}"


def test_the_settings_reference_is_generated_from_the_model() -> None:
    from dsf_core.settings_doc import END, START, reference_markdown, rows

    text = (DOCS / "operating.md").read_text()
    block = text[text.index(START): text.index(END) + len(END)]
    assert block == reference_markdown(), "run: python -m dsf_core.settings_doc --update docs/operating.md"
    undocumented = [row[0] for row in rows() if not row[-1]]
    assert not undocumented, f"settings without a #: comment in dsf_core/settings.py: {undocumented}"
