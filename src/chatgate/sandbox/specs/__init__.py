"""Providers' official machine-readable specs, shipped so the sandbox validates calls offline.

Copies of the files in the shared contracts (licences beside them); a test checks they have not
drifted. Byte-identical, except Twilio's Messages spec, shipped without its response `examples`
(`without_examples`): nothing reads them, and their placeholder SIDs look like credentials to
secret scanners.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPECS_DIR = Path(__file__).parent
TELEGRAM_BOT_API = SPECS_DIR / "telegram-bot-api.json"
WHATSAPP_CLOUD_API = SPECS_DIR / "whatsapp-business-messaging-api_v23.0.yaml"
TWILIO_MESSAGES_API = SPECS_DIR / "twilio_api_v2010_messages.json"


def without_examples(spec: Any) -> Any:
    """The spec with every `examples` member removed (how the Twilio copy is shipped)."""
    if isinstance(spec, dict):
        return {k: without_examples(v) for k, v in spec.items() if k != "examples"}
    if isinstance(spec, list):
        return [without_examples(v) for v in spec]
    return spec
