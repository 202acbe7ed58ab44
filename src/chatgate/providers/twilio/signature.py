"""Twilio's webhook signature, `X-Twilio-Signature` (pure functions).

The algorithm (https://www.twilio.com/docs/usage/webhooks/webhooks-security), as implemented by
twilio-python's `RequestValidator`, which the tests use as the oracle:

1. Start from the full URL Twilio requested: scheme, host, optional port, path and query string.
2. Form-encoded POST: append every parameter's name followed by its value, names sorted; a name
   sent several times contributes its distinct values, sorted.
   JSON body: Twilio adds `bodySHA256=<hex sha256 of the body>` to the URL's query and signs the
   URL alone; the receiver checks the body against that hash.
3. HMAC-SHA1 keyed with the account's Auth Token (or HMAC-SHA256 with a SharedKey secret when the
   request says so in `X-Twilio-Webhooks-Signature-Settings`), base64.

Twilio is inconsistent about ports, so a signature computed over the URL with or without the
port (the default :443/:80 added when the URL has none) is accepted, as twilio-python does.

The URL is the *public* one Twilio called, not what the app sees behind a proxy: it is rebuilt
from the configured public base URL (which may carry a path prefix) or, when none is configured,
from `X-Forwarded-Proto` / `X-Forwarded-Host`, falling back to the request's own URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import ParseResult, parse_qs, parse_qsl, urlparse, urlsplit

from chatgate.domain.errors import Unauthenticated

SIGNATURE_HEADER = "x-twilio-signature"
SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
HMAC_SHA1 = "HMAC_SHA1"
HMAC_SHA256 = "HMAC_SHA256"
BODY_HASH_PARAM = "bodySHA256"
_DIGESTS = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}
_FORM_TYPE = "application/x-www-form-urlencoded"

Params = Mapping[str, str] | Iterable[tuple[str, str]]


def _pairs(params: Params) -> Iterable[tuple[str, str]]:
    return params.items() if isinstance(params, Mapping) else params


def string_to_sign(url: str, params: Params = ()) -> str:
    """The URL followed by name+value of each parameter, sorted (distinct values per name)."""
    grouped: dict[str, set[str]] = {}
    for name, value in _pairs(params):
        grouped.setdefault(name, set()).add(value)
    parts = [url]
    for name in sorted(grouped):
        parts.extend(name + value for value in sorted(grouped[name]))
    return "".join(parts)


def compute_signature(secret: str, url: str, params: Params = (), *, algorithm: str = HMAC_SHA1) -> str:
    """The `X-Twilio-Signature` value Twilio sends for this URL and these POST parameters."""
    digest = _DIGESTS.get(algorithm.upper())
    if digest is None:
        raise ValueError(f"unsupported Twilio signature algorithm {algorithm!r}")
    mac = hmac.new(secret.encode(), string_to_sign(url, params).encode(), digest)
    return base64.b64encode(mac.digest()).decode()


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _host_part(netloc: str) -> str:
    """The netloc without its port (IPv6 literals and user info kept intact)."""
    head, _, hostport = netloc.rpartition("@")
    ipv6 = hostport.startswith("[")
    host = hostport[: hostport.find("]") + 1] if ipv6 else hostport.split(":", 1)[0]
    return f"{head}@{host}" if head else host


def url_variants(url: str) -> tuple[str, str]:
    """The URL without its port and with it (the scheme's default port added when absent)."""
    parsed: ParseResult = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        port = None
    without = parsed._replace(netloc=_host_part(parsed.netloc)).geturl() if port else parsed.geturl()
    if port:
        with_port = parsed.geturl()
    else:
        default = 443 if parsed.scheme == "https" else 80
        with_port = parsed._replace(netloc=f"{parsed.netloc}:{default}").geturl()
    return without, with_port


def signature_algorithm(settings_header: str | None) -> str:
    """The algorithm named in `X-Twilio-Webhooks-Signature-Settings` (`key=…,algorithm=…`);
    HMAC_SHA1 (the Auth Token signature) when the header is absent or names none."""
    for part in (settings_header or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return HMAC_SHA1


def form_params(body: bytes) -> list[tuple[str, str]]:
    """A form-encoded body's parameters in order, blank values kept (Twilio signs them too)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("the body is not UTF-8") from exc
    return parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")


def signed_params(url: str, body: bytes, content_type: str | None) -> list[tuple[str, str]]:
    """The parameters the signature covers; Unauthenticated when the body is not covered.

    With `bodySHA256` in the URL the body must hash to it and only the URL is signed; otherwise
    the body must be form-encoded (or empty) and its parameters are signed.
    """
    query = parse_qs(urlparse(url).query, keep_blank_values=True)
    claimed = query.get(BODY_HASH_PARAM)
    if claimed:
        if not hmac.compare_digest(body_sha256(body).encode(), claimed[0].encode()):
            raise Unauthenticated("the request body does not match the bodySHA256 in the signed URL")
        return []
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in ("", _FORM_TYPE) or (not media_type and body):
        raise Unauthenticated(
            "a Twilio webhook with a non-form body must carry bodySHA256 in its URL; "
            "this body would not be covered by the signature"
        )
    try:
        return form_params(body)
    except ValueError as exc:
        raise Unauthenticated(f"the form-encoded body cannot be read: {exc}") from exc


def is_valid(secret: str, url: str, params: Params, signature: str, *, algorithm: str = HMAC_SHA1) -> bool:
    """Constant-time check of `signature` against the URL with and without its port."""
    given = signature.encode()
    pairs = list(_pairs(params))
    matched = False
    for candidate in url_variants(url):
        expected = compute_signature(secret, candidate, pairs, algorithm=algorithm).encode()
        matched |= hmac.compare_digest(expected, given)
    return matched


def verify(
    *,
    secret: str | None,
    url: str,
    body: bytes,
    content_type: str | None,
    signature: str | None,
    algorithm: str = HMAC_SHA1,
) -> None:
    """Fail closed: Unauthenticated unless `signature` is Twilio's for this URL and body."""
    if not signature:
        raise Unauthenticated("the X-Twilio-Signature header is missing")
    if not secret:
        raise Unauthenticated("this Twilio integration has no secret to verify webhook signatures with")
    if algorithm.upper() not in _DIGESTS:
        raise Unauthenticated(f"the Twilio signature algorithm {algorithm!r} is not supported")
    params = signed_params(url, body, content_type)
    if not is_valid(secret, url, params, signature, algorithm=algorithm):
        raise Unauthenticated(
            "the X-Twilio-Signature does not match: wrong auth token, a modified request, "
            "or a public URL different from the one configured at Twilio"
        )


def _first(value: str | None) -> str | None:
    if not value:
        return None
    first = value.split(",", 1)[0].strip()
    return first or None


def public_url(request_url: str, headers: Mapping[str, str], public_base_url: str | None) -> str:
    """The URL Twilio requested, as seen from outside (headers lower-cased).

    A configured public base URL wins; its path prefix is prepended unless the request path
    already starts with it (a proxy that forwards the prefix). Without one, the first value of
    `X-Forwarded-Proto` / `X-Forwarded-Host` replaces the request's scheme / host.
    """
    parts = urlsplit(request_url)
    path = parts.path or "/"
    suffix = path + (f"?{parts.query}" if parts.query else "")
    if public_base_url:
        base = urlsplit(public_base_url.rstrip("/"))
        prefix = base.path
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            return f"{base.scheme}://{base.netloc}{suffix}"
        return f"{base.scheme}://{base.netloc}{prefix}{suffix}"
    scheme = _first(headers.get("x-forwarded-proto")) or parts.scheme
    host = _first(headers.get("x-forwarded-host")) or parts.netloc
    return f"{scheme.lower()}://{host}{suffix}"
