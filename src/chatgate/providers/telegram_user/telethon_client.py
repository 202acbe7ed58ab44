"""`AccountClient` over `telethon.TelegramClient`: the only module that talks MTProto.

Kept thin on purpose: every method is a Telethon call wrapped in `errors.translate_errors`, plus
the TL → dataclass converters below (`sent_code_from_tl`, `account_from_tl`, `peer_from_entity`,
`dialog_from_entity`, `imported_user`), which `fake.FakeAccountClient` reuses on the TL objects
it builds, so they are exercised by the tests too.

The live paths (connecting, logging in, sending, receiving updates) run only against real
Telegram (or a Telegram-compatible server): the test suite has no network. What is tested here
without it: construction, the data centre and RSA key settings applied to the session, the
session string round trip, handler registration, and the error mapping around each call.

Settings:

* `api_id` / `api_hash`: the application credentials (from settings, overridable per tenant).
* `dc` (id, ip, port): the data centre a NEW session starts at; default production DC 2, or
  Telegram's test DC 2 with `test_mode=True`. A stored session keeps its own DC (its auth key
  lives there). Each (dc, test_mode) environment gets its own `TelegramClient` subclass, because
  Telethon caches the server's DC list (`help.getConfig`) per class: production and test (or
  another server) must not share it.
* `rsa_public_key_pem`: the server's RSA public key (PKCS#1 "RSA PUBLIC KEY" or
  SubjectPublicKeyInfo "PUBLIC KEY" PEM), added to Telethon's key table for the handshake.
  Telethon's table is process-wide; adding a key never removes the built-in ones, and the server
  names the key it wants by fingerprint, so accounts on different servers coexist.
* `flood_sleep_threshold` defaults to 0: Telethon never sleeps on a flood wait by itself, the
  caller gets `RateLimited`/`ProviderRateLimited` with the seconds and decides.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import struct
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from telethon import TelegramClient, events, functions, utils  # type: ignore[import-untyped, unused-ignore]
from telethon import errors as tl_errors  # type: ignore[import-untyped, unused-ignore]
from telethon.crypto import rsa as tl_rsa  # type: ignore[import-untyped, unused-ignore]
from telethon.tl import types  # type: ignore[import-untyped, unused-ignore]
from telethon.tl.tlobject import TLObject  # type: ignore[import-untyped, unused-ignore]

from chatgate.domain.errors import (
    AuthRevoked,
    ConfigurationError,
    Conflict,
    InvalidInput,
    PermanentProviderError,
    ProviderRateLimited,
    RecipientInvalid,
)
from chatgate.domain.messages import ConversationKind
from chatgate.providers.telegram_user.client import (
    AccountInfo,
    AccountUpdateHandler,
    CodeType,
    Dialog,
    PeerRef,
    Recipient,
    SentCode,
    SentMessage,
    classify_recipient,
    normalize_phone,
)
from chatgate.providers.telegram_user.errors import (
    UNKNOWN_WAIT_SECONDS,
    PasswordNeeded,
    QrLoginTimeout,
    translate_errors,
)
from chatgate.providers.telegram_user.parsing import (
    account_update,
    entity_kind,
    entity_title,
    entity_username,
)
from chatgate.providers.telegram_user.sessions import TEST_DC, DcAddress, dump_session, load_session

# --- TL → our dataclasses (shared with the fake) -------------------------------------------

_CODE_TYPES = {
    "App": "app",
    "Sms": "sms",
    "Call": "call",
    "FlashCall": "flash_call",
    "MissedCall": "missed_call",
    "EmailCode": "email",
    "SetUpEmailRequired": "email_setup_required",
    "FragmentSms": "fragment",
    "FirebaseSms": "firebase_sms",
    "SmsWord": "sms_word",
    "SmsPhrase": "sms_phrase",
}


def code_type_name(tl_type: Any) -> CodeType:
    """`auth.SentCodeTypeSms` / `auth.CodeTypeSms` → "sms"; unknown types → their snake_case name."""
    name = type(tl_type).__name__.removeprefix("SentCodeType").removeprefix("CodeType")
    return _CODE_TYPES.get(name) or "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def sent_code_from_tl(result: Any) -> SentCode:
    """An `auth.SentCode` (the answer to auth.sendCode / auth.resendCode) as a `SentCode`."""
    if isinstance(result, types.auth.SentCodeSuccess):
        raise Conflict("Telegram logged the session in without a code: it is already authorized")
    payment = getattr(types.auth, "SentCodePaymentRequired", None)
    if payment is not None and isinstance(result, payment):
        raise PermanentProviderError("Telegram requires a payment to send a login code to this number")
    length = getattr(result.type, "length", None)
    return SentCode(
        phone_code_hash=str(result.phone_code_hash),
        type=code_type_name(result.type),
        next_type=code_type_name(result.next_type) if result.next_type is not None else None,
        timeout=int(result.timeout) if result.timeout is not None else None,
        length=int(length) if isinstance(length, int) else None,
    )


def _phone(value: Any) -> str | None:
    return f"+{str(value).removeprefix('+')}" if value else None


def account_from_tl(user: Any) -> AccountInfo:
    """A TL `User` (the logged-in one) as `AccountInfo`."""
    return AccountInfo(
        user_id=int(user.id),
        phone=_phone(user.phone),
        username=entity_username(user),
        first_name=user.first_name or None,
        last_name=user.last_name or None,
    )


def peer_from_entity(entity: Any) -> PeerRef:
    """A TL `User`, `Chat` or `Channel` as a `PeerRef` (marked id)."""
    return PeerRef(
        id=int(utils.get_peer_id(entity)),
        kind=entity_kind(entity),
        title=entity_title(entity),
        username=entity_username(entity),
    )


def _granted(rights: Any) -> tuple[str, ...]:
    if rights is None:
        return ()
    return tuple(sorted(k for k, v in rights.to_dict().items() if k != "_" and v is True))


def _forbids_sending(banned: Any) -> bool:
    return bool(banned is not None and getattr(banned, "send_messages", False))


def dialog_from_entity(entity: Any, unread_count: int = 0) -> Dialog:
    """A dialog's TL entity (with the account's rights in it) as a `Dialog`."""
    ref = peer_from_entity(entity)
    if isinstance(entity, types.User):
        return Dialog(ref.id, ref.kind, ref.title, ref.username, unread_count, False, not entity.deleted)
    rights = _granted(getattr(entity, "admin_rights", None))
    creator = bool(getattr(entity, "creator", False))
    is_admin = creator or getattr(entity, "admin_rights", None) is not None
    gone = isinstance(entity, types.ChatForbidden | types.ChannelForbidden) or bool(
        getattr(entity, "left", False) or getattr(entity, "deactivated", False)
    )
    if gone:
        can_post = False
    elif ref.kind == ConversationKind.CHANNEL:
        can_post = creator or "post_messages" in rights
    else:
        banned = _forbids_sending(getattr(entity, "banned_rights", None)) or _forbids_sending(
            getattr(entity, "default_banned_rights", None)
        )
        can_post = is_admin or not banned
    return Dialog(ref.id, ref.kind, ref.title, ref.username, unread_count, is_admin, can_post, rights)


def imported_user(result: Any, phone: str) -> Any:
    """The TL `User` a `contacts.ImportedContacts` found for `phone`, or RecipientInvalid."""
    if result.users:
        return result.users[0]
    if result.retry_contacts:
        raise ProviderRateLimited(
            "Telegram limits how many contacts an account may import; try this number later",
            retry_after=UNKNOWN_WAIT_SECONDS,
        )
    raise RecipientInvalid(
        f"no Telegram account can be found for {phone}: the number is not on Telegram "
        "or its owner's privacy settings hide it"
    )


def event_builders() -> list[Any]:
    """The Telethon event builders an account listens with (MessageRead: outbox reads only)."""
    return [events.NewMessage(), events.MessageEdited(), events.MessageDeleted(), events.MessageRead()]


# --- settings → Telethon -------------------------------------------------------------------

_CLIENT_CLASSES: dict[tuple[DcAddress | None, bool], Any] = {}


def client_class(dc: DcAddress | None, test_mode: bool) -> Any:
    """The `TelegramClient` subclass for one server environment (its own cached DC list)."""
    key = (dc, test_mode)
    cls = _CLIENT_CLASSES.get(key)
    if cls is None:
        namespace = {"_config": None, "_cdn_config": None, "__module__": __name__}
        cls = type(TelegramClient)("ChatgateTelegramClient", (TelegramClient,), namespace)
        _CLIENT_CLASSES[key] = cls
    return cls


def rsa_fingerprint(pem: str) -> int:
    """Telegram's fingerprint of an RSA public key (the last 8 bytes of SHA-1 over n and e)."""
    numbers = _rsa_key(pem).public_numbers()

    def raw(value: int) -> bytes:
        return bytes(TLObject.serialize_bytes(value.to_bytes((value.bit_length() + 7) // 8, "big")))

    digest = hashlib.sha1(raw(numbers.n) + raw(numbers.e), usedforsecurity=False).digest()
    return int(struct.unpack("<q", digest[-8:])[0])


def _rsa_key(pem: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem.strip().encode())
    except ValueError as exc:
        raise ConfigurationError(f"the MTProto RSA public key is not a PEM public key: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigurationError("the MTProto public key must be an RSA key")
    return key


def add_rsa_key(pem: str) -> int:
    """Let Telethon's handshake use this server RSA key; returns its fingerprint."""
    pkcs1 = _rsa_key(pem).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()
    try:
        tl_rsa.add_key(pkcs1, old=False)
    except TypeError:  # a Telethon without the `old` flag
        tl_rsa.add_key(pkcs1)
    return rsa_fingerprint(pkcs1)


def _aware(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime from Telegram, got {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _sent_as_photo(mime_type: str | None) -> bool:
    return mime_type in ("image/jpeg", "image/png")


# --- the client ----------------------------------------------------------------------------


class TelethonQrLogin:
    """`QrLogin` over Telethon's `custom.QRLogin`."""

    def __init__(self, owner: TelethonAccountClient, qr: Any) -> None:
        self._owner = owner
        self._qr = qr

    @property
    def url(self) -> str:
        return str(self._qr.url)

    @property
    def expires_at(self) -> datetime:
        return _aware(self._qr.expires)

    async def recreate(self) -> None:
        with translate_errors():
            await self._qr.recreate()

    async def wait(self, timeout: float | None = None) -> AccountInfo:  # noqa: ASYNC109 (as Telethon's)
        try:
            with translate_errors():
                try:
                    user = await self._qr.wait(timeout)
                except TimeoutError as exc:
                    raise QrLoginTimeout(
                        "nobody scanned the QR code in time; after it expires, recreate it",
                        details={"expires_at": self.expires_at.isoformat()},
                    ) from exc
        except PasswordNeeded:
            raise await self._owner._password_needed() from None
        return account_from_tl(user)


class TelethonAccountClient:
    """`AccountClient` for one Telegram user account over Telethon (see the module docstring)."""

    def __init__(
        self,
        *,
        api_id: int,
        api_hash: str,
        session_string: str | None = None,
        dc: DcAddress | tuple[int, str, int] | None = None,
        rsa_public_key_pem: str | None = None,
        test_mode: bool = False,
        device_model: str | None = None,
        system_version: str | None = None,
        app_version: str | None = None,
        lang_code: str = "en",
        system_lang_code: str = "en",
        flood_sleep_threshold: int = 0,
        request_retries: int = 5,
        connection_retries: int = 5,
        timeout: int = 10,
        receive_updates: bool = True,
        use_ipv6: bool = False,
        update_state: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(api_id, int) or isinstance(api_id, bool) or api_id <= 0:
            raise ConfigurationError("the Telegram api_id must be a positive integer (from my.telegram.org)")
        if not api_hash:
            raise ConfigurationError("the Telegram api_hash is missing (from my.telegram.org)")
        self.dc = DcAddress.of(dc) if dc is not None else (TEST_DC if test_mode else None)
        self.test_mode = test_mode
        self.rsa_fingerprint = add_rsa_key(rsa_public_key_pem) if rsa_public_key_pem else None
        session = load_session(session_string, default_dc=self.dc)
        resumes = restore_update_state(session, update_state)
        self._client: Any = client_class(self.dc, test_mode)(
            session,
            api_id,
            api_hash,
            use_ipv6=use_ipv6,
            timeout=timeout,
            request_retries=request_retries,
            connection_retries=connection_retries,
            flood_sleep_threshold=flood_sleep_threshold,
            device_model=device_model,
            system_version=system_version,
            app_version=app_version,
            lang_code=lang_code,
            system_lang_code=system_lang_code,
            receive_updates=receive_updates,
            catch_up=resumes,  # getDifference from the restored state once connected
        )
        self._handler: AccountUpdateHandler | None = None
        self._listening = False
        self._logged_out = False

    @property
    def telethon(self) -> Any:
        """The underlying `TelegramClient` (for diagnostics; do not call it around this class)."""
        return self._client

    # connection ------------------------------------------------------------------------------

    async def connect(self) -> None:
        with translate_errors():
            await self._client.connect()

    async def disconnect(self) -> None:
        with translate_errors():
            await self._client.disconnect()

    async def is_authorized(self) -> bool:
        try:
            with translate_errors():
                await self._client(functions.updates.GetStateRequest())
        except (AuthRevoked, PasswordNeeded):
            return False
        return True

    # login -----------------------------------------------------------------------------------

    async def send_code(self, phone: str) -> SentCode:
        number = auth_phone(phone)
        with translate_errors():
            for attempt in range(3):
                try:
                    result = await self._client(
                        functions.auth.SendCodeRequest(
                            number, self._client.api_id, self._client.api_hash, types.CodeSettings()
                        )
                    )
                    break
                except tl_errors.AuthRestartError:  # Telegram asks to simply try again
                    if attempt == 2:
                        raise
            return sent_code_from_tl(result)

    async def resend_code(self, phone: str, phone_code_hash: str) -> SentCode:
        with translate_errors():
            result = await self._client(functions.auth.ResendCodeRequest(auth_phone(phone), phone_code_hash))
            return sent_code_from_tl(result)

    async def sign_in_code(self, phone: str, code: str, phone_code_hash: str) -> AccountInfo:
        try:
            with translate_errors():
                if not code.strip():
                    raise tl_errors.PhoneCodeEmptyError(request=None)
                user = await self._client.sign_in(
                    phone=auth_phone(phone), code=code.strip(), phone_code_hash=phone_code_hash
                )
        except PasswordNeeded:
            raise await self._password_needed() from None
        return account_from_tl(user)

    async def sign_in_password(self, password: str) -> AccountInfo:
        if not password:
            raise InvalidInput("the 2FA password is empty")
        with translate_errors():
            user = await self._client.sign_in(password=password)
        return account_from_tl(user)

    async def _password_needed(self) -> PasswordNeeded:
        hint = None
        try:  # best effort: the hint helps the person remember, its absence changes nothing
            password = await self._client(functions.account.GetPasswordRequest())
            hint = password.hint or None
        except (tl_errors.RPCError, OSError):
            pass
        return PasswordNeeded(hint=hint)

    async def qr_login(self) -> TelethonQrLogin:
        with translate_errors():
            qr = await self._client.qr_login()
        return TelethonQrLogin(self, qr)

    async def get_me(self) -> AccountInfo:
        with translate_errors():
            users = await self._client(functions.users.GetUsersRequest([types.InputUserSelf()]))
            return account_from_tl(users[0])

    def session_string(self) -> str:
        return "" if self._logged_out else dump_session(self._client.session)

    def update_state(self) -> dict[str, Any] | None:
        """`UpdateStateful`: Telethon's message box position (pts, qts, date, seq and each
        channel's pts). It advances when Telethon has read an update, which may be before our
        handler finished with it: the account runtime stores the state of one heartbeat earlier."""
        box = getattr(self._client, "_message_box", None)
        if box is None or box.is_empty():
            return None
        state, channels = box.session_state()
        date = state.get("date")
        return {
            "pts": int(state["pts"]),
            "qts": int(state["qts"]),
            "date": int(date.timestamp()) if isinstance(date, datetime) else int(date or 0),
            "seq": int(state["seq"]),
            "channels": {str(k): int(v) for k, v in channels.items()},
        }

    async def log_out(self) -> None:
        try:
            with translate_errors():
                await self._client(functions.auth.LogOutRequest())
        except AuthRevoked:
            pass  # already logged out or revoked: the goal is reached
        self._logged_out = True
        with translate_errors():
            await self._client.disconnect()

    # messaging -------------------------------------------------------------------------------

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
        with translate_errors(messaging=True):
            entity = await self._input_entity(peer)
            if file is None:
                message = await self._client.send_message(entity, text, reply_to=reply_to, parse_mode=None)
            else:
                upload = io.BytesIO(file)
                upload.name = file_name or "file"
                message = await self._client.send_file(
                    entity,
                    upload,
                    caption=text or None,
                    reply_to=reply_to,
                    parse_mode=None,
                    mime_type=mime_type,
                    force_document=not _sent_as_photo(mime_type),
                    attributes=[types.DocumentAttributeFilename(file_name)] if file_name else None,
                )
            return SentMessage(int(utils.get_peer_id(message.peer_id)), int(message.id), _aware(message.date))

    async def mark_read(self, peer: int | str, max_id: int) -> None:
        with translate_errors(messaging=True):
            entity = await self._input_entity(peer)
            await self._client.send_read_acknowledge(entity, max_id=max_id)

    async def resolve(self, recipient: str) -> PeerRef:
        target = classify_recipient(recipient)
        with translate_errors(messaging=True):
            return peer_from_entity(await self._find(target))

    async def _find(self, target: Recipient) -> Any:
        if target.kind == "phone":
            try:
                return await self._client.get_entity(target.value)  # found among the contacts
            except ValueError:
                contact = types.InputPhoneContact(
                    client_id=secrets.randbits(62),
                    phone=target.value.removeprefix("+"),
                    first_name=target.value,
                    last_name="",
                )
                result = await self._client(functions.contacts.ImportContactsRequest([contact]))
                return imported_user(result, target.value)
        if target.kind == "username":
            try:
                return await self._client.get_entity(target.value)
            except ValueError as exc:
                raise RecipientInvalid(f"no Telegram user or chat has the username @{target.value}") from exc
        return await self._known_entity(int(target.value), full=True)

    async def _known_entity(self, peer_id: int, *, full: bool) -> Any:
        """Telethon only addresses chats whose access hash it has seen; after a restart that
        means none, so the dialogs are fetched once to learn them."""
        fetch = self._client.get_entity if full else self._client.get_input_entity
        try:
            return await fetch(peer_id)
        except ValueError:
            await self._client.get_dialogs(limit=None)
        try:
            return await fetch(peer_id)
        except ValueError as exc:
            raise RecipientInvalid(
                f"this account does not know chat {peer_id}: it can only address chats in its dialogs"
            ) from exc

    async def _input_entity(self, peer: int | str) -> Any:
        if isinstance(peer, str):
            target = classify_recipient(peer)
            if target.kind != "id":
                return utils.get_input_peer(await self._find(target))
            peer = int(target.value)
        return await self._known_entity(peer, full=False)

    async def dialogs(self, limit: int | None = 100) -> list[Dialog]:
        with translate_errors(messaging=True):
            return [
                dialog_from_entity(d.entity, d.unread_count)
                async for d in self._client.iter_dialogs(limit=limit)
            ]

    async def admin_channels(self) -> list[Dialog]:
        found = await self.dialogs(limit=None)
        return [d for d in found if d.is_admin and d.kind != ConversationKind.PRIVATE]

    # updates ---------------------------------------------------------------------------------

    def on_event(self, handler: AccountUpdateHandler) -> None:
        self._handler = handler
        if not self._listening:
            for builder in event_builders():
                self._client.add_event_handler(self._on_telethon_event, builder)
            self._listening = True

    async def _on_telethon_event(self, event: Any) -> None:
        handler = self._handler
        update = account_update(event)
        if handler is not None and update is not None:
            await handler(*update)


def restore_update_state(session: Any, state: dict[str, Any] | None) -> bool:
    """Put a stored `update_state()` into a Telethon session, as Telethon's own session files
    keep it, so the client catches up from there on connect. True when there was one."""
    if not state or not isinstance(state.get("pts"), int) or state["pts"] <= 0:
        return False
    date = datetime.fromtimestamp(int(state.get("date") or 0), UTC)
    session.set_update_state(
        0,
        types.updates.State(
            pts=int(state["pts"]),
            qts=int(state.get("qts") or 0),
            date=date,
            seq=int(state.get("seq") or 0),
            unread_count=0,
        ),
    )
    for channel_id, pts in (state.get("channels") or {}).items():
        session.set_update_state(
            int(channel_id), types.updates.State(pts=int(pts), qts=0, date=date, seq=0, unread_count=0)
        )
    return True


def auth_phone(phone: str) -> str:
    """The number as Telegram's auth methods take it: digits only (Telegram judges validity)."""
    try:
        return normalize_phone(phone).removeprefix("+")
    except InvalidInput:
        cleaned = "".join(c for c in phone if not c.isspace()).removeprefix("+")
        if not cleaned:
            raise
        return cleaned  # let Telegram answer PHONE_NUMBER_INVALID, mapped like any other number
