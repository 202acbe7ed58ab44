"""The docs stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from chatgate.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text("utf-8")
    missing = [name for name in Settings.model_fields if f"`CHATGATE_{name.upper()}`" not in text]
    assert not missing, f"document these settings in docs/configuration.md: {missing}"


def test_readme_opens_with_exactly_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    assert lines[:4] == ["```sh", "./scripts/serve", "./scripts/test", "```"]
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    assert "scripts/test" in ci


def test_event_schemas_are_published_and_current() -> None:
    from chatgate.domain.event_schemas import render

    folder = ROOT / "docs" / "events"
    for name, text in render().items():
        path = folder / name
        assert path.exists(), f"run `python -m chatgate.domain.event_schemas docs/events` ({name} is missing)"
        assert path.read_text("utf-8") == text, f"{name} is out of date: regenerate it"
    documented = (ROOT / "docs" / "events.md").read_text("utf-8")
    from chatgate.domain.events import EventType

    missing = [t.value for t in EventType if f"`{t.value}`" not in documented]
    assert not missing, f"document these event types in docs/events.md: {missing}"


def test_relative_links_in_the_docs_resolve() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text("utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert len(pages) > 5
    assert not broken, f"these links point at nothing: {broken}"
