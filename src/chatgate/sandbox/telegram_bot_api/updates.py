"""Incoming updates: injection (the bot learns the chats and users they mention) and getUpdates.

Updates wait in the bot's pending queue until confirmed by a getUpdates offset or delivered to
the webhook. A waiting getUpdates (timeout > 0) returns as soon as an update arrives; a newer
getUpdates call or a setWebhook terminates it with 409, as Telegram does.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Sequence
from typing import Any

from chatgate.sandbox.telegram_bot_api.errors import conflict
from chatgate.sandbox.telegram_bot_api.state import CHAT_TYPES, Bot, ChatRecord, LongPoll

MESSAGE_KINDS = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_message",
        "edited_business_message",
        "guest_message",
    }
)
NEW_MESSAGE_KINDS = frozenset({"message", "channel_post"})
EDITED_MESSAGE_KINDS = frozenset({"edited_message", "edited_channel_post"})
WEBHOOK_ACTIVE = (
    "can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
OTHER_GETUPDATES = "other getUpdates request; make sure that only one bot instance is running"


class InvalidUpdate(ValueError):
    pass


def update_kind(update: dict[str, Any], update_types: Sequence[str]) -> str:
    kinds = [key for key in update if key != "update_id"]
    if len(kinds) != 1:
        raise InvalidUpdate("an Update holds update_id and exactly one of its optional fields")
    if kinds[0] not in update_types:
        raise InvalidUpdate(f'"{kinds[0]}" is not a kind of Update')
    if not isinstance(update[kinds[0]], dict):
        raise InvalidUpdate(f'"{kinds[0]}" must be an object')
    return kinds[0]


def prepare_update(
    bot: Bot, raw: dict[str, Any], update_types: Sequence[str], *, now: float, history_limit: int
) -> tuple[dict[str, Any], str]:
    """A copy of the update with update_id (and a new message's message_id/date) filled in;
    the bot learns the chats, users and callback queries it mentions."""
    update = copy.deepcopy(raw)
    kind = update_kind(update, update_types)
    given = update.get("update_id")
    if given is None:
        update = {"update_id": bot.next_update_id, **update}
    elif isinstance(given, bool) or not isinstance(given, int) or given < 0:
        raise InvalidUpdate("update_id must be a non-negative integer")
    bot.next_update_id = max(bot.next_update_id, int(update["update_id"]) + 1)
    learn(bot, kind, update[kind], now=now, history_limit=history_limit)
    return update, kind


def _learn_chat(bot: Bot, raw: Any) -> ChatRecord | None:
    if not isinstance(raw, dict) or isinstance(raw.get("id"), bool) or not isinstance(raw.get("id"), int):
        return None
    chats = bot.chat_map()
    chat = chats.get(raw["id"])
    if chat is not None:
        return chat
    kind = raw.get("type")
    if kind not in CHAT_TYPES:
        return None
    chat = ChatRecord(
        id=raw["id"],
        type=kind,
        title=raw.get("title"),
        username=raw.get("username"),
        first_name=raw.get("first_name"),
        last_name=raw.get("last_name"),
        is_forum=bool(raw.get("is_forum")),
    )
    if kind == "channel":  # a bot only sees channel posts as an administrator who may post
        chat.status = "administrator"
        chat.rights = {"can_post_messages": True, "can_edit_messages": True, "can_delete_messages": True}
    chats[chat.id] = chat
    return chat


def _learn_user(bot: Bot, chat: ChatRecord | None, raw: Any) -> None:
    if not isinstance(raw, dict) or isinstance(raw.get("id"), bool) or not isinstance(raw.get("id"), int):
        return
    if bot.users is None:
        bot.users = {}
    bot.users[raw["id"]] = dict(raw)
    if chat is not None and chat.type != "private" and raw["id"] != bot.id:
        chat.members.setdefault(raw["id"], {"user": dict(raw), "status": "member", "rights": {}})


def learn(bot: Bot, kind: str, payload: dict[str, Any], *, now: float, history_limit: int) -> None:
    if kind in MESSAGE_KINDS:
        chat = _learn_chat(bot, payload.get("chat"))
        _learn_user(bot, chat, payload.get("from"))
        if chat is None:
            return
        if kind in NEW_MESSAGE_KINDS:
            if "message_id" not in payload:
                payload["message_id"] = chat.take_message_id()
            payload.setdefault("date", int(now))
            if isinstance(payload["message_id"], int):
                chat.store(payload, outgoing=False, limit=history_limit)
        elif kind in EDITED_MESSAGE_KINDS:
            stored = chat.messages.get(payload.get("message_id", -1))
            if stored is not None and not stored.outgoing:
                stored.message = payload
    elif kind == "callback_query":
        if bot.callback_queries is None:
            bot.callback_queries = {}
        bot.callback_queries[str(payload.get("id"))] = False
        message = payload.get("message")
        chat = _learn_chat(bot, message.get("chat") if isinstance(message, dict) else None)
        _learn_user(bot, chat, payload.get("from"))
    elif kind in ("my_chat_member", "chat_member", "chat_join_request"):
        chat = _learn_chat(bot, payload.get("chat"))
        _learn_user(bot, chat, payload.get("from"))
        new = payload.get("new_chat_member")
        if chat is None or not isinstance(new, dict) or not isinstance(new.get("user"), dict):
            return
        user_id = new["user"].get("id")
        status = str(new.get("status", "member"))
        if kind == "my_chat_member" and user_id == bot.id:
            chat.status = status
            chat.rights = {k: v for k, v in new.items() if isinstance(v, bool)}
            if chat.type == "private":
                chat.blocked = status == "kicked"
        elif kind == "chat_member" and isinstance(user_id, int):
            rights = {k: v for k, v in new.items() if isinstance(v, bool)}
            chat.members[user_id] = {"user": dict(new["user"]), "status": status, "rights": rights}


def enqueue(bot: Bot, update: dict[str, Any], kind: str) -> str:
    """Queue an update for the bot: "webhook", "queued" (for getUpdates) or "filtered" by allowed_updates."""
    if not bot.wants(kind):
        return "filtered"
    bot.pending().append(update)
    if bot.poll is not None:
        bot.poll.event.set()
    return "webhook" if bot.webhook is not None else "queued"


def confirm(bot: Bot, offset: int | None) -> None:
    queue = bot.updates
    if not queue or offset is None or offset == 0:
        return
    if offset > 0:
        while queue and int(queue[0]["update_id"]) < offset:
            queue.popleft()
    else:
        while len(queue) > -offset:
            queue.popleft()


async def get_updates(
    bot: Bot, *, offset: int | None, limit: int | None, poll_seconds: int | None, allowed: list[str] | None
) -> list[dict[str, Any]]:
    if bot.webhook is not None:
        raise conflict(WEBHOOK_ACTIVE)
    if allowed is not None:
        bot.allowed_updates = tuple(allowed) or None
    if bot.poll is not None:
        bot.poll.terminate(OTHER_GETUPDATES)
        bot.poll = None
    confirm(bot, offset)
    count = 100 if limit is None else min(max(limit, 1), 100)
    if not bot.updates and poll_seconds and poll_seconds > 0:
        poll = LongPoll()
        bot.poll = poll
        try:
            await asyncio.wait_for(poll.event.wait(), poll_seconds)
        except TimeoutError:
            pass
        finally:
            if bot.poll is poll:
                bot.poll = None
        if poll.terminated_by is not None:
            raise conflict(f"terminated by {poll.terminated_by}")
    return list(itertools.islice(bot.updates or (), count))
