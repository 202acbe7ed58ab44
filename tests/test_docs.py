"""The docs stay in step with the code."""

from __future__ import annotations

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
