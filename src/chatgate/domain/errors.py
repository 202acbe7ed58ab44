"""The one error tree. Every layer raises these; `api/errors.py` maps them to HTTP once.

Each error carries a stable machine `code` and a human message that says what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ChatgateError(Exception):
    """Base of every error chatgate raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})


class InvalidInput(ChatgateError):
    """The caller sent something we cannot accept (maps to 400/422)."""

    code = "invalid_input"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class Unauthenticated(ChatgateError):
    """No credentials, or credentials that do not prove who the caller is (401)."""

    code = "unauthenticated"


class PermissionDenied(ChatgateError):
    """The caller is known but may not do this (403)."""

    code = "permission_denied"


class NotFound(ChatgateError):
    """The object does not exist *for this tenant* (404; never 403, to hide other tenants)."""

    code = "not_found"


class Conflict(ChatgateError):
    """The request clashes with existing state (409)."""

    code = "conflict"


class RateLimited(ChatgateError):
    """Too many requests; `retry_after` seconds until the next one is allowed (429)."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


class ServiceUnavailable(ChatgateError):
    """A dependency we need right now is down (503)."""

    code = "service_unavailable"


class ConfigurationError(ChatgateError):
    """Settings are missing or inconsistent; raised at start, never per request."""

    code = "configuration_error"


class CryptoError(ChatgateError):
    """A secret could not be encrypted or decrypted (wrong key, tampered ciphertext)."""

    code = "crypto_error"


class ProviderError(ChatgateError):
    """Base for errors reported by a messaging provider."""

    code = "provider_error"


class TransientProviderError(ProviderError):
    """Worth retrying later (network trouble, 5xx, rate limits)."""

    code = "provider_transient"


class ProviderRateLimited(TransientProviderError):
    code = "provider_rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


class RunsElsewhere(TransientProviderError):
    """The provider session this needs is live in another worker (a Telegram account)."""

    code = "runs_elsewhere"


class PermanentProviderError(ProviderError):
    """Retrying will not help (bad recipient, rejected content, revoked credentials)."""

    code = "provider_permanent"


class RecipientInvalid(PermanentProviderError):
    code = "recipient_invalid"


class ContentRejected(PermanentProviderError):
    code = "content_rejected"


class AuthRevoked(PermanentProviderError):
    """The provider no longer accepts our credentials: the integration needs re-auth."""

    code = "auth_revoked"
