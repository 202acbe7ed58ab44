"""What every database's ingest store shares: a batch's rows as the event loop hands them over,
what the store answers, and the stored form of a request's headers.

The loop's share of a stored webhook is kept small: a row is a plain tuple of what the request
brought, and the store gives it its id and its stored form (on the SQLite and PostgreSQL paths,
in the writer process, beside the loop).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import orjson

from chatgate.domain.ids import inbound_job_id

# One raw event to store: (tenant_id, integration_id, kind, provider_event_id, headers, body).
# `headers` are the request's, all of them (`headers_to_keep` picks what is stored).
NewRaw = tuple[str, str, str, str, Mapping[str, str], bytes]

# Per row of a batch, in its order: the id the raw event was stored under, or None when it was
# stored already (a duplicate: same integration and provider event id).
StoredIds = list[str | None]
Committed = Callable[[StoredIds], None]  # told what a batch stored once it is committed

# Credentials are not kept (raw events are shown to admins): Telegram's secret header is one.
_KEEP_HEADERS_EXCLUDED = frozenset(
    {"authorization", "cookie", "proxy-authorization", "x-telegram-bot-api-secret-token"}
)


def headers_to_keep(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in _KEEP_HEADERS_EXCLUDED}


def headers_json(headers: dict[str, str]) -> str:
    """Compact JSON (orjson: a seventh of the standard encoder's time for a request's headers,
    in the ingest writer's per-event work)."""
    return orjson.dumps(headers).decode()


def stored_headers(headers: Mapping[str, str]) -> str:
    """The JSON a raw event's headers are stored as: the request's, credentials left out."""
    if type(headers) is not dict or not _KEEP_HEADERS_EXCLUDED.isdisjoint(headers):
        headers = headers_to_keep(headers)  # a plain dict, without the credentials
    return headers_json(headers)


__all__ = [
    "Committed",
    "NewRaw",
    "StoredIds",
    "headers_json",
    "headers_to_keep",
    "inbound_job_id",
    "stored_headers",
]
