"""Telethon's exceptions → chatgate's error tree, in one place.

`map_error(exc)` turns any exception the Telethon layer raises into a `ChatgateError`;
`translate_errors()` (a context manager) and `@translated()` (a decorator for async methods)
apply it, so callers of an `AccountClient` only ever see our errors (the original is chained as
`__cause__`). Error classes are looked up by name, so a name missing from an older Telethon
(the supported range is 1.40 and newer) simply does not match.

`messaging=True` is for sending and reading: there a flood wait is the provider throttling us
(`ProviderRateLimited`, retried by the send worker); during login it is `RateLimited` for the
person logging in.

| Telethon error                                                     | ours                        |
|--------------------------------------------------------------------|-----------------------------|
| PhoneNumberInvalidError                                            | InvalidInput                |
| PhoneCodeInvalidError / PhoneCodeExpiredError / PhoneCodeEmptyError / PhoneCodeHashEmptyError | InvalidInput (says which) |
| PhoneNumberUnoccupiedError                                         | InvalidInput (no account)   |
| SessionPasswordNeededError                                         | PasswordNeeded              |
| PasswordHashInvalidError                                           | InvalidInput("wrong 2FA password") |
| FloodWaitError / FloodPremiumWaitError / SlowModeWaitError / other FloodError with seconds | RateLimited (login) / ProviderRateLimited (messaging), retry_after = seconds |
| PhoneNumberFloodError / PhonePasswordFloodError                    | RateLimited("too many attempts…") |
| PhoneNumberBannedError                                             | PermissionDenied            |
| SendCodeUnavailableError                                           | Conflict (no other way to send the code) |
| AuthKeyUnregisteredError / SessionRevokedError / SessionExpiredError / UserDeactivatedError / UserDeactivatedBanError / AuthKeyDuplicatedError / AuthKeyInvalidError / AuthKeyNotFound / other 401 | AuthRevoked (details["reason"]) |
| PeerFloodError                                                     | ProviderRateLimited         |
| UsernameNotOccupiedError / UsernameInvalidError / PeerIdInvalidError / UserIdInvalidError / ChatIdInvalidError / ChannelInvalidError / ChannelPrivateError / InputUserDeactivatedError / UserIsBlockedError / YouBlockedUserError / UserPrivacyRestrictedError | RecipientInvalid |
| ChatWriteForbiddenError / ChatAdminRequiredError / UserBannedInChannelError / ChatRestrictedError | PermanentProviderError |
| MessageTooLongError / MessageEmptyError / MediaEmptyError          | ContentRejected             |
| ServerError / TimedOutError / OSError, ConnectionError, TimeoutError / InvalidBufferError | TransientProviderError |
| other RPCError with a 4xx code (not 420)                           | PermanentProviderError      |
| other RPCError (5xx, negative, unknown)                             | TransientProviderError      |
| anything else                                                      | ProviderError               |
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from telethon import errors as tl_errors  # type: ignore[import-untyped, unused-ignore]

from chatgate.domain.errors import (
    AuthRevoked,
    ChatgateError,
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

# Telegram gives no duration for these limits; an hour is our conservative guess.
UNKNOWN_WAIT_SECONDS = 3600.0


class PasswordNeeded(ChatgateError):
    """The account has two-step verification on: `sign_in_password` must follow."""

    code = "password_needed"

    def __init__(
        self,
        message: str = "this Telegram account has two-step verification on: send its password",
        *,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, details={"hint": hint} if hint else None)
        self.hint = hint


class QrLoginTimeout(ChatgateError):
    """Nobody scanned the QR code in time; after `expires_at` the code needs `recreate()`."""

    code = "qr_login_timeout"


def _cls(name: str) -> type[BaseException] | None:
    found = getattr(tl_errors, name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _classes(*names: str) -> tuple[type[BaseException], ...]:
    return tuple(c for c in (_cls(n) for n in names) if c is not None)


_CODE_ERRORS: dict[str, str] = {
    "PhoneCodeInvalidError": "the login code is wrong",
    "PhoneCodeExpiredError": "the login code has expired: request a new one",
    "PhoneCodeEmptyError": "the login code is empty",
    "PhoneCodeHashEmptyError": "no login code was requested for this phone number (phone_code_hash is missing)",
}

_REVOKED: dict[str, tuple[str, str]] = {
    "AuthKeyDuplicatedError": (
        "auth_key_duplicated",
        "Telegram invalidated the session because two clients used it at the same time; "
        "log in again and run each session in one place only",
    ),
    "SessionRevokedError": (
        "session_revoked",
        "the Telegram session was terminated by the account owner; log in again",
    ),
    "SessionExpiredError": ("session_expired", "the Telegram session has expired; log in again"),
    "AuthKeyUnregisteredError": (
        "auth_key_unregistered",
        "Telegram no longer knows this session (logged out or terminated); log in again",
    ),
    "AuthKeyInvalidError": ("auth_key_invalid", "Telegram rejected the session key; log in again"),
    "AuthKeyPermEmptyError": ("auth_key_perm_empty", "Telegram rejected the session key; log in again"),
    "UserDeactivatedBanError": (
        "user_deactivated_ban",
        "the Telegram account was banned (deactivated) by Telegram",
    ),
    "UserDeactivatedError": ("user_deactivated", "the Telegram account was deleted or deactivated"),
    "AuthKeyNotFound": (
        "auth_key_not_found",
        "the Telegram server does not know this session key; log in again",
    ),
}

_RECIPIENT: dict[str, str] = {
    "UsernameNotOccupiedError": "no Telegram user or chat has this username",
    "UsernameInvalidError": "this is not a valid Telegram username",
    "PeerIdInvalidError": "Telegram does not know this chat id for this account",
    "UserIdInvalidError": "Telegram does not know this user id for this account",
    "ChatIdInvalidError": "Telegram does not know this group id for this account",
    "ChannelInvalidError": "Telegram does not know this channel for this account",
    "ChannelPrivateError": "the channel is private, or the account was removed from it",
    "InputUserDeactivatedError": "the recipient's Telegram account was deleted",
    "UserIsBlockedError": "the recipient has blocked this account",
    "YouBlockedUserError": "this account has blocked the recipient; unblock them first",
    "UserPrivacyRestrictedError": "the recipient's privacy settings do not allow this",
}

_FORBIDDEN: dict[str, str] = {
    "ChatWriteForbiddenError": "the account may not write in this chat",
    "ChatAdminRequiredError": "this needs admin rights in the chat",
    "UserBannedInChannelError": "the account is banned from sending in groups and channels",
    "ChatRestrictedError": "the chat is restricted and cannot be written to",
}

_CONTENT: dict[str, str] = {
    "MessageTooLongError": "the message is longer than Telegram allows (4096 characters, 1024 for captions)",
    "MessageEmptyError": "the message is empty",
    "MediaEmptyError": "Telegram rejected the attached file",
}


V = TypeVar("V")


def _first(table: dict[str, V], exc: BaseException) -> V | None:
    for name, value in table.items():
        cls = _cls(name)
        if cls is not None and isinstance(exc, cls):
            return value
    return None


def _telegram_says(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return str(message) if message and message not in ("BAD_REQUEST", "FLOOD") else str(exc)


def map_error(exc: BaseException, *, messaging: bool = False) -> ChatgateError:
    """The chatgate error for an exception raised by Telethon (or the network under it)."""
    if isinstance(exc, ChatgateError):
        return exc
    if isinstance(exc, _classes("PhoneNumberInvalidError")):
        return InvalidInput(
            "the phone number is not valid: give it in international format, e.g. +14155550123",
            details={"reason": "phone_number_invalid"},
        )
    code_problem = _first(_CODE_ERRORS, exc)
    if code_problem is not None:
        return InvalidInput(
            code_problem, details={"reason": _snake(type(exc).__name__.removesuffix("Error"))}
        )
    if isinstance(exc, _classes("PhoneNumberUnoccupiedError")):
        return InvalidInput(
            "no Telegram account uses this phone number; sign up in an official Telegram app first",
            details={"reason": "phone_number_unoccupied"},
        )
    if isinstance(exc, _classes("SessionPasswordNeededError")):
        return PasswordNeeded()
    if isinstance(exc, _classes("PasswordHashInvalidError")):
        return InvalidInput("wrong 2FA password", details={"reason": "password_invalid"})
    if isinstance(exc, _classes("PhoneNumberBannedError")):
        return PermissionDenied(
            "this number is banned by Telegram", details={"reason": "phone_number_banned"}
        )
    if isinstance(exc, _classes("PhoneNumberFloodError")):
        return RateLimited(
            "too many attempts: Telegram sent too many login codes to this number; try again later",
            retry_after=UNKNOWN_WAIT_SECONDS,
        )
    if isinstance(exc, _classes("PhonePasswordFloodError")):
        return RateLimited(
            "too many attempts: too many failed logins or 2FA passwords; try again later",
            retry_after=UNKNOWN_WAIT_SECONDS,
        )
    if isinstance(exc, _classes("SendCodeUnavailableError")):
        return Conflict(
            "Telegram has no other way left to send the login code: wait for it, or start again later",
            details={"reason": "send_code_unavailable"},
        )
    if isinstance(exc, _classes("PeerFloodError")):
        return ProviderRateLimited(
            "Telegram limits this account (reported as spam): it cannot message people who have not "
            "written to it first; see @SpamBot in Telegram",
            retry_after=UNKNOWN_WAIT_SECONDS,
        )
    seconds = getattr(exc, "seconds", None)
    if isinstance(exc, _classes("FloodError")) and isinstance(seconds, int):
        message = f"Telegram asks to wait {seconds} seconds before trying again ({type(exc).__name__})"
        if messaging:
            return ProviderRateLimited(message, retry_after=float(seconds))
        return RateLimited(message, retry_after=float(seconds))
    revoked = _first(_REVOKED, exc)
    if revoked is not None:
        return AuthRevoked(revoked[1], details={"reason": revoked[0]})
    if isinstance(exc, _classes("UnauthorizedError")):
        return AuthRevoked(
            f"Telegram no longer accepts this session: {_telegram_says(exc)}",
            details={"reason": _snake(type(exc).__name__.removesuffix("Error"))},
        )
    reason = {"reason": _snake(type(exc).__name__.removesuffix("Error"))}
    recipient = _first(_RECIPIENT, exc)
    if recipient is not None:
        return RecipientInvalid(recipient, details=reason)
    forbidden = _first(_FORBIDDEN, exc)
    if forbidden is not None:
        return PermanentProviderError(forbidden, details=reason)
    content = _first(_CONTENT, exc)
    if content is not None:
        return ContentRejected(content, details=reason)
    if isinstance(exc, _classes("ServerError", "TimedOutError", "InvalidBufferError")):
        return TransientProviderError(f"Telegram had a temporary problem: {_telegram_says(exc)}")
    if isinstance(exc, _classes("FloodError")):
        return ProviderRateLimited(f"Telegram throttles this account: {exc}", retry_after=60.0)
    if isinstance(exc, _classes("BadRequestError", "ForbiddenError", "NotFoundError")):
        return PermanentProviderError(f"Telegram rejected the request: {_telegram_says(exc)}")
    if isinstance(exc, ConnectionError | OSError | asyncio.IncompleteReadError):  # TimeoutError too
        return TransientProviderError(f"cannot reach Telegram: {type(exc).__name__}: {exc}".rstrip(": "))
    if isinstance(exc, _classes("RPCError")):
        code = getattr(exc, "code", None)
        if isinstance(code, int) and 400 <= code < 500 and code != 420:
            return PermanentProviderError(f"Telegram rejected the request: {_telegram_says(exc)}")
        return TransientProviderError(f"Telegram reported an error: {_telegram_says(exc)}")
    return ProviderError(f"unexpected error from the Telegram client: {type(exc).__name__}: {exc}")


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


@contextmanager
def translate_errors(*, messaging: bool = False) -> Iterator[None]:
    """Re-raise whatever the block raises as a chatgate error (ours pass through unchanged)."""
    try:
        yield
    except ChatgateError:
        raise
    except Exception as exc:
        raise map_error(exc, messaging=messaging) from exc


P = ParamSpec("P")
T = TypeVar("T")


def translated(
    *, messaging: bool = False
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """`translate_errors` around a whole async function."""

    def decorate(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with translate_errors(messaging=messaging):
                return await func(*args, **kwargs)

        return wrapper

    return decorate
