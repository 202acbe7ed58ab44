"""An in-process Telegram for tests: `FakeTelegram` (the "server") and `FakeAccountClient`.

`FakeAccountClient` implements `AccountClient` like `TelethonAccountClient` does, through the same
code wherever it can: it raises TELETHON'S OWN ERROR CLASSES inside `errors.translate_errors`
(so `errors.map_error` is exercised exactly as with the real client), builds Telethon's own TL
objects (`auth.SentCode`, `User`, `Channel`, `contacts.ImportedContacts`…) and converts them with
the real client's converters, and delivers updates as Telethon's own TL updates
(`UpdateNewMessage`, `UpdateEditChannelMessage`, `UpdateDeleteMessages`,
`UpdateReadHistoryOutbox`…) turned into Telethon's own event objects by Telethon's event builders,
the way `TelegramClient._dispatch_update` does (`build`, `original_update`, `_entities`,
`_set_client` on a never-connected `TelegramClient`, `resolve`, `filter`), so `parsing` consumes
real Telethon objects. Sessions are real Telethon `StringSession` strings.

What it simulates:

* accounts (`add_account`) and other users (`add_user`), groups, supergroups and channels
  (`add_chat`, with admins and their rights);
* login codes: `configure_codes(type, next_type, timeout=…)`, `last_code(phone)`, expiry after
  `code_ttl` seconds of the fake clock (`advance(seconds)`), wrong/empty/expired codes, numbers
  with no account, 2FA passwords (with hint), `resend_code` switching to the next type. As in
  Telegram, the login state lives with the session (auth key): a code only signs in the session
  that asked for it, and a client restored from that session string can continue the login
  (enter the code, then the 2FA password);
* QR login: tokens that expire after `qr_ttl` seconds, `accept_qr(url_or_token, phone)` as a
  logged-in app scanning it, then 2FA when the account has a password. Unlike real Telegram, a
  scan before `wait()` started is not lost;
* faults: `set_flood_wait(seconds, method)`, `fail_next(method, telethon_error)`, `ban(phone)`,
  `deactivate(phone)`, `revoke_session(...)`, `set_unreachable(True)` (network down), and the
  rule "a session used by two connected clients at once": the older client gets
  `AuthKeyDuplicatedError` on its next call;
* messages: `deliver_message` (private, group, supergroup, channel; replies, media), `edit`
  (or a reaction-like change without an edit), `delete`, `read_outbox`, `redeliver` (the same
  updates once more); `sent` logs what the
  accounts sent, `read_marks` what they marked read, `imported_contacts` the contact imports
  `resolve` made for phone numbers. Like Telegram, private chats and basic groups number
  messages per account, supergroups and channels per chat;
* the update sequence: like Telegram, every update of an account is numbered and kept, whether
  or not a client is connected. A client is `UpdateStateful`: `update_state()` is the number of
  the last update its handler finished, and a client created with `update_state=` delivers every
  update after it on `connect()` (updates.getDifference), in order, before new ones. Without one
  it starts at the latest update (updates.getState), so what happened while no client was
  connected is not delivered to it. `connections(session)` and `duplicated_sessions` show the
  "two clients on one session" rule.

Method names for `fail_next`/`set_flood_wait`: see `METHODS`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import os
import re
import secrets
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from telethon import TelegramClient, utils  # type: ignore[import-untyped, unused-ignore]
from telethon import errors as tl_errors  # type: ignore[import-untyped, unused-ignore]
from telethon.crypto import AuthKey  # type: ignore[import-untyped, unused-ignore]
from telethon.events.common import EventCommon  # type: ignore[import-untyped, unused-ignore]
from telethon.sessions import StringSession  # type: ignore[import-untyped, unused-ignore]
from telethon.tl import types  # type: ignore[import-untyped, unused-ignore]

from chatgate.domain.errors import AuthRevoked, InvalidInput
from chatgate.domain.messages import ConversationKind
from chatgate.providers.telegram_user.client import (
    AccountInfo,
    AccountUpdateHandler,
    Dialog,
    PeerRef,
    Recipient,
    SentCode,
    SentMessage,
    classify_recipient,
)
from chatgate.providers.telegram_user.errors import PasswordNeeded, QrLoginTimeout, translate_errors
from chatgate.providers.telegram_user.parsing import account_update
from chatgate.providers.telegram_user.sessions import DcAddress, dump_session, load_session, session_auth_key
from chatgate.providers.telegram_user.telethon_client import (
    account_from_tl,
    auth_phone,
    dialog_from_entity,
    event_builders,
    imported_user,
    peer_from_entity,
    sent_code_from_tl,
)

METHODS = frozenset(
    {
        "is_authorized",
        "send_code",
        "resend_code",
        "sign_in_code",
        "sign_in_password",
        "qr_login",
        "qr_wait",
        "get_me",
        "log_out",
        "send_message",
        "mark_read",
        "resolve",
        "dialogs",
    }
)

FAKE_DC = DcAddress(2, "127.0.0.2", 443)

_SENT_CODE_TYPES: dict[str, Any] = {
    "app": lambda n: types.auth.SentCodeTypeApp(length=n),
    "sms": lambda n: types.auth.SentCodeTypeSms(length=n),
    "call": lambda n: types.auth.SentCodeTypeCall(length=n),
    "flash_call": lambda n: types.auth.SentCodeTypeFlashCall(pattern="+1555*" + "*" * n),
    "missed_call": lambda n: types.auth.SentCodeTypeMissedCall(prefix="+1555", length=n),
    "email": lambda n: types.auth.SentCodeTypeEmailCode(email_pattern="o***@example.com", length=n),
    "fragment": lambda n: types.auth.SentCodeTypeFragmentSms(url="https://fragment.com/numbers", length=n),
}
_NEXT_CODE_TYPES: dict[str, Any] = {
    "sms": types.auth.CodeTypeSms,
    "call": types.auth.CodeTypeCall,
    "flash_call": types.auth.CodeTypeFlashCall,
    "missed_call": types.auth.CodeTypeMissedCall,
    "fragment": types.auth.CodeTypeFragmentSms,
}
_REVOCATIONS = {
    "session_revoked": "SessionRevokedError",
    "auth_key_unregistered": "AuthKeyUnregisteredError",
    "session_expired": "SessionExpiredError",
}
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")
_CHANNEL_MARK = 1_000_000_000_000
_ids = iter(range(7_000_000_001, 8_000_000_000))
_chat_ids = iter(range(4_000_000_001, 5_000_000_000))
_code_serials = itertools.count(1)

ChatKind = Literal["group", "supergroup", "channel"]


@dataclass(eq=False)
class FakeUser:
    """A Telegram user; with a phone it is an account that can log in."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    phone: str | None = None  # "+digits"
    password: str | None = None
    password_hint: str | None = None
    bot: bool = False
    findable_by_phone: bool = True
    banned: bool = False
    deactivated: bool = False
    access_hash: int = field(default_factory=lambda: secrets.randbits(62))

    def tl(self, *, is_self: bool = False, contact: bool = False) -> Any:
        """The TL `User` as the viewer sees it (the phone only for itself and contacts)."""
        return types.User(
            id=self.id,
            is_self=is_self or None,
            contact=contact or None,
            bot=self.bot or None,
            access_hash=self.access_hash,
            first_name=self.first_name,
            last_name=self.last_name,
            username=self.username,
            phone=self.phone.removeprefix("+") if self.phone and (is_self or contact) else None,
        )


@dataclass(eq=False)
class FakeChat:
    """A basic group ("group"), supergroup or broadcast channel."""

    id: int  # the bare id; `marked_id` is what chatgate uses
    kind: ChatKind
    title: str
    username: str | None = None
    creator_id: int | None = None
    admins: dict[int, tuple[str, ...]] = field(default_factory=dict)  # user id → granted rights
    members: set[int] = field(default_factory=set)
    send_forbidden: bool = False  # default rights: members may not write
    access_hash: int = field(default_factory=lambda: secrets.randbits(62))
    next_message_id: int = 1  # supergroups and channels number their own messages

    @property
    def marked_id(self) -> int:
        return -self.id if self.kind == "group" else -(_CHANNEL_MARK + self.id)

    @property
    def numbers_own_messages(self) -> bool:
        return self.kind != "group"

    def peer(self) -> Any:
        return types.PeerChat(self.id) if self.kind == "group" else types.PeerChannel(self.id)

    def tl(self, viewer_id: int) -> Any:
        """The TL `Chat` / `Channel` with the viewer's own rights in it."""
        granted = self.admins.get(viewer_id)
        rights = types.ChatAdminRights(**dict.fromkeys(granted, True)) if granted is not None else None
        banned = types.ChatBannedRights(until_date=None, send_messages=True) if self.send_forbidden else None
        creator = viewer_id == self.creator_id or None
        date = datetime(2024, 1, 1, tzinfo=UTC)
        if self.kind == "group":
            return types.Chat(
                id=self.id,
                title=self.title,
                photo=types.ChatPhotoEmpty(),
                participants_count=len(self.members),
                date=date,
                version=1,
                creator=creator,
                admin_rights=rights,
                default_banned_rights=banned,
            )
        return types.Channel(
            id=self.id,
            title=self.title,
            photo=types.ChatPhotoEmpty(),
            date=date,
            creator=creator,
            broadcast=self.kind == "channel" or None,
            megagroup=self.kind == "supergroup" or None,
            access_hash=self.access_hash,
            username=self.username,
            admin_rights=rights,
            default_banned_rights=banned,
            participants_count=len(self.members),
        )


@dataclass(frozen=True)
class FakeDelivery:
    chat_id: int  # marked
    message_id: int


@dataclass(frozen=True)
class SentRecord:
    """A message an account sent through a `FakeAccountClient`."""

    from_phone: str | None
    chat_id: int
    message_id: int
    text: str
    reply_to: int | None
    file_name: str | None
    mime_type: str | None
    size: int | None
    date: datetime


@dataclass(frozen=True)
class ReadMark:
    phone: str | None
    chat_id: int
    max_id: int


@dataclass
class _Box:
    """One account's view: its messages, contacts, known peers and read state."""

    next_id: int = 1  # private chats and basic groups: numbered per account
    messages: dict[tuple[int, int], Any] = field(default_factory=dict)  # (chat, id) → TL Message
    last_activity: dict[int, datetime] = field(default_factory=dict)  # chat → last message date
    contacts: set[int] = field(default_factory=set)
    known: set[int] = field(default_factory=set)  # marked ids the account may address
    read_inbox: dict[int, int] = field(default_factory=dict)
    # Every update of the account, numbered (its "pts"), kept like Telegram keeps them for
    # updates.getDifference: a client that connects with an update state gets what it missed.
    updates: list[tuple[int, Any]] = field(default_factory=list)


@dataclass(eq=False)
class _Auth:
    key: bytes
    user_id: int | None = None
    pending_user_id: int | None = None  # logged in up to the 2FA password
    revoked: str | None = None  # the Telethon error class name its calls now raise
    clients: list[FakeAccountClient] = field(default_factory=list)  # connected, oldest first


@dataclass
class _Code:
    key: bytes  # the session (auth key) that asked for it: only it can sign in with it
    phone: str
    code: str
    type: str
    next_type: str | None
    issued_at: datetime
    serial: int = field(default_factory=lambda: next(_code_serials))  # newest last, within a second


@dataclass(eq=False)
class _Qr:
    token: bytes
    auth: _Auth
    expires: datetime
    accepted_by: int | None = None
    scanned: asyncio.Event = field(default_factory=asyncio.Event)


def _qr_url(token: bytes) -> str:
    return "tg://login?token=" + base64.urlsafe_b64encode(token).decode("ascii").rstrip("=")


class FakeTelegram:
    """The in-process "Telegram" a `FakeAccountClient` talks to (see the module docstring)."""

    def __init__(self, *, dc: DcAddress = FAKE_DC, code_ttl: float = 300, qr_ttl: float = 30) -> None:
        self.dc = dc
        self.code_ttl = code_ttl
        self.qr_ttl = qr_ttl
        self.sent: list[SentRecord] = []
        self.read_marks: list[ReadMark] = []
        self.imported_contacts: list[tuple[str | None, str]] = []  # (account phone, imported phone)
        self.unreachable = False
        self._users: dict[int, FakeUser] = {}
        self._chats: dict[int, FakeChat] = {}  # marked id → chat
        self._boxes: dict[int, _Box] = {}
        self._auths: dict[bytes, _Auth] = {}
        self._codes: dict[str, _Code] = {}  # phone_code_hash → code
        self._qrs: dict[bytes, _Qr] = {}
        self._faults: dict[str, deque[BaseException]] = {}
        self._duplicates = 0
        self._offset = timedelta()
        self._pts = 0
        self._code_type = "app"
        self._next_code_type: str | None = "sms"
        self._code_timeout: int | None = 60
        self._code_length = 5

    # the world -------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The fake clock (whole seconds, like Telegram's dates)."""
        return (datetime.now(UTC) + self._offset).replace(microsecond=0)

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)

    def add_user(
        self,
        first_name: str,
        last_name: str | None = None,
        *,
        username: str | None = None,
        phone: str | None = None,
        password: str | None = None,
        password_hint: str | None = None,
        bot: bool = False,
        findable_by_phone: bool = True,
    ) -> FakeUser:
        if phone is not None:
            phone = "+" + auth_phone(phone)
            if self.user_by_phone(phone) is not None:
                raise ValueError(f"{phone} already has a user")
        user = FakeUser(
            next(_ids),
            first_name,
            last_name,
            username,
            phone,
            password,
            password_hint,
            bot,
            findable_by_phone,
        )
        self._users[user.id] = user
        return user

    def add_account(
        self,
        phone: str,
        first_name: str = "Ada",
        last_name: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        password_hint: str | None = None,
    ) -> FakeUser:
        """A user with a phone number, who can log in (2FA when `password` is set)."""
        return self.add_user(
            first_name,
            last_name,
            username=username,
            phone=phone,
            password=password,
            password_hint=password_hint,
        )

    def add_chat(
        self,
        kind: ChatKind,
        title: str,
        *,
        username: str | None = None,
        members: Iterable[FakeUser] = (),
        admins: Mapping[FakeUser, Sequence[str]] | None = None,
        creator: FakeUser | None = None,
        send_forbidden: bool = False,
    ) -> FakeChat:
        """A group, supergroup or channel; `admins` maps users to admin rights such as
        "post_messages", "delete_messages" (see TL `ChatAdminRights`)."""
        chat = FakeChat(next(_chat_ids), kind, title, username, send_forbidden=send_forbidden)
        chat.members = {u.id for u in members}
        for user, rights in (admins or {}).items():
            chat.admins[user.id] = tuple(rights)
            chat.members.add(user.id)
        if creator is not None:
            chat.creator_id = creator.id
            chat.members.add(creator.id)
            chat.admins.setdefault(creator.id, ("change_info", "delete_messages", "post_messages"))
        self._chats[chat.marked_id] = chat
        return chat

    def user_by_phone(self, phone: str) -> FakeUser | None:
        digits = auth_phone(phone)
        return next((u for u in self._users.values() if u.phone == "+" + digits), None)

    def _account(self, phone: str) -> FakeUser:
        user = self.user_by_phone(phone)
        if user is None:
            raise ValueError(f"no fake account has the phone {phone}")
        return user

    def _box(self, user: FakeUser) -> _Box:
        return self._boxes.setdefault(user.id, _Box())

    def messages(self, phone: str, chat_id: int) -> list[Any]:
        """The TL messages of one chat as the account sees them, oldest first."""
        box = self._box(self._account(phone))
        return [m for (chat, _), m in sorted(box.messages.items()) if chat == chat_id]

    # controls --------------------------------------------------------------------------------

    def configure_codes(
        self, type: str = "app", next_type: str | None = "sms", *, timeout: int | None = 60, length: int = 5
    ) -> None:
        """How the next login codes are sent, and how `resend_code` would send them."""
        if type not in _SENT_CODE_TYPES or (next_type is not None and next_type not in _NEXT_CODE_TYPES):
            raise ValueError(f"unknown code type {type!r} / {next_type!r}")
        self._code_type, self._next_code_type = type, next_type
        self._code_timeout, self._code_length = timeout, length

    def last_code(self, phone: str) -> str:
        digits = "+" + auth_phone(phone)
        codes = [c for c in self._codes.values() if c.phone == digits]
        if not codes:
            raise LookupError(f"no login code was sent to {phone}")
        return max(codes, key=lambda c: (c.issued_at, c.serial)).code

    def fail_next(self, method: str, error: BaseException, *, times: int = 1) -> None:
        """The next `times` calls of `method` raise `error` (a Telethon error, usually)."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; one of {sorted(METHODS)}")
        self._faults.setdefault(method, deque()).extend([error] * times)

    def set_flood_wait(self, seconds: int, method: str = "send_code", *, times: int = 1) -> None:
        self.fail_next(method, tl_errors.FloodWaitError(request=None, capture=seconds), times=times)

    def set_unreachable(self, unreachable: bool = True) -> None:
        """Network down: connecting fails with a connection error."""
        self.unreachable = unreachable

    def ban(self, phone: str) -> None:
        self._account(phone).banned = True

    def deactivate(self, phone: str) -> None:
        self._account(phone).deactivated = True

    def revoke_session(
        self, session_string: str | None = None, *, phone: str | None = None, reason: str = "session_revoked"
    ) -> int:
        """End one session (by its string) or all of an account's; their calls then raise
        `reason`: "session_revoked", "auth_key_unregistered" or "session_expired". Returns how many."""
        error = _REVOCATIONS[reason]
        targets: list[_Auth] = []
        if session_string:
            key = session_auth_key(load_session(session_string))
            if key in self._auths:
                targets.append(self._auths[key])
        if phone is not None:
            user_id = self._account(phone).id
            targets.extend(a for a in self._auths.values() if user_id in (a.user_id, a.pending_user_id))
        for auth in targets:
            auth.revoked = error
        return len(targets)

    def accept_qr(self, url_or_token: str | bytes, phone: str) -> None:
        """A logged-in Telegram app of `phone` scans the QR code (raises Telethon's
        AuthTokenInvalidError / AuthTokenExpiredError like auth.acceptLoginToken)."""
        if isinstance(url_or_token, bytes):
            token = url_or_token
        else:
            encoded = url_or_token.split("token=", 1)[-1]
            token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        qr = self._qrs.get(token)
        if qr is None:
            raise tl_errors.AuthTokenInvalidError(request=None)
        if self.now() >= qr.expires:
            raise tl_errors.AuthTokenExpiredError(request=None)
        qr.accepted_by = self._account(phone).id
        qr.scanned.set()

    # updates to accounts ---------------------------------------------------------------------

    async def deliver_message(
        self,
        to_phone: str,
        from_user: FakeUser | None,
        text: str = "",
        *,
        chat_kind: Literal["private", "group", "supergroup", "channel"] = "private",
        chat: FakeChat | None = None,
        reply_to: int | None = None,
        media: Any = None,
        forward_from: FakeUser | None = None,
    ) -> FakeDelivery:
        """`from_user` writes to the account `to_phone`: privately, or in `chat` (created when
        `chat_kind` names a group kind and no chat is given). `media`: a TL MessageMedia, e.g.
        from `photo_media()` / `document_media()`. A channel post has no `from_user`."""
        account = self._account(to_phone)
        if chat is None and chat_kind != "private":
            members = [account] + ([from_user] if from_user is not None else [])
            chat = self.add_chat(chat_kind, f"{chat_kind.title()} chat", members=members)
        if chat is not None:
            chat.members.add(account.id)
            if from_user is not None and chat.kind != "channel":
                chat.members.add(from_user.id)
            peer = chat.peer()
        elif from_user is not None:
            peer = types.PeerUser(from_user.id)
        else:
            raise ValueError("a private message needs a sender")
        box = self._box(account)
        post = chat is not None and chat.kind == "channel"
        from_id = None if chat is None or post or from_user is None else types.PeerUser(from_user.id)
        fwd = None
        if forward_from is not None:
            fwd = types.MessageFwdHeader(date=self.now(), from_id=types.PeerUser(forward_from.id))
        message = types.Message(
            id=self._next_id(account, chat),
            peer_id=peer,
            date=self.now(),
            message=text,
            out=False,
            post=post or None,
            from_id=from_id,
            fwd_from=fwd,
            reply_to=types.MessageReplyHeader(reply_to_msg_id=reply_to) if reply_to is not None else None,
            media=media,
        )
        chat_id = int(utils.get_peer_id(message.peer_id))
        box.messages[(chat_id, message.id)] = message
        box.last_activity[chat_id] = message.date
        box.known.add(chat_id)
        update_cls = (
            types.UpdateNewChannelMessage
            if chat is not None and chat.numbers_own_messages
            else types.UpdateNewMessage
        )
        update = update_cls(message=message, pts=self._next_pts(), pts_count=1)
        await self._emit(account, update, self._entities(account, chat, from_user, forward_from))
        return FakeDelivery(chat_id, message.id)

    async def edit(self, to_phone: str, chat_id: int, message_id: int, text: str | None) -> None:
        """The message changes in the account's view: a new text (an edit, with edit_date), or
        with `text=None` a change that is no edit (a reaction: same text, same edit_date)."""
        account = self._account(to_phone)
        box = self._box(account)
        stored = box.messages.get((chat_id, message_id))
        if stored is None:
            raise ValueError(f"{to_phone} has no message {chat_id}:{message_id}")
        message = copy.copy(stored)
        if text is not None:
            message.message = text
            message.edit_date = self.now()
        box.messages[(chat_id, message_id)] = message
        chat = self._chats.get(chat_id)
        update_cls = (
            types.UpdateEditChannelMessage
            if chat is not None and chat.numbers_own_messages
            else types.UpdateEditMessage
        )
        update = update_cls(message=message, pts=self._next_pts(), pts_count=1)
        sender = self._users.get(message.sender_id) if message.sender_id else None
        await self._emit(account, update, self._entities(account, chat, sender))

    async def delete(self, to_phone: str, chat_id: int, message_ids: Sequence[int]) -> None:
        """Messages disappear from the account's chat; as in Telegram, only a supergroup or
        channel deletion says in which chat."""
        account = self._account(to_phone)
        box = self._box(account)
        for message_id in message_ids:
            box.messages.pop((chat_id, message_id), None)
        chat = self._chats.get(chat_id)
        ids = list(message_ids)
        if chat is not None and chat.numbers_own_messages:
            update = types.UpdateDeleteChannelMessages(
                channel_id=chat.id, messages=ids, pts=self._next_pts(), pts_count=len(ids)
            )
        else:
            update = types.UpdateDeleteMessages(messages=ids, pts=self._next_pts(), pts_count=len(ids))
        await self._emit(account, update, self._entities(account, chat, None))

    async def read_outbox(self, phone: str, chat_id: int, max_id: int) -> None:
        """The other side read the account's messages in `chat_id` up to `max_id`."""
        account = self._account(phone)
        chat = self._chats.get(chat_id)
        if chat is not None and chat.numbers_own_messages:
            update = types.UpdateReadChannelOutbox(channel_id=chat.id, max_id=max_id)
            entities = self._entities(account, chat, None)
        else:
            peer = chat.peer() if chat is not None else types.PeerUser(chat_id)
            update = types.UpdateReadHistoryOutbox(
                peer=peer, max_id=max_id, pts=self._next_pts(), pts_count=1
            )
            entities = self._entities(account, chat, self._users.get(chat_id))
        await self._emit(account, update, entities)

    def _next_pts(self) -> int:
        self._pts += 1
        return self._pts

    def _next_id(self, account: FakeUser, chat: FakeChat | None) -> int:
        if chat is not None and chat.numbers_own_messages:
            chat.next_message_id += 1
            return chat.next_message_id - 1
        box = self._box(account)
        box.next_id += 1
        return box.next_id - 1

    def _entities(self, account: FakeUser, chat: FakeChat | None, *users: FakeUser | None) -> list[Any]:
        box = self._box(account)
        found = [account.tl(is_self=True)]
        found += [u.tl(contact=u.id in box.contacts) for u in users if u is not None and u.id != account.id]
        if chat is not None:
            found.append(chat.tl(account.id))
        return found

    async def _emit(self, account: FakeUser, update: Any, entities: list[Any]) -> None:
        """What Telethon does with an incoming update: `_entities` from the users and chats
        that came with it, then every connected client of the account dispatches it. The update
        is also kept in the account's sequence, for clients that connect later (getDifference)."""
        update._entities = {utils.get_peer_id(e): e for e in entities}
        box = self._box(account)
        number = len(box.updates) + 1
        box.updates.append((number, update))
        for auth in list(self._auths.values()):
            if auth.user_id != account.id or auth.revoked:
                continue
            for client in list(auth.clients):
                await client._receive(update, account, number)

    async def redeliver(self, phone: str, count: int = 1) -> None:
        """Telegram sends the account's last `count` updates again (as it may after a gap, or
        when a getDifference overlaps live updates): same updates, same dedupe keys."""
        account = self._account(phone)
        for _, update in self._box(account).updates[-count:]:
            await self._emit(account, update, list(update._entities.values()))

    def missed_updates(self, account: FakeUser, after: int) -> list[tuple[int, Any]]:
        """The account's updates numbered after `after` (what updates.getDifference returns)."""
        return [(n, u) for n, u in self._box(account).updates if n > after]

    def update_head(self, account: FakeUser) -> int:
        """The number of the account's latest update (what updates.getState returns)."""
        return len(self._box(account).updates)

    def connections(self, session_string: str) -> int:
        """How many clients are connected on this session right now (more than one: the older
        ones get AuthKeyDuplicatedError on their next call)."""
        key = session_auth_key(load_session(session_string))
        auth = self._auths.get(key) if key is not None else None
        return 0 if auth is None else len(auth.clients)

    @property
    def duplicated_sessions(self) -> int:
        """How many times the "two clients on one session" rule fired (AuthKeyDuplicated)."""
        return self._duplicates

    # the server side of the client's calls (raising Telethon's errors) -----------------------

    def _inject(self, method: str) -> None:
        queued = self._faults.get(method)
        if queued:
            raise queued.popleft()

    def _check_auth(self, auth: _Auth) -> FakeUser:
        if auth.revoked:
            raise getattr(tl_errors, auth.revoked)(request=None)
        if auth.user_id is None:
            if auth.pending_user_id is not None:
                raise tl_errors.SessionPasswordNeededError(request=None)
            raise tl_errors.AuthKeyUnregisteredError(request=None)
        user = self._users[auth.user_id]
        if user.banned:
            raise tl_errors.UserDeactivatedBanError(request=None)
        if user.deactivated:
            raise tl_errors.UserDeactivatedError(request=None)
        return user

    def _valid_phone(self, digits: str) -> str:
        if not digits.isdigit() or not 7 <= len(digits) <= 15 or digits.startswith("0"):
            raise tl_errors.PhoneNumberInvalidError(request=None)
        return "+" + digits

    def _sent_code(self, phone_code_hash: str, code: _Code) -> Any:
        return types.auth.SentCode(
            type=_SENT_CODE_TYPES[code.type](self._code_length),
            phone_code_hash=phone_code_hash,
            next_type=_NEXT_CODE_TYPES[code.next_type]() if code.next_type else None,
            timeout=self._code_timeout,
        )

    def _send_code(self, auth: _Auth, digits: str) -> Any:
        phone = self._valid_phone(digits)
        user = self.user_by_phone(phone)
        if user is not None and user.banned:
            raise tl_errors.PhoneNumberBannedError(request=None)
        code = _Code(auth.key, phone, self._new_code(), self._code_type, self._next_code_type, self.now())
        phone_code_hash = secrets.token_hex(9)
        self._codes[phone_code_hash] = code
        return self._sent_code(phone_code_hash, code)

    def _new_code(self) -> str:
        return "".join(secrets.choice("0123456789") for _ in range(self._code_length))

    def _resend_code(self, digits: str, phone_code_hash: str) -> Any:
        code = self._codes.get(phone_code_hash)
        if code is None or code.phone != self._valid_phone(digits):
            raise tl_errors.PhoneCodeExpiredError(request=None)
        if code.next_type is None:
            raise tl_errors.SendCodeUnavailableError(request=None)
        code.type, code.next_type = code.next_type, None
        code.code, code.issued_at, code.serial = self._new_code(), self.now(), next(_code_serials)
        return self._sent_code(phone_code_hash, code)

    def _sign_in(self, auth: _Auth, digits: str, code: str, phone_code_hash: str) -> Any:
        phone = self._valid_phone(digits)
        if not code:
            raise tl_errors.PhoneCodeEmptyError(request=None)
        if not phone_code_hash:
            raise tl_errors.PhoneCodeHashEmptyError(request=None)
        issued = self._codes.get(phone_code_hash)
        if issued is None or issued.phone != phone or issued.key != auth.key:
            raise tl_errors.PhoneCodeExpiredError(request=None)
        if (self.now() - issued.issued_at).total_seconds() > self.code_ttl:
            del self._codes[phone_code_hash]
            raise tl_errors.PhoneCodeExpiredError(request=None)
        if code != issued.code:
            raise tl_errors.PhoneCodeInvalidError(request=None)
        user = self.user_by_phone(phone)
        if user is None:
            raise tl_errors.PhoneNumberUnoccupiedError(request=None)
        if user.banned:
            raise tl_errors.PhoneNumberBannedError(request=None)
        del self._codes[phone_code_hash]
        return self._logged_in(auth, user)

    def _logged_in(self, auth: _Auth, user: FakeUser) -> Any:
        if user.password:
            auth.pending_user_id = user.id
            raise tl_errors.SessionPasswordNeededError(request=None)
        auth.user_id, auth.pending_user_id = user.id, None
        return user.tl(is_self=True)

    def _check_password(self, auth: _Auth, password: str) -> Any:
        # The pending 2FA state belongs to the session (auth key), not to a client object:
        # a client restored from the session string can finish the login.
        user = self._users.get(auth.pending_user_id or 0)
        if user is None or password != user.password:  # no login waiting: Telegram refuses it too
            raise tl_errors.PasswordHashInvalidError(request=None)
        auth.user_id, auth.pending_user_id = user.id, None
        return user.tl(is_self=True)

    def _export_qr(self, auth: _Auth) -> _Qr:
        for token in [t for t, q in self._qrs.items() if q.auth is auth]:
            del self._qrs[token]  # a new token replaces the previous one
        qr = _Qr(secrets.token_bytes(32), auth, self.now() + timedelta(seconds=self.qr_ttl))
        self._qrs[qr.token] = qr
        return qr

    def _finish_qr(self, qr: _Qr) -> Any:
        self._qrs.pop(qr.token, None)
        return self._logged_in(qr.auth, self._users[qr.accepted_by or 0])


class FakeQrLogin:
    """`QrLogin` against `FakeTelegram`."""

    def __init__(self, client: FakeAccountClient, qr: _Qr) -> None:
        self._client = client
        self._qr = qr

    @property
    def url(self) -> str:
        return _qr_url(self._qr.token)

    @property
    def token(self) -> bytes:
        return self._qr.token

    @property
    def expires_at(self) -> datetime:
        return self._qr.expires

    async def recreate(self) -> None:
        with self._client._rpc("qr_login", needs_auth=False) as auth:
            self._qr = self._client._fake._export_qr(auth)

    async def wait(self, timeout: float | None = None) -> AccountInfo:  # noqa: ASYNC109 (as Telethon's)
        fake = self._client._fake
        if timeout is None:
            timeout = (self._qr.expires - fake.now()).total_seconds()
        try:
            with self._client._rpc("qr_wait", needs_auth=False):
                try:
                    await asyncio.wait_for(self._qr.scanned.wait(), timeout=max(timeout, 0))
                except TimeoutError as exc:
                    raise QrLoginTimeout(
                        "nobody scanned the QR code in time; after it expires, recreate it",
                        details={"expires_at": self.expires_at.isoformat()},
                    ) from exc
                user = fake._finish_qr(self._qr)
        except PasswordNeeded:
            raise self._client._password_needed() from None
        return account_from_tl(user)


class FakeAccountClient:
    """`AccountClient` against a `FakeTelegram` (see the module docstring)."""

    def __init__(
        self,
        fake: FakeTelegram,
        session_string: str | None = None,
        *,
        update_state: Mapping[str, Any] | None = None,
    ) -> None:
        self._fake = fake
        self._session_string = session_string
        resume = update_state.get("pts") if update_state is not None else None
        self._resume_from: int | None = resume if isinstance(resume, int) else None
        self._seen: int | None = None  # the number of the last update handled (our "pts")
        self._catching_up = False
        self._auth: _Auth | None = None
        self._dc: DcAddress | None = None
        self._connected = False
        self._duplicated = False
        self._logged_out = False
        self._handler: AccountUpdateHandler | None = None
        self._builders = event_builders()
        self._telethon: Any = None

    # plumbing --------------------------------------------------------------------------------

    @contextmanager
    def _rpc(self, method: str, *, needs_auth: bool = True, messaging: bool = False) -> Iterator[_Auth]:
        """One call to the fake server: Telethon errors raised in it leave as ours."""
        with translate_errors(messaging=messaging):
            if not self._connected or self._auth is None:
                raise ConnectionError("Cannot send requests while disconnected")  # Telethon's words
            if self._duplicated:
                self._drop()
                raise tl_errors.AuthKeyDuplicatedError(request=None)
            if needs_auth:
                self._fake._check_auth(self._auth)
            self._fake._inject(method)
            yield self._auth

    def _drop(self) -> None:
        if self._auth is not None and self in self._auth.clients:
            self._auth.clients.remove(self)
        self._connected = False

    def _me(self, auth: _Auth) -> FakeUser:
        return self._fake._check_auth(auth)

    async def _receive(self, update: Any, account: FakeUser, number: int, *, replay: bool = False) -> None:
        """Telethon's `_dispatch_update` for one update, then our handler."""
        if self._handler is None or self._duplicated or not self._connected:
            return
        if self._catching_up and not replay:
            return  # kept in the account's sequence: the catch-up loop delivers it in order
        await self._dispatch(update, account)
        self._seen = max(self._seen or 0, number)

    async def _dispatch(self, update: Any, account: FakeUser) -> None:
        handler = self._handler
        if handler is None:
            return
        if self._telethon is None:  # never connected: only a `client` for the event objects
            self._telethon = TelegramClient(StringSession(), 1, "fake-api-hash", receive_updates=False)
        self._telethon._mb_entity_cache.set_self_user(account.id, False, account.access_hash)
        for builder in self._builders:
            event = type(builder).build(update, None, account.id)
            if not event:
                continue
            if isinstance(event, EventCommon):
                event.original_update = update
                event._entities = update._entities
                event._set_client(self._telethon)
            await builder.resolve(self._telethon)
            if not builder.filter(event):
                continue
            handled = account_update(event)
            if handled is not None:
                await handler(*handled)

    def _password_needed(self) -> PasswordNeeded:
        auth = self._auth
        user = self._fake._users.get(auth.pending_user_id or 0) if auth is not None else None
        return PasswordNeeded(hint=user.password_hint if user is not None else None)

    # connection ------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._connected:
            return
        with translate_errors():
            if self._fake.unreachable:
                raise ConnectionError("Connection to Telegram failed 5 time(s)")
        session = load_session(self._session_string, default_dc=self._fake.dc)
        key = session_auth_key(session) or os.urandom(256)  # a new session: the handshake makes a key
        self._dc = DcAddress(int(session.dc_id), str(session.server_address), int(session.port))
        auth = self._fake._auths.setdefault(key, _Auth(key))
        for other in auth.clients:
            other._duplicated = True  # the older client's next call fails
            self._fake._duplicates += 1
        auth.clients.append(self)
        self._auth, self._connected, self._duplicated = auth, True, False
        account = self._fake._users.get(auth.user_id) if auth.user_id is not None else None
        if account is None or auth.revoked:
            return
        if self._resume_from is None:  # updates.getState: from now on
            self._seen = self._fake.update_head(account)
            return
        # updates.getDifference: what happened since the stored state, in order, before any
        # new update (those arriving meanwhile join the sequence and are picked up here too).
        self._seen = self._resume_from
        self._catching_up = True
        try:
            while self._connected and not auth.revoked:
                missed = self._fake.missed_updates(account, self._seen)
                if not missed:
                    break
                for number, update in missed:
                    await self._receive(update, account, number, replay=True)
        finally:
            self._catching_up = False

    def update_state(self) -> dict[str, Any] | None:
        """`UpdateStateful`: the number of the last update this client's handler finished."""
        return None if self._seen is None else {"pts": self._seen}

    async def disconnect(self) -> None:
        self._drop()

    async def is_authorized(self) -> bool:
        try:
            with self._rpc("is_authorized"):
                pass
        except (AuthRevoked, PasswordNeeded):
            return False
        return True

    # login -----------------------------------------------------------------------------------

    async def send_code(self, phone: str) -> SentCode:
        with self._rpc("send_code", needs_auth=False) as auth:
            return sent_code_from_tl(self._fake._send_code(auth, auth_phone(phone)))

    async def resend_code(self, phone: str, phone_code_hash: str) -> SentCode:
        with self._rpc("resend_code", needs_auth=False):
            return sent_code_from_tl(self._fake._resend_code(auth_phone(phone), phone_code_hash))

    async def sign_in_code(self, phone: str, code: str, phone_code_hash: str) -> AccountInfo:
        try:
            with self._rpc("sign_in_code", needs_auth=False) as auth:
                if auth.user_id is not None and not auth.revoked:  # Telethon: already signed in
                    return account_from_tl(self._me(auth).tl(is_self=True))
                user = self._fake._sign_in(auth, auth_phone(phone), code.strip(), phone_code_hash)
        except PasswordNeeded:
            raise self._password_needed() from None
        return account_from_tl(user)

    async def sign_in_password(self, password: str) -> AccountInfo:
        if not password:
            raise InvalidInput("the 2FA password is empty")
        with self._rpc("sign_in_password", needs_auth=False) as auth:
            user = self._fake._check_password(auth, password)
        return account_from_tl(user)

    async def qr_login(self) -> FakeQrLogin:
        with self._rpc("qr_login", needs_auth=False) as auth:
            qr = self._fake._export_qr(auth)
        return FakeQrLogin(self, qr)

    async def get_me(self) -> AccountInfo:
        with self._rpc("get_me") as auth:
            return account_from_tl(self._me(auth).tl(is_self=True))

    def session_string(self) -> str:
        if self._logged_out or self._auth is None or self._dc is None:
            return ""
        session = StringSession()
        session.set_dc(self._dc.id, self._dc.ip, self._dc.port)
        session.auth_key = AuthKey(self._auth.key)
        return dump_session(session)

    async def log_out(self) -> None:
        try:
            with self._rpc("log_out") as auth:
                auth.revoked = "AuthKeyUnregisteredError"
        except AuthRevoked:
            pass  # already logged out or revoked
        self._logged_out = True
        self._drop()

    # messaging -------------------------------------------------------------------------------

    def _entity(self, me: FakeUser, peer_id: int) -> Any:
        box = self._fake._box(me)
        chat = self._fake._chats.get(peer_id)
        if chat is not None and (me.id in chat.members or peer_id in box.known):
            return chat.tl(me.id)
        user = self._fake._users.get(peer_id)
        if user is not None and (peer_id in box.known or user.id in box.contacts or user.id == me.id):
            return user.tl(is_self=user.id == me.id, contact=user.id in box.contacts)
        raise tl_errors.PeerIdInvalidError(request=None)

    def _find(self, me: FakeUser, target: Recipient) -> Any:
        fake, box = self._fake, self._fake._box(me)
        if target.kind == "phone":
            digits = fake._valid_phone(auth_phone(target.value))
            user = fake.user_by_phone(digits)
            if user is not None and user.id in box.contacts:
                return user.tl(contact=True)
            fake.imported_contacts.append((me.phone, digits))
            users = []
            if user is not None and user.findable_by_phone:
                box.contacts.add(user.id)
                box.known.add(user.id)
                users.append(user.tl(contact=True))
            result = types.contacts.ImportedContacts(
                imported=[], popular_invites=[], retry_contacts=[], users=users
            )
            return imported_user(result, digits)
        if target.kind == "username":
            if not _USERNAME.fullmatch(target.value):
                raise tl_errors.UsernameInvalidError(request=None)
            wanted = target.value.lower()
            for user in fake._users.values():
                if user.username and user.username.lower() == wanted:
                    box.known.add(user.id)
                    return user.tl(contact=user.id in box.contacts)
            for chat in fake._chats.values():
                if chat.username and chat.username.lower() == wanted:
                    box.known.add(chat.marked_id)
                    return chat.tl(me.id)
            raise tl_errors.UsernameNotOccupiedError(request=None)
        return self._entity(me, int(target.value))

    def _peer(self, me: FakeUser, peer: int | str) -> Any:
        if isinstance(peer, int):
            return self._entity(me, peer)
        return self._find(me, classify_recipient(peer))

    async def resolve(self, recipient: str) -> PeerRef:
        target = classify_recipient(recipient)
        with self._rpc("resolve", messaging=True) as auth:
            return peer_from_entity(self._find(self._me(auth), target))

    async def send_message(
        self,
        peer: int | str,
        text: str,
        *,
        reply_to: int | None = None,
        file: bytes | None = None,
        file_name: str | None = None,
        mime_type: str | None = None,
    ) -> SentMessage:
        fake = self._fake
        with self._rpc("send_message", messaging=True) as auth:
            me = self._me(auth)
            entity = self._peer(me, peer)
            if not text and file is None:
                raise tl_errors.MessageEmptyError(request=None)
            if len(text) > (1024 if file is not None else 4096):
                raise tl_errors.MessageTooLongError(request=None)
            chat_id = int(utils.get_peer_id(entity))
            chat = fake._chats.get(chat_id)
            if chat is not None:
                _check_can_write(chat, me)
            media = None
            if file is not None:
                media = _upload_media(file, file_name, mime_type, fake.now())
            message = types.Message(
                id=fake._next_id(me, chat),
                peer_id=chat.peer() if chat is not None else types.PeerUser(chat_id),
                date=fake.now(),
                message=text,
                out=True,
                post=(chat is not None and chat.kind == "channel") or None,
                from_id=types.PeerUser(me.id) if chat is not None and chat.kind != "channel" else None,
                reply_to=types.MessageReplyHeader(reply_to_msg_id=reply_to) if reply_to is not None else None,
                media=media,
            )
            box = fake._box(me)
            box.messages[(chat_id, message.id)] = message
            box.last_activity[chat_id] = message.date
            box.known.add(chat_id)
            fake.sent.append(
                SentRecord(
                    me.phone,
                    chat_id,
                    message.id,
                    text,
                    reply_to,
                    file_name,
                    mime_type,
                    len(file) if file is not None else None,
                    message.date,
                )
            )
        # the account's clients see their own message as an update too, as with Telegram
        update_cls = (
            types.UpdateNewChannelMessage
            if chat is not None and chat.numbers_own_messages
            else types.UpdateNewMessage
        )
        update = update_cls(message=message, pts=fake._next_pts(), pts_count=1)
        recipient = fake._users.get(chat_id) if chat is None else None
        await fake._emit(me, update, fake._entities(me, chat, recipient))
        if recipient is not None and recipient.phone and recipient.id != me.id:
            await fake.deliver_message(recipient.phone, me, text, media=media)
        return SentMessage(chat_id, int(message.id), message.date)

    async def mark_read(self, peer: int | str, max_id: int) -> None:
        with self._rpc("mark_read", messaging=True) as auth:
            me = self._me(auth)
            chat_id = int(utils.get_peer_id(self._peer(me, peer)))
            box = self._fake._box(me)
            box.read_inbox[chat_id] = max(box.read_inbox.get(chat_id, 0), max_id)
            self._fake.read_marks.append(ReadMark(me.phone, chat_id, max_id))

    async def dialogs(self, limit: int | None = 100) -> list[Dialog]:
        with self._rpc("dialogs", messaging=True) as auth:
            me = self._me(auth)
            fake, box = self._fake, self._fake._box(me)
            oldest = datetime.min.replace(tzinfo=UTC)
            chats = dict.fromkeys(box.last_activity)
            chats.update(dict.fromkeys(c.marked_id for c in fake._chats.values() if me.id in c.members))
            ordered = sorted(chats, key=lambda c: box.last_activity.get(c, oldest), reverse=True)
            found = []
            for chat_id in ordered[:limit] if limit is not None else ordered:
                unread = sum(
                    1
                    for (chat, message_id), m in box.messages.items()
                    if chat == chat_id and not m.out and message_id > box.read_inbox.get(chat_id, 0)
                )
                found.append(dialog_from_entity(self._entity(me, chat_id), unread))
            return found

    async def admin_channels(self) -> list[Dialog]:
        found = await self.dialogs(limit=None)
        return [d for d in found if d.is_admin and d.kind != ConversationKind.PRIVATE]

    def on_event(self, handler: AccountUpdateHandler) -> None:
        self._handler = handler


def _check_can_write(chat: FakeChat, me: FakeUser) -> None:
    rights = chat.admins.get(me.id)
    if me.id not in chat.members:
        if chat.numbers_own_messages:
            raise tl_errors.ChannelPrivateError(request=None)
        raise tl_errors.ChatWriteForbiddenError(request=None)
    if (
        chat.kind == "channel"
        and (rights is None or "post_messages" not in rights)
        and chat.creator_id != me.id
    ):
        raise tl_errors.ChatAdminRequiredError(request=None)
    if chat.send_forbidden and rights is None:
        raise tl_errors.ChatWriteForbiddenError(request=None)


def _upload_media(file: bytes, file_name: str | None, mime_type: str | None, now: datetime) -> Any:
    if mime_type in ("image/jpeg", "image/png"):
        return photo_media(size=len(file), date=now)
    return document_media(file_name or "file", mime_type or "application/octet-stream", len(file), date=now)


# --- TL media for `deliver_message` --------------------------------------------------------


def photo_media(
    *, size: int = 54_321, width: int = 1280, height: int = 960, date: datetime | None = None
) -> Any:
    """A TL `MessageMediaPhoto` with a thumbnail and a full size."""
    photo = types.Photo(
        id=secrets.randbits(62),
        access_hash=secrets.randbits(62),
        file_reference=os.urandom(8),
        date=date or datetime.now(UTC),
        sizes=[
            types.PhotoSize(type="m", w=320, h=240, size=size // 10),
            types.PhotoSize(type="y", w=width, h=height, size=size),
        ],
        dc_id=2,
    )
    return types.MessageMediaPhoto(photo=photo)


def document_media(
    file_name: str | None,
    mime_type: str,
    size: int,
    *,
    voice: bool = False,
    audio: bool = False,
    video: bool = False,
    round_video: bool = False,
    sticker: str | None = None,
    duration: int = 3,
    date: datetime | None = None,
) -> Any:
    """A TL `MessageMediaDocument` (a file, voice note, audio, video, round video or sticker)."""
    attributes: list[Any] = []
    if file_name:
        attributes.append(types.DocumentAttributeFilename(file_name=file_name))
    if voice or audio:
        attributes.append(types.DocumentAttributeAudio(duration=duration, voice=voice or None))
    if video or round_video:
        attributes.append(
            types.DocumentAttributeVideo(duration=duration, w=640, h=640, round_message=round_video or None)
        )
    if sticker is not None:
        attributes.append(
            types.DocumentAttributeSticker(alt=sticker, stickerset=types.InputStickerSetEmpty())
        )
    document = types.Document(
        id=secrets.randbits(62),
        access_hash=secrets.randbits(62),
        file_reference=os.urandom(8),
        date=date or datetime.now(UTC),
        mime_type=mime_type,
        size=size,
        dc_id=2,
        attributes=attributes,
    )
    return types.MessageMediaDocument(document=document, voice=voice or None, round=round_video or None)


def geo_media(latitude: float, longitude: float) -> Any:
    return types.MessageMediaGeo(
        geo=types.GeoPoint(long=longitude, lat=latitude, access_hash=secrets.randbits(62))
    )


def contact_media(phone: str, first_name: str, last_name: str = "", user_id: int = 0) -> Any:
    return types.MessageMediaContact(
        phone_number=phone, first_name=first_name, last_name=last_name, vcard="", user_id=user_id
    )


def dice_media(value: int = 6, emoji: str = "🎲") -> Any:
    return types.MessageMediaDice(value=value, emoticon=emoji)
