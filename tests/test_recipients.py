"""How a send's `to` is read: the chat kind, and the address spelled as inbound records it."""

from __future__ import annotations

from chatgate.domain.messages import ConversationKind
from chatgate.domain.windows import recipient_address, recipient_kind


def test_negative_telegram_chat_ids_are_groups_and_everything_else_private() -> None:
    assert recipient_kind("telegram_bot", "-1001234567890") == ConversationKind.GROUP
    assert recipient_kind("telegram_user", "-42") == ConversationKind.GROUP
    assert recipient_kind("telegram_bot", "4242") == ConversationKind.PRIVATE
    assert recipient_kind("whatsapp_cloud", "-15550100199") == ConversationKind.PRIVATE


def test_whatsapp_numbers_are_spelled_as_inbound_spells_them() -> None:
    assert recipient_address("whatsapp_cloud", {}, "+1 555-010-0199") == "15550100199"
    assert recipient_address("twilio", {"channel": "whatsapp"}, "+1 555 010 0199") == "whatsapp:+15550100199"
    assert recipient_address("telegram_bot", {}, "@someone") == "@someone"
