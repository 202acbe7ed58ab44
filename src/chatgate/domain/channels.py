"""Whether a membership lets us post: the rules are Telegram's, and the account runtime's too."""

from __future__ import annotations

from collections.abc import Mapping

from chatgate.domain.messages import ConversationKind

POSTING_RIGHT = {ConversationKind.CHANNEL: "can_post_messages", ConversationKind.GROUP: "can_send_messages"}


def channel_kind(kind: ConversationKind) -> str:
    return "channel" if kind == ConversationKind.CHANNEL else "group"


def can_post(kind: ConversationKind, status: str, rights: Mapping[str, bool]) -> bool:
    """Channels: the creator, or an administrator with can_post_messages. Groups: any member
    unless restricted without can_send_messages."""
    if status == "creator":
        return True
    if kind == ConversationKind.CHANNEL:
        return status == "administrator" and bool(rights.get("can_post_messages"))
    if status in ("administrator", "member"):
        return True
    return status == "restricted" and bool(rights.get("can_send_messages"))


def missing_right(kind: ConversationKind, status: str, rights: Mapping[str, bool]) -> str | None:
    """What stops us from posting, in words; None when we can."""
    if can_post(kind, status, rights):
        return None
    if status in ("left", "kicked"):
        return f"the bot is not a member of this {channel_kind(kind)} (status '{status}')"
    if kind == ConversationKind.CHANNEL and status != "administrator":
        return (
            f"the bot lacks the '{POSTING_RIGHT[kind]}' right: "
            f"it must be an administrator of the channel with it (it is a plain {status})"
        )
    return f"the bot lacks the '{POSTING_RIGHT[kind]}' right"
