"""The specs and fixtures we ship are byte-identical to the shared contracts they copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatgate.sandbox import specs
from tests.contracts import CONTRACTS_DIR

# The shared contracts sit beside the project root when they are present (not in every clone).
SHARED = Path(__file__).resolve().parents[2] / "shared" / "contracts"

PAIRS = [
    (specs.TELEGRAM_BOT_API, "telegram-bot-api/api.json"),
    (specs.WHATSAPP_CLOUD_API, "whatsapp-cloud-api/business-messaging-api_v23.0.yaml"),
    *[
        (path, str(path.relative_to(CONTRACTS_DIR)))
        for path in sorted(CONTRACTS_DIR.rglob("*"))
        if path.is_file() and path.suffix in {".json", ".yaml"}
    ],
]


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared contracts are not beside this clone")
@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=[p[1] for p in PAIRS])
def test_vendored_copy_matches_the_shared_contract(ours: Path, theirs: str) -> None:
    assert ours.read_bytes() == (SHARED / theirs).read_bytes()


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared contracts are not beside this clone")
def test_twilio_spec_is_the_shared_one_without_its_examples() -> None:
    theirs = json.loads((SHARED / "twilio/twilio_api_v2010_messages.json").read_text("utf-8"))
    ours = json.loads(specs.TWILIO_MESSAGES_API.read_text("utf-8"))
    assert ours == specs.without_examples(theirs)
    assert ours["paths"], "the paths and schemas are all there"


def test_every_fixture_directory_is_present() -> None:
    assert len(list((CONTRACTS_DIR / "telegram-updates" / "updates").glob("*.json"))) > 50
    assert len(list((CONTRACTS_DIR / "whatsapp-cloud-api" / "webhooks").glob("*.json"))) >= 10
