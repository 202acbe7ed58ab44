"""The webhook envelope: which numbers it concerns, splitting it per number, its dedupe key.

Every body is `{"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes":
[{"field": ..., "value": {"metadata": {"phone_number_id": ...}, ...}}]}]}`. One app receives
the webhooks of all its numbers, and one POST may batch changes for several of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from chatgate.domain.errors import InvalidInput

WABA_PREFIX = "waba:"  # split_by_phone_number's key for changes about no phone number
MAX_EVENT_ID = 191


def load_payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise InvalidInput(f"the WhatsApp webhook body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidInput("the WhatsApp webhook body must be a JSON object")
    entries = payload.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidInput("the WhatsApp webhook's 'entry' must be a list")
    return payload


def iter_changes(payload: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(entry, change) pairs, skipping anything that is not an object."""
    for entry in payload.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or []:
            if isinstance(change, dict):
                yield entry, change


def change_phone_number_id(change: dict[str, Any]) -> str | None:
    value = change.get("value")
    metadata = value.get("metadata") if isinstance(value, dict) else None
    number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    return str(number) if isinstance(number, str | int) and str(number) else None


def phone_number_ids(body: bytes) -> list[str]:
    """The business phone number ids the payload's changes belong to, in order, without repeats.

    Account and template updates carry no number (they concern the whole WABA) and add nothing.
    """
    found: list[str] = []
    for _, change in iter_changes(load_payload(body)):
        number = change_phone_number_id(change)
        if number is not None and number not in found:
            found.append(number)
    return found


def split_by_phone_number(body: bytes) -> dict[str, bytes]:
    """One valid webhook body per phone number id, each with only that number's changes.

    Changes about no number (account_update, message_template_* …) are grouped under
    `"waba:<entry id>"`, so a router can hand them to the integration whose `waba_id` matches.
    A body that concerns a single key is returned unchanged (same bytes). Parts are
    re-serialised, so the signature must be checked on the whole body before splitting.
    """
    payload = load_payload(body)
    parts: dict[str, list[dict[str, Any]]] = {}
    for entry, change in iter_changes(payload):
        key = change_phone_number_id(change) or f"{WABA_PREFIX}{entry.get('id', '')}"
        entries = parts.setdefault(key, [])
        if not entries or entries[-1].get("id") != entry.get("id"):
            entries.append({**{k: v for k, v in entry.items() if k != "changes"}, "changes": []})
        entries[-1]["changes"].append(change)
    if len(parts) <= 1:
        return dict.fromkeys(parts, body)
    envelope = {key: value for key, value in payload.items() if key != "entry"}
    return {
        key: json.dumps({**envelope, "entry": entries}, ensure_ascii=False, separators=(",", ":")).encode()
        for key, entries in parts.items()
    }


def _canonical_hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def event_key(body: bytes) -> str:
    """A stable dedupe key for one webhook delivery.

    Meta sends no delivery id, and it retries a failed delivery (for days) with the same
    content. Hashing the raw bytes would work for byte-identical retries, but content keys
    are what Meta documents as unique and survive any re-serialisation or re-batching:
    each message gives `m:<wamid>`, each status `s:<wamid>:<status>` (one message reports
    sent, delivered and read as separate events, and a retry repeats the pair), and any
    other change (account or template updates, calls…) the sha256 of its canonical JSON.
    A single item is used as is (readable in logs); several give the sha256 of their sorted
    set, so the order Meta batches them in does not matter.
    """
    keys: set[str] = set()
    for _, change in iter_changes(load_payload(body)):
        value = change.get("value")
        items = 0
        if isinstance(value, dict):
            for message in value.get("messages") or []:
                if isinstance(message, dict) and message.get("id"):
                    keys.add(f"m:{message['id']}")
                    items += 1
            for status in value.get("statuses") or []:
                if isinstance(status, dict) and status.get("id"):
                    keys.add(f"s:{status['id']}:{status.get('status', '')}")
                    items += 1
        if not items:
            keys.add(f"c:{_canonical_hash(change)}")
    if not keys:
        return f"wa:empty:{hashlib.sha256(body).hexdigest()}"
    if len(keys) == 1:
        (key,) = keys
        if len(key) + 3 <= MAX_EVENT_ID:
            return f"wa:{key}"
    return "wa:h:" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
