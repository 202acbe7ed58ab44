"""Providers' official machine-readable specs, shipped so the sandbox validates calls offline.

Byte-identical copies of the files in the shared contracts (licences beside them); a test
checks they have not drifted.
"""

from __future__ import annotations

from pathlib import Path

SPECS_DIR = Path(__file__).parent
TELEGRAM_BOT_API = SPECS_DIR / "telegram-bot-api.json"
WHATSAPP_CLOUD_API = SPECS_DIR / "whatsapp-business-messaging-api_v23.0.yaml"
TWILIO_MESSAGES_API = SPECS_DIR / "twilio_api_v2010_messages.json"
