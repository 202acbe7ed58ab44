"""The Telegram user-account layer: login flows, errors, sessions and messaging through the
in-process fake (which raises Telethon's own errors), plus what the real Telethon client does
without a network (settings applied, session round trip, thin call wrappers over stubs)."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from telethon import errors as tl_errors  # type: ignore[import-untyped, unused-ignore]
from telethon import events, functions  # type: ignore[import-untyped, unused-ignore]
from telethon.crypto import AuthKey  # type: ignore[import-untyped, unused-ignore]
from telethon.crypto import rsa as tl_rsa  # type: ignore[import-untyped, unused-ignore]
from telethon.sessions import MemorySession, StringSession  # type: ignore[import-untyped, unused-ignore]
from telethon.tl import types  # type: ignore[import-untyped, unused-ignore]

from chatgate.domain.errors import (
    AuthRevoked,
    ChatgateError,
    ConfigurationError,
    Conflict,
    ContentRejected,
    InvalidInput,
    PermanentProviderError,
    PermissionDenied,
    ProviderError,
    ProviderRateLimited,
    RateLimited,
    RecipientInvalid,
    TransientProviderError,
)
from chatgate.domain.inbound import ReceivedMessage
from chatgate.domain.messages import ConversationKind
from chatgate.providers.telegram_user.client import (
    AccountClient,
    AccountInfo,
    PeerRef,
    Recipient,
    classify_recipient,
    normalize_phone,
)
from chatgate.providers.telegram_user.errors import (
    PasswordNeeded,
    QrLoginTimeout,
    map_error,
    translate_errors,
    translated,
)
from chatgate.providers.telegram_user.fake import FAKE_DC, FakeAccountClient, FakeTelegram
from chatgate.providers.telegram_user.sessions import (
    TEST_DC,
    DcAddress,
    dump_session,
    load_session,
    session_auth_key,
    session_dc,
)
from chatgate.providers.telegram_user.telethon_client import (
    TelethonAccountClient,
    client_class,
    rsa_fingerprint,
)

ADA = "+14155550100"
BOB = "+14155550111"
API_HASH = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def fake() -> FakeTelegram:
    telegram = FakeTelegram()
    telegram.add_account(ADA, "Ada", "Lovelace", username="ada_l")
    telegram.add_user("Bob", "Builder", username="bob_builder", phone=BOB)
    return telegram


@pytest.fixture
async def client(fake: FakeTelegram) -> AsyncIterator[FakeAccountClient]:
    account = FakeAccountClient(fake)
    await account.connect()
    yield account
    await account.disconnect()


async def logged_in(fake: FakeTelegram, phone: str = ADA, session: str | None = None) -> FakeAccountClient:
    account = FakeAccountClient(fake, session)
    await account.connect()
    sent = await account.send_code(phone)
    await account.sign_in_code(phone, fake.last_code(phone), sent.phone_code_hash)
    return account


def test_the_fake_and_the_real_client_implement_the_interface() -> None:
    clients: list[type[AccountClient]] = [FakeAccountClient, TelethonAccountClient]  # mypy checks types
    members = {n: m for n, m in vars(AccountClient).items() if not n.startswith("_") and callable(m)}
    assert len(members) == 17
    for cls in clients:
        for name, member in members.items():
            implementation = getattr(cls, name)
            assert inspect.iscoroutinefunction(implementation) == inspect.iscoroutinefunction(member), (
                cls,
                name,
            )


# --- login by code ---------------------------------------------------------------------------


async def test_code_login_via_the_app(fake: FakeTelegram, client: FakeAccountClient) -> None:
    assert await client.is_authorized() is False

    sent = await client.send_code("+1 (415) 555-0100")

    assert (sent.type, sent.next_type, sent.timeout, sent.length) == ("app", "sms", 60, 5)
    me = await client.sign_in_code(ADA, fake.last_code(ADA), sent.phone_code_hash)
    assert me == AccountInfo(fake.user_by_phone(ADA).id, ADA, "ada_l", "Ada", "Lovelace")  # type: ignore[union-attr]
    assert await client.is_authorized() is True
    assert await client.get_me() == me


async def test_code_login_via_sms_with_a_call_next(fake: FakeTelegram, client: FakeAccountClient) -> None:
    fake.configure_codes("sms", "call", timeout=120, length=6)

    sent = await client.send_code(ADA)

    assert (sent.type, sent.next_type, sent.timeout, sent.length) == ("sms", "call", 120, 6)
    assert len(fake.last_code(ADA)) == 6
    me = await client.sign_in_code(ADA, fake.last_code(ADA), sent.phone_code_hash)
    assert me.phone == ADA


async def test_resend_switches_to_the_next_type_and_replaces_the_code(
    fake: FakeTelegram, client: FakeAccountClient
) -> None:
    sent = await client.send_code(ADA)
    first_code = fake.last_code(ADA)

    resent = await client.resend_code(ADA, sent.phone_code_hash)

    assert (resent.type, resent.next_type) == ("sms", None)
    assert resent.phone_code_hash == sent.phone_code_hash
    second_code = fake.last_code(ADA)
    if second_code != first_code:  # 1 in 100000 they coincide
        with pytest.raises(InvalidInput, match="the login code is wrong"):
            await client.sign_in_code(ADA, first_code, sent.phone_code_hash)
    with pytest.raises(Conflict, match="no other way left to send the login code") as caught:
        await client.resend_code(ADA, sent.phone_code_hash)
    assert isinstance(caught.value.__cause__, tl_errors.SendCodeUnavailableError)
    assert (await client.sign_in_code(ADA, second_code, sent.phone_code_hash)).phone == ADA


async def test_two_step_verification_after_the_code(fake: FakeTelegram) -> None:
    fake.add_account("+14155550122", "Cy", password="correct horse", password_hint="horse")
    account = FakeAccountClient(fake)
    await account.connect()
    sent = await account.send_code("+14155550122")

    with pytest.raises(PasswordNeeded) as needed:
        await account.sign_in_code("+14155550122", fake.last_code("+14155550122"), sent.phone_code_hash)

    assert needed.value.code == "password_needed"
    assert needed.value.hint == "horse"
    assert needed.value.details == {"hint": "horse"}
    assert await account.is_authorized() is False
    with pytest.raises(InvalidInput, match="wrong 2FA password") as wrong:
        await account.sign_in_password("battery staple")
    assert isinstance(wrong.value.__cause__, tl_errors.PasswordHashInvalidError)
    me = await account.sign_in_password("correct horse")
    assert me.first_name == "Cy"
    assert await account.is_authorized() is True


async def test_a_password_without_a_pending_login_is_refused(client: FakeAccountClient) -> None:
    with pytest.raises(InvalidInput, match="wrong 2FA password"):
        await client.sign_in_password("anything")
    with pytest.raises(InvalidInput, match="the 2FA password is empty"):
        await client.sign_in_password("")


async def test_the_login_continues_on_a_client_restored_from_the_session(fake: FakeTelegram) -> None:
    fake.add_account("+14155550177", "Flo", password="pw")
    asking = FakeAccountClient(fake)
    await asking.connect()
    session = asking.session_string()
    assert session  # the auth key exists from the first connect: store it now
    sent = await asking.send_code("+14155550177")
    await asking.disconnect()

    stranger = FakeAccountClient(fake)  # another session cannot use that code
    await stranger.connect()
    with pytest.raises(InvalidInput, match="expired"):
        await stranger.sign_in_code("+14155550177", fake.last_code("+14155550177"), sent.phone_code_hash)

    coding = FakeAccountClient(fake, session)
    await coding.connect()
    with pytest.raises(PasswordNeeded):
        await coding.sign_in_code("+14155550177", fake.last_code("+14155550177"), sent.phone_code_hash)
    await coding.disconnect()

    finishing = FakeAccountClient(fake, session)
    await finishing.connect()
    assert (await finishing.sign_in_password("pw")).first_name == "Flo"
    assert finishing.session_string() == session
    assert await finishing.is_authorized() is True


@pytest.mark.parametrize(
    ("spoil", "message", "reason", "telethon_error"),
    [
        ("wrong", "the login code is wrong", "phone_code_invalid", tl_errors.PhoneCodeInvalidError),
        ("empty", "the login code is empty", "phone_code_empty", tl_errors.PhoneCodeEmptyError),
        ("late", "the login code has expired", "phone_code_expired", tl_errors.PhoneCodeExpiredError),
        ("hash", "the login code has expired", "phone_code_expired", tl_errors.PhoneCodeExpiredError),
    ],
)
async def test_bad_codes_say_what_is_wrong(
    fake: FakeTelegram,
    client: FakeAccountClient,
    spoil: str,
    message: str,
    reason: str,
    telethon_error: type[Exception],
) -> None:
    sent = await client.send_code(ADA)
    code, code_hash = fake.last_code(ADA), sent.phone_code_hash
    if spoil == "wrong":
        code = "".join(str((int(d) + 1) % 10) for d in code)
    elif spoil == "empty":
        code = "  "
    elif spoil == "late":
        fake.advance(fake.code_ttl + 1)
    else:
        code_hash = "not-the-hash"

    with pytest.raises(InvalidInput, match=message) as caught:
        await client.sign_in_code(ADA, code, code_hash)

    assert caught.value.details["reason"] == reason
    assert type(caught.value.__cause__) is telethon_error


async def test_invalid_unknown_and_banned_numbers(fake: FakeTelegram, client: FakeAccountClient) -> None:
    with pytest.raises(InvalidInput, match="the phone number is not valid") as invalid:
        await client.send_code("+12")
    assert isinstance(invalid.value.__cause__, tl_errors.PhoneNumberInvalidError)

    sent = await client.send_code("+14155550199")  # Telegram sends codes to new numbers too
    with pytest.raises(InvalidInput, match="no Telegram account uses this phone number"):
        await client.sign_in_code("+14155550199", fake.last_code("+14155550199"), sent.phone_code_hash)

    fake.ban(ADA)
    with pytest.raises(PermissionDenied, match="this number is banned by Telegram") as banned:
        await client.send_code(ADA)
    assert isinstance(banned.value.__cause__, tl_errors.PhoneNumberBannedError)


async def test_flood_wait_keeps_its_seconds(fake: FakeTelegram, client: FakeAccountClient) -> None:
    fake.set_flood_wait(42, "send_code")

    with pytest.raises(RateLimited) as caught:
        await client.send_code(ADA)

    assert caught.value.retry_after == 42
    assert caught.value.details == {"retry_after": 42}
    assert "42 seconds" in caught.value.message
    assert isinstance(caught.value.__cause__, tl_errors.FloodWaitError)
    assert caught.value.__cause__.seconds == 42
    assert (await client.send_code(ADA)).type == "app"  # only the next call was throttled


async def test_flood_wait_while_sending_is_the_provider_throttling(fake: FakeTelegram) -> None:
    account = await logged_in(fake)
    fake.set_flood_wait(17, "send_message")

    with pytest.raises(ProviderRateLimited) as caught:
        await account.send_message("@bob_builder", "hello")

    assert caught.value.retry_after == 17
    assert "17 seconds" in caught.value.message
    assert fake.sent == []


def _send(account: FakeAccountClient) -> Any:
    return account.send_message("@bob_builder", "hi")


@pytest.mark.parametrize(
    ("error", "method", "call", "expected", "text", "reason"),
    [
        (
            tl_errors.PhoneNumberFloodError(request=None),
            "send_code",
            lambda a: a.send_code(ADA),
            RateLimited,
            "too many attempts",
            None,
        ),
        (
            tl_errors.PhonePasswordFloodError(request=None),
            "send_code",
            lambda a: a.send_code(ADA),
            RateLimited,
            "too many attempts",
            None,
        ),
        (
            tl_errors.PeerFloodError(request=None),
            "send_message",
            _send,
            ProviderRateLimited,
            "@SpamBot",
            None,
        ),
        (
            tl_errors.SessionRevokedError(request=None),
            "get_me",
            lambda a: a.get_me(),
            AuthRevoked,
            "terminated",
            "session_revoked",
        ),
        (
            tl_errors.AuthKeyUnregisteredError(request=None),
            "dialogs",
            lambda a: a.dialogs(),
            AuthRevoked,
            "log in again",
            "auth_key_unregistered",
        ),
        (
            tl_errors.UserDeactivatedError(request=None),
            "get_me",
            lambda a: a.get_me(),
            AuthRevoked,
            "deleted or deactivated",
            "user_deactivated",
        ),
        (
            tl_errors.AuthKeyDuplicatedError(request=None),
            "get_me",
            lambda a: a.get_me(),
            AuthRevoked,
            "two clients",
            "auth_key_duplicated",
        ),
        (
            tl_errors.UsernameNotOccupiedError(request=None),
            "resolve",
            lambda a: a.resolve("@somebody"),
            RecipientInvalid,
            "no Telegram user or chat has this username",
            "username_not_occupied",
        ),
        (
            tl_errors.UsernameInvalidError(request=None),
            "resolve",
            lambda a: a.resolve("@somebody"),
            RecipientInvalid,
            "not a valid Telegram username",
            "username_invalid",
        ),
        (
            tl_errors.ServerError(request=None, message="INTERNAL", code=500),
            "send_message",
            _send,
            TransientProviderError,
            "temporary problem",
            None,
        ),
        (
            ConnectionResetError("reset by peer"),
            "get_me",
            lambda a: a.get_me(),
            TransientProviderError,
            "reach",
            None,
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
async def test_telethon_errors_reach_callers_as_ours(
    fake: FakeTelegram,
    error: BaseException,
    method: str,
    call: Callable[[FakeAccountClient], Any],
    expected: type[ChatgateError],
    text: str,
    reason: str | None,
) -> None:
    account = await logged_in(fake)
    fake.fail_next(method, error)

    with pytest.raises(expected) as caught:
        await call(account)

    assert type(caught.value) is expected
    assert text in caught.value.message
    assert caught.value.__cause__ is error
    if reason is not None:
        assert caught.value.details["reason"] == reason


@pytest.mark.parametrize(
    ("error", "messaging", "expected", "text"),
    [
        (tl_errors.FloodWaitError(request=None, capture=9), False, RateLimited, "9 seconds"),
        (tl_errors.FloodWaitError(request=None, capture=9), True, ProviderRateLimited, "9 seconds"),
        (tl_errors.SlowModeWaitError(request=None, capture=30), True, ProviderRateLimited, "30 seconds"),
        (tl_errors.FloodPremiumWaitError(request=None, capture=5), False, RateLimited, "5 seconds"),
        (tl_errors.PhoneCodeHashEmptyError(request=None), False, InvalidInput, "phone_code_hash is missing"),
        (tl_errors.SessionPasswordNeededError(request=None), False, PasswordNeeded, "two-step verification"),
        (tl_errors.UserDeactivatedBanError(request=None), False, AuthRevoked, "banned"),
        (tl_errors.AuthKeyInvalidError(request=None), False, AuthRevoked, "log in again"),
        (tl_errors.ChatWriteForbiddenError(request=None), True, PermanentProviderError, "may not write"),
        (tl_errors.UserIsBlockedError(request=None), True, RecipientInvalid, "blocked this account"),
        (tl_errors.PeerIdInvalidError(request=None), True, RecipientInvalid, "does not know this chat id"),
        (tl_errors.MessageTooLongError(request=None), True, ContentRejected, "longer than Telegram allows"),
        (
            tl_errors.TimedOutError(request=None, message="Timeout", code=-503),
            True,
            TransientProviderError,
            "Timeout",
        ),
        (
            tl_errors.BadRequestError(request=None, message="SOMETHING_NEW"),
            True,
            PermanentProviderError,
            "SOMETHING_NEW",
        ),
        (
            tl_errors.RPCError(request=None, message="ALSO_NEW", code=403),
            True,
            PermanentProviderError,
            "ALSO_NEW",
        ),
        (
            tl_errors.RPCError(request=None, message="NO_WORKERS", code=-500),
            True,
            TransientProviderError,
            "NO_WORKERS",
        ),
        (TimeoutError(), True, TransientProviderError, "cannot reach Telegram"),
        (OSError(101, "Network is unreachable"), True, TransientProviderError, "Network is unreachable"),
        (RuntimeError("boom"), True, ProviderError, "RuntimeError: boom"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_map_error_table(
    error: BaseException, messaging: bool, expected: type[ChatgateError], text: str
) -> None:
    mapped = map_error(error, messaging=messaging)

    assert type(mapped) is expected
    assert text in mapped.message


async def test_our_errors_pass_through_and_the_decorator_translates() -> None:
    ours = RecipientInvalid("already ours")
    assert map_error(ours) is ours
    with pytest.raises(RecipientInvalid) as caught, translate_errors():
        raise ours
    assert caught.value is ours

    @translated(messaging=True)
    async def flooded() -> None:
        raise tl_errors.FloodWaitError(request=None, capture=3)

    with pytest.raises(ProviderRateLimited) as flood:
        await flooded()
    assert flood.value.retry_after == 3


# --- sessions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("session_type", [StringSession, MemorySession])
@pytest.mark.parametrize("address", ["149.154.167.91", "2001:67c:4e8:f004::a"])
def test_session_round_trip_with_real_telethon_sessions(session_type: type[Any], address: str) -> None:
    session = session_type()
    session.set_dc(4, address, 443)
    key = os.urandom(256)
    session.auth_key = AuthKey(key)

    string = dump_session(session)
    loaded = load_session(string, default_dc=TEST_DC)

    assert isinstance(loaded, StringSession)
    assert loaded.auth_key.key == key
    assert loaded.auth_key == session.auth_key  # Telethon compares the key ids
    assert session_dc(loaded) == DcAddress(4, address, 443)  # a stored session keeps its own DC
    assert session_auth_key(loaded) == key
    assert dump_session(loaded) == string


def test_new_sessions_get_the_configured_dc_and_bad_strings_are_refused() -> None:
    fresh = load_session(None, default_dc=TEST_DC)
    assert session_dc(fresh) == TEST_DC
    assert session_auth_key(fresh) is None
    assert dump_session(fresh) == ""  # nothing worth storing before the handshake
    assert session_dc(load_session("")) is None
    for broken in ("2AAAA", "1" + "A" * 10, "1!!!!"):
        with pytest.raises(InvalidInput, match="session string is not valid"):
            load_session(broken)


async def test_a_session_string_logs_a_new_client_in(fake: FakeTelegram) -> None:
    first = await logged_in(fake)
    string = first.session_string()
    me = await first.get_me()
    await first.disconnect()

    loaded = load_session(string)
    assert session_dc(loaded) == FAKE_DC
    assert session_auth_key(loaded) is not None
    again = FakeAccountClient(fake, string)
    await again.connect()
    assert await again.is_authorized() is True
    assert await again.get_me() == me
    assert again.session_string() == string


async def test_two_clients_on_one_session_invalidate_the_older(fake: FakeTelegram) -> None:
    older = await logged_in(fake)
    newer = FakeAccountClient(fake, older.session_string())
    await newer.connect()

    with pytest.raises(AuthRevoked, match="two clients used it at the same time") as caught:
        await older.get_me()

    assert caught.value.details["reason"] == "auth_key_duplicated"
    assert isinstance(caught.value.__cause__, tl_errors.AuthKeyDuplicatedError)
    assert (await newer.get_me()).phone == ADA
    with pytest.raises(TransientProviderError, match="disconnected"):
        await older.get_me()  # Telethon drops the connection after that error


async def test_separate_sessions_of_one_account_coexist(fake: FakeTelegram) -> None:
    one = await logged_in(fake)
    two = await logged_in(fake)
    assert one.session_string() != two.session_string()
    assert (await one.get_me()).phone == (await two.get_me()).phone == ADA


async def test_revoked_banned_and_deactivated_sessions(fake: FakeTelegram) -> None:
    account = await logged_in(fake)
    assert fake.revoke_session(phone=ADA) == 1
    assert await account.is_authorized() is False
    with pytest.raises(AuthRevoked, match="terminated by the account owner"):
        await account.get_me()

    other = await logged_in(fake)
    fake.revoke_session(other.session_string(), reason="auth_key_unregistered")
    with pytest.raises(AuthRevoked) as unregistered:
        await other.dialogs()
    assert unregistered.value.details["reason"] == "auth_key_unregistered"

    third = await logged_in(fake)
    fake.ban(ADA)
    with pytest.raises(AuthRevoked) as banned:
        await third.get_me()
    assert banned.value.details["reason"] == "user_deactivated_ban"


async def test_log_out_ends_the_session(fake: FakeTelegram) -> None:
    account = await logged_in(fake)
    string = account.session_string()

    await account.log_out()

    assert account.session_string() == ""
    later = FakeAccountClient(fake, string)
    await later.connect()
    assert await later.is_authorized() is False


async def test_calls_need_a_connection(fake: FakeTelegram) -> None:
    account = FakeAccountClient(fake)
    with pytest.raises(TransientProviderError, match="disconnected"):
        await account.send_code(ADA)
    fake.set_unreachable()
    with pytest.raises(TransientProviderError, match="cannot reach Telegram"):
        await account.connect()
    fake.set_unreachable(False)
    await account.connect()
    assert (await account.send_code(ADA)).type == "app"


# --- QR login --------------------------------------------------------------------------------


async def test_qr_login_recreated_after_expiry_then_two_step(fake: FakeTelegram) -> None:
    fake.add_account("+14155550133", "Dee", password="s3cret", password_hint="usual")
    account = FakeAccountClient(fake)
    await account.connect()
    qr = await account.qr_login()
    first_url = qr.url
    assert first_url.startswith("tg://login?token=")
    assert qr.expires_at.tzinfo is not None
    assert timedelta(seconds=25) < qr.expires_at - fake.now() <= timedelta(seconds=30)

    fake.advance(31)
    with pytest.raises(tl_errors.AuthTokenExpiredError):
        fake.accept_qr(first_url, "+14155550133")  # the app scanning it is told it expired
    with pytest.raises(QrLoginTimeout, match="nobody scanned the QR code in time"):
        await qr.wait(timeout=0.01)

    await qr.recreate()
    assert qr.url != first_url
    assert qr.expires_at > fake.now()
    with pytest.raises(tl_errors.AuthTokenInvalidError):
        fake.accept_qr(first_url, "+14155550133")  # replaced
    waiting = asyncio.create_task(qr.wait(timeout=5))
    await asyncio.sleep(0)
    fake.accept_qr(qr.url, "+14155550133")
    with pytest.raises(PasswordNeeded) as needed:
        await waiting
    assert needed.value.hint == "usual"

    me = await account.sign_in_password("s3cret")
    assert me.first_name == "Dee"
    assert await account.is_authorized() is True


async def test_qr_login_without_two_step(fake: FakeTelegram, client: FakeAccountClient) -> None:
    qr = await client.qr_login()
    fake.accept_qr(qr.url, ADA)

    me = await qr.wait()

    assert me.phone == ADA
    assert await client.is_authorized() is True


# --- resolving and sending -------------------------------------------------------------------


async def test_resolve_by_phone_imports_the_contact_once(fake: FakeTelegram) -> None:
    account = await logged_in(fake)
    bob = fake.user_by_phone(BOB)
    assert bob is not None

    peer = await account.resolve("+1 415 555 0111")

    assert peer == PeerRef(bob.id, ConversationKind.PRIVATE, "Bob Builder", "bob_builder")
    assert fake.imported_contacts == [(ADA, BOB)]
    assert await account.resolve(BOB) == peer
    assert fake.imported_contacts == [(ADA, BOB)]  # a contact now: no second import

    fake.add_user("Hidden", phone="+14155550144", findable_by_phone=False)
    with pytest.raises(RecipientInvalid, match=r"no Telegram account can be found for \+14155550144"):
        await account.resolve("+14155550144")
    with pytest.raises(RecipientInvalid, match="no Telegram account can be found"):
        await account.resolve("+14155550155")  # nobody has it
    assert [phone for _, phone in fake.imported_contacts] == [BOB, "+14155550144", "+14155550155"]


async def test_resolve_usernames_links_and_ids(fake: FakeTelegram) -> None:
    account = await logged_in(fake)
    news = fake.add_chat("channel", "News", username="newsroom")

    assert (await account.resolve("@bob_builder")).title == "Bob Builder"
    channel = await account.resolve("https://t.me/newsroom")
    assert channel == PeerRef(news.marked_id, ConversationKind.CHANNEL, "News", "newsroom")
    assert (await account.resolve(str(news.marked_id))).id == news.marked_id  # known now
    with pytest.raises(RecipientInvalid, match="does not know this chat id"):
        await account.resolve("123456")
    with pytest.raises(RecipientInvalid, match="no Telegram user or chat has this username"):
        await account.resolve("@nobody_here")
    with pytest.raises(RecipientInvalid, match="not a valid Telegram username"):
        await account.resolve("@ab")
    with pytest.raises(InvalidInput, match="recipient is empty"):
        await account.resolve("  ")


async def test_send_text_and_files(fake: FakeTelegram) -> None:
    account = await logged_in(fake)
    bob = fake.user_by_phone(BOB)
    assert bob is not None

    text = await account.send_message("@bob_builder", "hello Bob", reply_to=3)
    photo = await account.send_message(bob.id, "look", file=b"\xff\xd8jpeg", mime_type="image/jpeg")
    pdf = await account.send_message(
        bob.id, "", file=b"%PDF-1.7", file_name="report.pdf", mime_type="application/pdf"
    )

    assert text.chat_id == bob.id
    assert text.provider_message_id == f"{bob.id}:{text.message_id}"
    assert text.date.tzinfo is not None
    assert [(s.text, s.reply_to, s.file_name, s.mime_type, s.size) for s in fake.sent] == [
        ("hello Bob", 3, None, None, None),
        ("look", None, None, "image/jpeg", 6),
        ("", None, "report.pdf", "application/pdf", 8),
    ]
    stored = fake.messages(ADA, bob.id)
    assert isinstance(stored[1].media, types.MessageMediaPhoto)
    assert stored[2].media.document.mime_type == "application/pdf"
    assert [m.id for m in stored] == [text.message_id, photo.message_id, pdf.message_id]
    # Bob is an account too: he got the messages in his own box, with his own ids
    assert [m.message for m in fake.messages(BOB, fake.user_by_phone(ADA).id)] == ["hello Bob", "look", ""]  # type: ignore[union-attr]

    with pytest.raises(ContentRejected, match="longer than Telegram allows"):
        await account.send_message(bob.id, "x" * 4097)
    with pytest.raises(ContentRejected, match="empty"):
        await account.send_message(bob.id, "")
    with pytest.raises(RecipientInvalid, match="does not know this chat id"):
        await account.send_message(987654321, "who?")


async def test_posting_in_channels_needs_the_right(fake: FakeTelegram) -> None:
    account = await logged_in(fake)
    ada = fake.user_by_phone(ADA)
    assert ada is not None
    readonly = fake.add_chat("channel", "Read only", members=[ada])
    ours = fake.add_chat("channel", "Ours", admins={ada: ["post_messages"]})

    with pytest.raises(PermanentProviderError, match="needs admin rights") as caught:
        await account.send_message(readonly.marked_id, "hi")
    assert isinstance(caught.value.__cause__, tl_errors.ChatAdminRequiredError)
    sent = await account.send_message(ours.marked_id, "announcement")
    assert sent.chat_id == ours.marked_id
    assert sent.message_id == 1  # channels number their own messages


async def test_dialogs_unread_counts_and_admin_channels(fake: FakeTelegram) -> None:
    account = await logged_in(fake)
    ada, bob = fake.user_by_phone(ADA), fake.user_by_phone(BOB)
    assert ada is not None
    assert bob is not None
    first = await fake.deliver_message(ADA, bob, "one")
    await fake.deliver_message(ADA, bob, "two")
    team = fake.add_chat("group", "Team", admins={ada: ["delete_messages", "ban_users"]})
    board = fake.add_chat("channel", "Board", creator=ada)
    fake.add_chat("supergroup", "Quiet", members=[ada], send_forbidden=True)
    fake.add_chat("channel", "Follow", members=[ada])

    await account.mark_read(bob.id, first.message_id)
    dialogs = {d.title: d for d in await account.dialogs()}

    assert fake.read_marks[-1].max_id == first.message_id
    assert dialogs["Bob Builder"].unread_count == 1
    assert dialogs["Bob Builder"].kind == ConversationKind.PRIVATE
    assert dialogs["Bob Builder"].can_post is True
    assert (dialogs["Team"].kind, dialogs["Team"].is_admin) == (ConversationKind.GROUP, True)
    assert dialogs["Team"].admin_rights == ("ban_users", "delete_messages")
    assert (dialogs["Quiet"].kind, dialogs["Quiet"].can_post) == (ConversationKind.GROUP, False)
    assert (dialogs["Follow"].can_post, dialogs["Follow"].is_admin) == (False, False)
    assert dialogs["Board"].can_post is True
    assert next(iter(dialogs)) == "Bob Builder"  # most recent activity first
    assert len(await account.dialogs(limit=2)) == 2

    admin = await account.admin_channels()
    assert {d.title: d.id for d in admin} == {"Team": team.marked_id, "Board": board.marked_id}
    assert "post_messages" in next(d for d in admin if d.title == "Board").admin_rights


def test_recipients_are_classified() -> None:
    assert classify_recipient(" +1 (415) 555-0100 ") == Recipient("phone", ADA)
    assert classify_recipient("0044 20 7946 0000") == Recipient("phone", "+442079460000")
    assert classify_recipient("@Durov") == Recipient("username", "Durov")
    assert classify_recipient("durov") == Recipient("username", "durov")
    assert classify_recipient("https://t.me/durov/") == Recipient("username", "durov")
    assert classify_recipient("-1001234567890") == Recipient("id", "-1001234567890")
    assert normalize_phone("+49 (30) 1234-5678") == "+493012345678"
    with pytest.raises(InvalidInput, match="not a phone number"):
        classify_recipient("+12ab")


# --- the real Telethon client, without a network -----------------------------------------------


def _pem(kind: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    fmt = (
        serialization.PublicFormat.PKCS1
        if kind == "pkcs1"
        else serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key.public_bytes(serialization.Encoding.PEM, fmt).decode()


def _telethon(**settings: Any) -> TelethonAccountClient:
    return TelethonAccountClient(api_id=12345, api_hash=API_HASH, **settings)


@pytest.mark.parametrize("kind", ["pkcs1", "spki"])
async def test_telethon_client_applies_the_dc_and_the_rsa_key(kind: str) -> None:
    pem = _pem(kind)

    account = _telethon(dc=(3, "10.20.30.40", 4430), rsa_public_key_pem=pem)

    session = account.telethon.session
    assert (session.dc_id, session.server_address, session.port) == (3, "10.20.30.40", 4430)
    assert account.rsa_fingerprint == rsa_fingerprint(pem)
    registered, old = tl_rsa._server_keys[account.rsa_fingerprint]
    assert old is False
    assert tl_rsa._compute_fingerprint(registered) == account.rsa_fingerprint  # Telethon agrees
    assert account.session_string() == ""  # no auth key before connecting


async def test_telethon_client_test_mode_and_stored_sessions() -> None:
    assert session_dc(_telethon(test_mode=True).telethon.session) == TEST_DC
    assert _telethon().telethon.session.server_address is None  # Telethon's production default applies

    stored = StringSession()
    stored.set_dc(4, "149.154.167.91", 443)
    stored.auth_key = AuthKey(os.urandom(256))
    string = dump_session(stored)
    account = _telethon(session_string=string, dc=(2, "10.0.0.1", 443))

    assert session_dc(account.telethon.session) == DcAddress(4, "149.154.167.91", 443)
    assert account.session_string() == string
    assert account.telethon.api_id == 12345
    assert account.telethon.flood_sleep_threshold == 0


async def test_each_server_environment_has_its_own_client_class() -> None:
    production, test = client_class(None, False), client_class(None, True)
    other = client_class(DcAddress(1, "192.0.2.1", 443), False)

    assert len({production, test, other}) == 3
    assert client_class(None, False) is production
    production._config = "production config"
    assert test._config is None  # Telethon caches help.getConfig per class: not shared


async def test_telethon_client_rejects_bad_settings() -> None:
    with pytest.raises(ConfigurationError, match="api_id"):
        TelethonAccountClient(api_id=0, api_hash=API_HASH)
    with pytest.raises(ConfigurationError, match="api_hash"):
        TelethonAccountClient(api_id=1, api_hash="")
    with pytest.raises(ConfigurationError, match="not a PEM public key"):
        _telethon(rsa_public_key_pem="-----BEGIN RSA PUBLIC KEY-----\nnope\n-----END RSA PUBLIC KEY-----")
    with pytest.raises(InvalidInput, match="session string is not valid"):
        _telethon(session_string="not a session")


async def test_telethon_client_connect_failure_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    account = _telethon(dc=(2, "127.0.0.1", port), connection_retries=0, timeout=1)

    with pytest.raises(TransientProviderError, match="cannot reach Telegram"):
        await account.connect()


class _StubTelethon:
    """Stands in for `TelegramClient` where a test needs an answer instead of the network."""

    api_id = 12345
    api_hash = API_HASH

    def __init__(self, answers: dict[type, Any]) -> None:
        self.answers = answers
        self.requests: list[Any] = []
        self.session = None

    async def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        answer = self.answers[type(request)]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def get_entity(self, target: Any) -> Any:
        raise ValueError(f'Cannot find any entity corresponding to "{target}"')


async def test_telethon_client_send_code_request_and_conversion() -> None:
    account = _telethon()
    sent = types.auth.SentCode(
        type=types.auth.SentCodeTypeSms(length=5),
        phone_code_hash="abc123",
        next_type=types.auth.CodeTypeCall(),
        timeout=90,
    )
    stub = _StubTelethon({functions.auth.SendCodeRequest: sent})
    account._client = stub

    result = await account.send_code("+1 415 555 0100")

    assert (result.phone_code_hash, result.type, result.next_type, result.timeout) == (
        "abc123",
        "sms",
        "call",
        90,
    )
    request = stub.requests[0]
    assert (request.phone_number, request.api_id, request.api_hash) == ("14155550100", 12345, API_HASH)
    stub.answers[functions.auth.SendCodeRequest] = tl_errors.FloodWaitError(request=None, capture=77)
    with pytest.raises(RateLimited) as flood:
        await account.send_code(ADA)
    assert flood.value.retry_after == 77


async def test_telethon_client_resolves_a_phone_by_importing_it() -> None:
    account = _telethon()
    bob = types.User(
        id=555, access_hash=1, first_name="Bob", last_name="B", phone="14155550111", contact=True
    )
    imported = types.contacts.ImportedContacts(
        imported=[], popular_invites=[], retry_contacts=[], users=[bob]
    )
    stub = _StubTelethon({functions.contacts.ImportContactsRequest: imported})
    account._client = stub

    peer = await account.resolve(BOB)

    assert peer == PeerRef(555, ConversationKind.PRIVATE, "Bob B", None)
    contact = stub.requests[0].contacts[0]
    assert (contact.phone, contact.first_name) == ("14155550111", BOB)
    stub.answers[functions.contacts.ImportContactsRequest] = types.contacts.ImportedContacts(
        imported=[], popular_invites=[], retry_contacts=[], users=[]
    )
    with pytest.raises(RecipientInvalid, match="no Telegram account can be found"):
        await account.resolve(BOB)


async def test_telethon_client_authorization_check() -> None:
    account = _telethon()
    stub = _StubTelethon(
        {functions.updates.GetStateRequest: tl_errors.AuthKeyUnregisteredError(request=None)}
    )
    account._client = stub
    assert await account.is_authorized() is False
    stub.answers[functions.updates.GetStateRequest] = types.updates.State(
        pts=1, qts=0, date=datetime.now(UTC), seq=1, unread_count=0
    )
    assert await account.is_authorized() is True
    stub.answers[functions.updates.GetStateRequest] = tl_errors.FloodWaitError(request=None, capture=3)
    with pytest.raises(RateLimited):
        await account.is_authorized()


async def test_telethon_client_password_needed_carries_the_hint() -> None:
    account = _telethon()
    password = types.account.Password(
        new_algo=types.PasswordKdfAlgoUnknown(),
        new_secure_algo=types.SecurePasswordKdfAlgoUnknown(),
        secure_random=b"",
        has_password=True,
        hint="the usual",
    )
    stub = _StubTelethon({functions.account.GetPasswordRequest: password})

    async def sign_in(**kwargs: Any) -> Any:
        raise tl_errors.SessionPasswordNeededError(request=None)

    stub.sign_in = sign_in  # type: ignore[attr-defined]
    account._client = stub

    with pytest.raises(PasswordNeeded) as needed:
        await account.sign_in_code(ADA, "12345", "hash")

    assert needed.value.hint == "the usual"
    with pytest.raises(InvalidInput, match="the login code is empty"):
        await account.sign_in_code(ADA, " ", "hash")


async def test_telethon_client_registers_one_set_of_builders_and_dispatches() -> None:
    account = _telethon()
    got: list[Any] = []

    async def first(raw: Any, parsed: Any) -> None:
        got.append(("first", raw))

    async def second(raw: Any, parsed: Any) -> None:
        got.append(("second", raw, parsed))

    account.on_event(first)
    account.on_event(second)

    builders = [type(b) for _, b in account.telethon.list_event_handlers()]
    assert builders == [events.NewMessage, events.MessageEdited, events.MessageDeleted, events.MessageRead]
    message = types.Message(id=7, peer_id=types.PeerUser(42), date=datetime.now(UTC), message="hi", out=False)
    update = types.UpdateNewMessage(message=message, pts=1, pts_count=1)
    update._entities = {42: types.User(id=42, first_name="Eve", access_hash=5)}
    event = events.NewMessage.build(update, None, 1)
    event._entities = update._entities
    event._set_client(account.telethon)

    await account._on_telethon_event(event)

    assert len(got) == 1
    name, raw, parsed = got[0]
    assert (name, raw.key) == ("second", "msg:42:7")
    assert isinstance(parsed[0], ReceivedMessage)
    assert parsed[0].sender.display_name == "Eve"
