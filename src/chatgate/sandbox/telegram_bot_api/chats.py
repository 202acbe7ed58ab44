"""Chats defined through the control API: their JSON description checked and turned into a ChatRecord.

```
{"id": -1001234, "type": "supergroup", "title": "Team", "username": "team",
 "status": "administrator", "rights": {"can_delete_messages": true},      # the bot's membership
 "members": [{"user": {"id": 42, "first_name": "Ann"}, "status": "creator"}],
 "blocked": false,            # private chats: the user blocked the bot
 "migrated_to": -1009876}     # groups: upgraded to this supergroup
```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatgate.sandbox.telegram_bot_api.objects import allowed_rights
from chatgate.sandbox.telegram_bot_api.spec import BotApiSpec
from chatgate.sandbox.telegram_bot_api.state import BOT_STATUSES, CHAT_TYPES, Bot, ChatRecord

_CHAT_FIELDS = frozenset(
    {
        "id",
        "type",
        "title",
        "username",
        "first_name",
        "last_name",
        "description",
        "is_forum",
        "status",
        "rights",
        "blocked",
        "migrated_to",
        "members",
    }
)
_MEMBER_FIELDS = frozenset({"user", "status", "rights", "custom_title", "tag"})


def _int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer")
    return value


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _rights(spec: BotApiSpec, status: str, chat_type: str, raw: Any, where: str) -> dict[str, bool]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TypeError(f"{where}rights must be an object")
    if raw and status not in ("administrator", "restricted"):
        raise ValueError(f"{where}rights apply only to the administrator and restricted statuses")
    known = allowed_rights(spec, status, chat_type) if raw else {}
    for name, value in raw.items():
        if name not in known:
            raise ValueError(f'{where}rights: "{name}" is not a right of a {status} in a {chat_type}')
        if not isinstance(value, bool):
            raise TypeError(f'{where}rights: "{name}" must be true or false')
    return dict(raw)


def _status(raw: Any, where: str) -> str:
    status = "member" if raw is None else raw
    if status not in BOT_STATUSES:
        raise ValueError(f"{where}status must be one of {', '.join(sorted(BOT_STATUSES))}")
    return str(status)


def _member(spec: BotApiSpec, chat_type: str, raw: Any, index: int) -> tuple[int, dict[str, Any]]:
    where = f"members[{index}]."
    if not isinstance(raw, dict) or not isinstance(raw.get("user"), dict):
        raise TypeError(f"{where}user must be an object with an integer id")
    unknown = set(raw) - _MEMBER_FIELDS
    if unknown:
        raise ValueError(f"{where} unknown field(s): {', '.join(sorted(unknown))}")
    user = dict(raw["user"])
    user_id = _int(user, "id")
    user.setdefault("is_bot", False)
    user.setdefault("first_name", f"User {user_id}")
    status = _status(raw.get("status"), where)
    extra = {k: raw[k] for k in ("custom_title", "tag") if raw.get(k) is not None}
    return user_id, {
        "user": user,
        "status": status,
        "rights": _rights(spec, status, chat_type, raw.get("rights"), where),
        "extra": extra,
    }


def build_chat(spec: BotApiSpec, bot: Bot, body: Mapping[str, Any]) -> ChatRecord:
    """Create or replace a chat of this bot (its message history is kept); ValueError if malformed."""
    unknown = set(body) - _CHAT_FIELDS
    if unknown:
        raise ValueError(f"unknown chat field(s): {', '.join(sorted(unknown))}")
    chat_id = _int(body, "id")
    chat_type = body.get("type")
    if chat_type not in CHAT_TYPES:
        raise ValueError(f"type must be one of {', '.join(sorted(CHAT_TYPES))}")
    if chat_type == "private" and chat_id <= 0:
        raise ValueError("a private chat's id is the user's id, a positive number")
    if chat_type != "private" and chat_id >= 0:
        raise ValueError("group, supergroup and channel ids are negative")
    status = _status(body.get("status"), "")
    chat = ChatRecord(
        id=chat_id,
        type=str(chat_type),
        title=_text(body, "title"),
        username=_text(body, "username"),
        first_name=_text(body, "first_name"),
        last_name=_text(body, "last_name"),
        description=_text(body, "description"),
        is_forum=bool(body.get("is_forum")) and chat_type == "supergroup",
        status=status,
        rights=_rights(spec, status, str(chat_type), body.get("rights"), ""),
    )
    if chat.username is not None:
        chat.username = chat.username.lstrip("@")
    if chat_type == "private":
        chat.title = None
        chat.first_name = chat.first_name or f"User {chat_id}"
    else:
        chat.first_name = chat.last_name = None
        chat.title = chat.title or f"Sandbox {chat_type} {chat_id}"
    blocked = body.get("blocked", False)
    if not isinstance(blocked, bool) or (blocked and chat_type != "private"):
        raise TypeError("blocked (true/false) applies to private chats only")
    chat.blocked = blocked
    if body.get("migrated_to") is not None:
        if chat_type != "group":
            raise ValueError("only a group can be migrated to a supergroup")
        chat.migrated_to = _int(body, "migrated_to")
        if chat.migrated_to >= 0:
            raise ValueError("migrated_to must be a (negative) supergroup id")
    members = body.get("members") or []
    if not isinstance(members, list):
        raise TypeError("members must be an array")
    for index, raw in enumerate(members):
        user_id, record = _member(spec, chat.type, raw, index)
        chat.members[user_id] = record
    chats = bot.chat_map()
    existing = chats.get(chat_id)
    if existing is not None:
        chat.messages, chat.next_message_id = existing.messages, existing.next_message_id
    chats[chat_id] = chat
    if chat.migrated_to is not None and chat.migrated_to not in chats:
        chats[chat.migrated_to] = ChatRecord(
            id=chat.migrated_to,
            type="supergroup",
            title=chat.title,
            status=chat.status,
            rights=dict(chat.rights),
            members=dict(chat.members),
        )
    return chat
