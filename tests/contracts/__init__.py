"""Copies of the shared contract fixtures (sample updates, webhooks, signature vectors)."""

from __future__ import annotations

from pathlib import Path

CONTRACTS_DIR = Path(__file__).parent
TELEGRAM_UPDATES = CONTRACTS_DIR / "telegram-updates" / "updates"
TELEGRAM_RESPONSES = CONTRACTS_DIR / "telegram-updates" / "responses"
WHATSAPP_WEBHOOKS = CONTRACTS_DIR / "whatsapp-cloud-api" / "webhooks"
WHATSAPP_SECURITY = CONTRACTS_DIR / "whatsapp-cloud-api" / "webhook_security.json"
TWILIO_SIGNATURES = CONTRACTS_DIR / "twilio" / "signature_vectors.json"
STANDARD_WEBHOOK_VECTORS = CONTRACTS_DIR / "standard-webhooks" / "test_vectors.json"
