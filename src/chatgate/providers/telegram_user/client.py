"""The interface between chatgate and one Telegram user account (MTProto).

The login state machine and the account runtime depend on `AccountClient` only; the real
implementation is `telethon_client.TelethonAccountClient`, the test double `fake.FakeAccountClient`.
Every method raises only chatgate errors (`chatgate.domain.errors` plus `errors.PasswordNeeded`
and `errors.QrLoginTimeout`); Telethon's exceptions never leave the implementations.

Ids follow the Bot API convention (Telethon's "marked" ids): a user is its positive id, a
basic group `-id`, a supergroup or channel `-100…id`. Those are the chat ids in `SentMessage`,
`PeerRef`, `Dialog` and in the provider message ids `"{chat_id}:{message_id}"`.

Login flows:

* code: `send_code(phone)` → `SentCode` → `sign_in_code(phone, code, hash)` → `AccountInfo`,
  or `PasswordNeeded` (2FA on) → `sign_in_password(password)` → `AccountInfo`.
  `resend_code` switches to `SentCode.next_type` (SMS, call…).
* QR: `qr_login()` → `QrLogin` (show `url` as a QR code) → `wait(timeout)` → `AccountInfo`, or
  `QrLoginTimeout` (not scanned yet; after `expires_at` call `recreate()` and show the new `url`),
  or `PasswordNeeded` → `sign_in_password`.

The login state lives with the session (its auth key) at Telegram, not in the client object:
store `session_string()` right after `connect()` of a new session, and a client re-created from
it can take the next step (the code only works on the session that requested it; after
`PasswordNeeded` any client on that session may send the password). The exception is the QR
`wait`, which listens on the live connection: keep that client connected while the code shows.

Updates: `on_event(handler)` registers one callback that gets, per Telegram update, the
`RawAccountUpdate` (a stable dedupe `key` and a JSON-able `payload` to store durably first) and
the provider-neutral events already parsed from it. `parsing.parse_payload(payload)` rebuilds the
same events from a stored payload alone, so the runtime may store first and parse later.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from chatgate.domain.errors import InvalidInput
from chatgate.domain.inbound import ProviderEvent
from chatgate.domain.messages import ConversationKind

# How Telegram delivered a login code: "app" (another logged-in Telegram app), "sms", "call",
# "flash_call", "missed_call", "email", "fragment", "firebase_sms", "sms_word", "sms_phrase",
# "email_setup_required"; an unknown future type becomes its snake_case TL name.
CodeType = str


@dataclass(frozen=True)
class SentCode:
    """Telegram sent a login code. Keep `phone_code_hash` for `sign_in_code`/`resend_code`.

    `next_type` is how `resend_code` would deliver it (None: no other way), `timeout` the seconds
    before resending is allowed (None: no limit given), `length` the code's digits when known.
    """

    phone_code_hash: str
    type: CodeType
    next_type: CodeType | None = None
    timeout: int | None = None
    length: int | None = None


@dataclass(frozen=True)
class AccountInfo:
    """The logged-in Telegram user."""

    user_id: int
    phone: str | None
    username: str | None
    first_name: str | None
    last_name: str | None


@dataclass(frozen=True)
class SentMessage:
    chat_id: int
    message_id: int
    date: datetime

    @property
    def provider_message_id(self) -> str:
        return f"{self.chat_id}:{self.message_id}"


@dataclass(frozen=True)
class PeerRef:
    """A user, group or channel the account can address (id is the marked chat id)."""

    id: int
    kind: ConversationKind
    title: str | None
    username: str | None


@dataclass(frozen=True)
class Dialog:
    """One of the account's chats. `admin_rights` names the granted admin rights (sorted, e.g.
    "post_messages", "delete_messages"); empty when not an admin. `can_post`: the account may
    send into it (in a broadcast channel only the creator and admins with post_messages)."""

    id: int
    kind: ConversationKind
    title: str | None
    username: str | None
    unread_count: int
    is_admin: bool
    can_post: bool
    admin_rights: tuple[str, ...] = ()


@dataclass(frozen=True)
class RawAccountUpdate:
    """One Telegram update as we store it before processing.

    `key` is stable across re-deliveries of the same update: `msg:{chat}:{id}`,
    `edit:{chat}:{id}:{edit_date}`, `del:{chat}:{ids}` (chat empty when Telegram does not say),
    `read:{chat}:{max_id}`. `payload` is JSON-able; `parsing.parse_payload` reads it.
    """

    key: str
    payload: dict[str, Any]


AccountUpdateHandler = Callable[[RawAccountUpdate, list[ProviderEvent]], Awaitable[None]]


class QrLogin(Protocol):
    """A pending QR login: show `url` as a QR code and `wait` while it is on screen."""

    @property
    def url(self) -> str:
        """`tg://login?token=…`, what the QR code must contain."""
        ...

    @property
    def expires_at(self) -> datetime:
        """When the current token expires (timezone-aware); `recreate` makes a new one."""
        ...

    async def recreate(self) -> None:
        """A fresh token (and `url`/`expires_at`), after the previous one expired."""
        ...

    async def wait(self, timeout: float | None = None) -> AccountInfo:  # noqa: ASYNC109 (as Telethon's)
        """Wait until a logged-in Telegram app scans the code (default: until it expires).

        Raises `QrLoginTimeout` when not scanned in time, `PasswordNeeded` when 2FA follows.
        """
        ...


class AccountClient(Protocol):
    """One Telegram user account. See the module docstring for the login flows."""

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def is_authorized(self) -> bool:
        """True when the session is logged in; False when not yet, logged out or revoked."""
        ...

    async def send_code(self, phone: str) -> SentCode: ...

    async def resend_code(self, phone: str, phone_code_hash: str) -> SentCode: ...

    async def sign_in_code(self, phone: str, code: str, phone_code_hash: str) -> AccountInfo:
        """Raises `PasswordNeeded` when the account has two-step verification on."""
        ...

    async def sign_in_password(self, password: str) -> AccountInfo:
        """The 2FA password after `PasswordNeeded` (from `sign_in_code` or `QrLogin.wait`)."""
        ...

    async def qr_login(self) -> QrLogin: ...

    async def get_me(self) -> AccountInfo: ...

    def session_string(self) -> str:
        """The session (data centre and auth key) to store, encrypted; "" when there is none."""
        ...

    async def log_out(self) -> None:
        """End this session at Telegram; the session string is useless afterwards."""
        ...

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
        """`peer`: a marked chat id, or a recipient string as for `resolve`. With `file`, `text`
        is its caption; images (image/jpeg, image/png) go as photos, anything else as documents."""
        ...

    async def mark_read(self, peer: int | str, max_id: int) -> None:
        """Mark the chat's incoming messages up to `max_id` as read."""
        ...

    async def resolve(self, recipient: str) -> PeerRef:
        """A phone number ("+14155550123"; imported as a contact when not one yet), a username
        ("@name", "name", "t.me/name") or a marked chat id ("123", "-100123")."""
        ...

    async def dialogs(self, limit: int | None = 100) -> list[Dialog]: ...

    async def admin_channels(self) -> list[Dialog]:
        """The groups and channels this account administers (creator or admin), with rights."""
        ...

    def on_event(self, handler: AccountUpdateHandler) -> None:
        """Register THE update callback (a second call replaces the first)."""
        ...


@runtime_checkable
class UpdateStateful(Protocol):
    """An `AccountClient` that can resume the account's update sequence (Telegram's
    updates.getDifference) instead of starting from "now" on every connect.

    `update_state()` is where the client stands in the sequence: JSON-able, opaque to callers,
    None when unknown. It only ever covers updates whose handler call has returned (or, for
    Telethon, updates Telethon has read; see `telethon_client`), so a caller stores it and gives it
    back as `AccountSpec.update_state` to the next client on the same session, which then
    delivers every update after it to its handler before new ones, including those Telegram
    received while no client was connected. Re-delivered updates keep their dedupe key.
    """

    def update_state(self) -> dict[str, Any] | None: ...


RecipientKind = Literal["phone", "username", "id"]


@dataclass(frozen=True)
class Recipient:
    kind: RecipientKind
    value: str  # "+digits" for a phone, the bare username, or the id's digits (with its "-")


_ID = re.compile(r"-?\d{1,20}")
_PHONE_PUNCTUATION = re.compile(r"[\s().\-]")
_LINK = re.compile(r"(?:https?://)?(?:www\.)?(?:t|telegram)\.me/(?P<name>[^/?#\s]+)/?", re.IGNORECASE)


def normalize_phone(phone: str) -> str:
    """ "+1 (415) 555-0123" → "+14155550123". Raises InvalidInput when it is not a phone number."""
    compact = _PHONE_PUNCTUATION.sub("", phone.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    digits = compact.removeprefix("+")
    if not digits.isdigit() or not 5 <= len(digits) <= 15:
        raise InvalidInput(
            f"{phone!r} is not a phone number: give it in international format, e.g. +14155550123"
        )
    return "+" + digits


def classify_recipient(recipient: str) -> Recipient:
    """What `resolve` was given: "+…" is a phone, a number an id, anything else a username.

    Usernames are passed on as written (without "@" or the t.me link) and Telegram judges them,
    so an invalid one fails as `RecipientInvalid` from Telegram rather than here.
    """
    value = recipient.strip()
    if not value:
        raise InvalidInput("the recipient is empty: give a phone number, a @username or a chat id")
    if value.startswith("+") or value.startswith("00"):
        return Recipient("phone", normalize_phone(value))
    if _ID.fullmatch(value):
        return Recipient("id", value)
    link = _LINK.fullmatch(value)
    name = link.group("name") if link else value.removeprefix("@")
    if not name:
        raise InvalidInput(f"{recipient!r} is not a recipient: give a phone number, a @username or a chat id")
    return Recipient("username", name)
