"""The sandbox's in-memory state: bots, their chats, messages, files and pending updates.

A bot is one small slotted object; everything that grows with use (pending updates, chats, the
call log, ...) is created on first use, so ten thousand idle bots cost a few megabytes.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Update kinds Telegram leaves out unless allowed_updates asks for them.
NOT_DELIVERED_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
BOT_STATUSES = frozenset({"creator", "administrator", "member", "restricted", "left", "kicked"})
CHAT_TYPES = frozenset({"private", "group", "supergroup", "channel"})
FIRST_BOT_ID = 7_000_000_001


def new_token(bot_id: int) -> str:
    """`<id>:SANDBOX<random>`: never mistaken for (or by a scanner as) a real Telegram token."""
    return f"{bot_id}:SANDBOX{secrets.token_urlsafe(24)}"


@dataclass(slots=True)
class StoredFile:
    file_id: str
    file_unique_id: str
    bot_id: int
    kind: str | None  # photo, document, ...; None: usable as any kind (control-API uploads)
    size: int
    data: bytes | None  # None: size-only placeholder (served as zero bytes)
    file_name: str | None = None
    mime_type: str | None = None
    file_path: str | None = None  # assigned by getFile
    source_url: str | None = None

    def content(self) -> bytes:
        return self.data if self.data is not None else bytes(self.size)


@dataclass(slots=True)
class StoredMessage:
    message: dict[str, Any]
    outgoing: bool  # sent by the bot
    deleted: bool = False


@dataclass(slots=True)
class ChatRecord:
    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    description: str | None = None
    is_forum: bool = False
    status: str = "member"  # the bot's own membership
    rights: dict[str, bool] = field(default_factory=dict)  # the bot's rights (administrator/restricted)
    blocked: bool = False  # private chats: the user blocked the bot
    migrated_to: int | None = None  # groups upgraded to a supergroup
    members: dict[int, dict[str, Any]] = field(default_factory=dict)  # user id -> ChatMember
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    next_message_id: int = 1

    def short(self) -> dict[str, Any]:
        """The `Chat` object embedded in messages."""
        chat: dict[str, Any] = {"id": self.id, "type": self.type}
        for key in ("title", "username", "first_name", "last_name"):
            value = getattr(self, key)
            if value is not None:
                chat[key] = value
        if self.is_forum:
            chat["is_forum"] = True
        return chat

    def take_message_id(self) -> int:
        number = self.next_message_id
        self.next_message_id += 1
        return number

    def store(self, message: dict[str, Any], *, outgoing: bool, limit: int) -> None:
        number = int(message["message_id"])
        self.messages[number] = StoredMessage(message, outgoing)
        self.next_message_id = max(self.next_message_id, number + 1)
        while len(self.messages) > limit:
            del self.messages[next(iter(self.messages))]


@dataclass(slots=True)
class WebhookSettings:
    url: str
    secret_token: str | None = None
    max_connections: int = 40
    ip_address: str | None = None
    has_custom_certificate: bool = False
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass(slots=True)
class CallRecord:
    method: str  # the spec's spelling
    called_as: str
    params: dict[str, Any]
    time: float
    ok: bool
    error_code: int | None = None
    description: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "called_as": self.called_as,
            "params": self.params,
            "time": self.time,
            "ok": self.ok,
            "error_code": self.error_code,
            "description": self.description,
        }


class LongPoll:
    """One waiting getUpdates call; a newer call (or setWebhook) terminates it."""

    __slots__ = ("event", "terminated_by")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.terminated_by: str | None = None

    def terminate(self, by: str) -> None:
        self.terminated_by = by
        self.event.set()


@dataclass(slots=True)
class Bot:
    id: int
    token: str
    username: str
    first_name: str
    webhook: WebhookSettings | None = None
    allowed_updates: tuple[str, ...] | None = None
    updates: deque[dict[str, Any]] | None = None
    next_update_id: int = 1
    poll: LongPoll | None = None
    chats: dict[int, ChatRecord] | None = None
    users: dict[int, dict[str, Any]] | None = None  # users seen in injected updates
    callback_queries: dict[str, bool] | None = None  # id -> answered
    calls: deque[CallRecord] | None = None
    delivering: bool = False

    def user(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": True, "first_name": self.first_name, "username": self.username}

    def pending(self) -> deque[dict[str, Any]]:
        if self.updates is None:
            self.updates = deque()
        return self.updates

    def pending_count(self) -> int:
        return len(self.updates) if self.updates else 0

    def chat_map(self) -> dict[int, ChatRecord]:
        if self.chats is None:
            self.chats = {}
        return self.chats

    def find_chat(self, chat_id: int | str) -> ChatRecord | None:
        if not self.chats:
            return None
        if isinstance(chat_id, int):
            return self.chats.get(chat_id)
        text = chat_id.strip()
        if text.lstrip("-").isdigit():
            return self.chats.get(int(text))
        if text.startswith("@"):
            wanted = text[1:].lower()
            for chat in self.chats.values():
                if chat.username and chat.username.lower() == wanted:
                    return chat
        return None

    def wants(self, kind: str) -> bool:
        if self.allowed_updates is None:
            return kind not in NOT_DELIVERED_BY_DEFAULT
        return kind in self.allowed_updates

    def log_call(self, record: CallRecord, limit: int) -> None:
        if self.calls is None:
            self.calls = deque(maxlen=limit)
        self.calls.append(record)


class SandboxState:
    """Every bot and file of one sandbox."""

    def __init__(self, first_bot_id: int = FIRST_BOT_ID) -> None:
        self.bots: dict[int, Bot] = {}
        self.by_token: dict[str, Bot] = {}
        self.files: dict[str, StoredFile] = {}
        self.by_path: dict[str, StoredFile] = {}  # file_path (given out by getFile) -> file
        self._ids = itertools.count(first_bot_id)
        self._file_numbers = itertools.count(1)

    def create_bot(
        self,
        *,
        bot_id: int | None = None,
        username: str | None = None,
        first_name: str | None = None,
        token: str | None = None,
    ) -> Bot:
        if bot_id is None:
            bot_id = next(self._ids)
            while bot_id in self.bots:
                bot_id = next(self._ids)
        if bot_id in self.bots:
            raise ValueError(f"bot {bot_id} already exists")
        token = token or new_token(bot_id)
        if token in self.by_token:
            raise ValueError("that token is already in use")
        name = username or f"sandbox_{bot_id}_bot"
        bot = Bot(bot_id, token, name, first_name or f"Sandbox bot {bot_id}")
        self.bots[bot_id] = bot
        self.by_token[token] = bot
        return bot

    def revoke(self, bot: Bot) -> str:
        """Like BotFather's /revoke: the old token stops working, a new one is issued."""
        self.by_token.pop(bot.token, None)
        bot.token = new_token(bot.id)
        self.by_token[bot.token] = bot
        return bot.token

    def delete_bot(self, bot: Bot) -> None:
        self.by_token.pop(bot.token, None)
        self.bots.pop(bot.id, None)

    def add_file(
        self,
        bot_id: int,
        *,
        kind: str | None,
        data: bytes | None,
        size: int | None = None,
        file_name: str | None = None,
        mime_type: str | None = None,
        source_url: str | None = None,
    ) -> StoredFile:
        number = next(self._file_numbers)
        stored = StoredFile(
            file_id=f"SBX{kind or 'file'}{number}_{secrets.token_urlsafe(12)}",
            file_unique_id=f"SBXU{number}{secrets.token_hex(4)}",
            bot_id=bot_id,
            kind=kind,
            size=len(data) if data is not None else int(size or 0),
            data=data,
            file_name=file_name,
            mime_type=mime_type,
            source_url=source_url,
        )
        self.files[stored.file_id] = stored
        return stored

    def file_number(self) -> int:
        return next(self._file_numbers)
