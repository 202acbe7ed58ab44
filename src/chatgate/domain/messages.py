"""Messages, conversations and the forward-only status machine."""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class ConversationKind(StrEnum):
    PRIVATE = "private"
    GROUP = "group"
    CHANNEL = "channel"


class MessageStatus(StrEnum):
    RECEIVED = "received"  # inbound messages
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


_RANK = {MessageStatus.QUEUED: 0, MessageStatus.SENT: 1, MessageStatus.DELIVERED: 2, MessageStatus.READ: 3}


def moves_forward(current: MessageStatus, new: MessageStatus) -> bool:
    """queued → sent → delivered → read; failed is terminal and cannot follow read.

    Providers report out of order (a `read` can overtake `delivered`); a late, older status
    is ignored rather than moving a message back.
    """
    if current in (MessageStatus.FAILED, MessageStatus.RECEIVED) or current == new:
        return False
    if new == MessageStatus.FAILED:
        return current != MessageStatus.READ
    if new not in _RANK:
        return False
    return _RANK[new] > _RANK[current]
