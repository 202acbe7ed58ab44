"""Bodies the simulated Graph API produces: webhooks shaped like Meta's, and Graph errors.

Webhook bodies follow the shape of the recorded fixtures (`tests/contracts/whatsapp-cloud-api/
webhooks`): `{"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes":
[{"value": {"messaging_product", "metadata", "contacts", "messages" | "statuses"}, "field":
"messages"}]}]}`, timestamps as strings, and serialised like Meta does (compact, non-ASCII as
`\\uXXXX` escapes), then signed with the number's app secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
CAPTIONED = ("image", "video", "document")
GRAPH_DOCS = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"


def digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def new_wamid() -> str:
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + secrets.token_bytes(24)).decode()


def new_numeric_id() -> str:
    return str(10**15 + secrets.randbelow(9 * 10**15))


def fbtrace_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(9)).decode()


def graph_error(
    code: int,
    message: str,
    *,
    details: str | None = None,
    error_type: str = "OAuthException",
    subcode: int | None = None,
) -> dict[str, Any]:
    """Graph's error body; WhatsApp errors carry `error_data.details`."""
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = fbtrace_id()
    return {"error": error}


def serialise(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()


def signature_headers(app_secret: str, body: bytes) -> dict[str, str]:
    key = app_secret.encode()
    return {
        "Content-Type": "application/json",
        "User-Agent": "facebookexternalua",
        "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
    }


def _user_ids(wa_id: str) -> dict[str, str]:
    seed = int.from_bytes(hashlib.sha256(wa_id.encode()).digest()[:8], "big")
    return {"user_id": f"US.{seed}", "parent_user_id": f"US.ENT.{seed // 3}"}


def contact(wa_id: str, name: str) -> dict[str, Any]:
    return {"profile": {"name": name}, "wa_id": wa_id, **_user_ids(wa_id)}


def envelope(
    *,
    waba_id: str,
    phone_number_id: str,
    display_phone_number: str,
    contacts: list[dict[str, Any]],
    items: tuple[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """One `messages` change: `items` is ("messages", [...]) or ("statuses", [...])."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": digits(display_phone_number),
            "phone_number_id": phone_number_id,
        },
        "contacts": contacts,
        items[0]: items[1],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": "messages"}]}],
    }


def inbound_message(
    spec: Mapping[str, Any],
    *,
    wa_id: str,
    message_id: str,
    timestamp: int,
    business_number: str,
    media: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A customer's message as it appears in `messages[]`, from a control-API description.

    `media` (for image, video, audio, document, sticker) is `{"id", "mime_type", "sha256"}`.
    Raises ValueError for a description it cannot turn into a message.
    """
    kind = str(spec.get("type") or "text")
    message: dict[str, Any] = {}
    if spec.get("context_id"):
        message["context"] = {"from": digits(business_number), "id": str(spec["context_id"])}
    elif spec.get("forwarded"):
        message["context"] = {"forwarded": True}
    message.update({"from": wa_id, "id": message_id, "timestamp": str(timestamp), "type": kind})
    if kind == "text":
        if not isinstance(spec.get("text"), str) or not spec["text"]:
            raise ValueError("a text message needs 'text'")
        message["text"] = {"body": spec["text"]}
    elif kind in MEDIA_TYPES:
        if media is None:
            raise ValueError(f"an {kind} message needs 'media'")
        described = spec.get("media") if isinstance(spec.get("media"), dict) else {}
        assert isinstance(described, dict)
        content: dict[str, Any] = {}
        if kind in CAPTIONED and described.get("caption"):
            content["caption"] = str(described["caption"])
        if kind == "document" and described.get("filename"):
            content["filename"] = str(described["filename"])
        content.update({"mime_type": media["mime_type"], "sha256": media["sha256"], "id": media["id"]})
        if kind == "audio":
            content["voice"] = bool(described.get("voice"))
        if kind == "sticker":
            content["animated"] = bool(described.get("animated"))
        message[kind] = content
    elif kind == "location":
        location = spec.get("location")
        if not isinstance(location, dict) or "latitude" not in location or "longitude" not in location:
            raise ValueError("a location message needs 'location' with latitude and longitude")
        message["location"] = dict(location)
    elif kind == "contacts":
        cards = spec.get("contacts")
        if not isinstance(cards, list) or not cards:
            raise ValueError("a contacts message needs a non-empty 'contacts' list")
        message["contacts"] = cards
    elif kind == "reaction":
        reaction = spec.get("reaction")
        if not isinstance(reaction, dict) or not reaction.get("message_id"):
            raise ValueError("a reaction needs 'reaction' with message_id (and emoji; empty removes it)")
        message["reaction"] = {
            "message_id": str(reaction["message_id"]),
            "emoji": str(reaction.get("emoji") or ""),
        }
    elif kind == "interactive":
        reply = spec.get("reply")
        if not isinstance(reply, dict) or reply.get("type") not in ("button_reply", "list_reply"):
            raise ValueError(
                "an interactive message needs 'reply' with type button_reply or list_reply, id and title"
            )
        answer = {"id": str(reply.get("id") or ""), "title": str(reply.get("title") or "")}
        if reply.get("description"):
            answer["description"] = str(reply["description"])
        message["interactive"] = {"type": reply["type"], reply["type"]: answer}
    elif kind == "button":
        button = spec.get("button")
        if not isinstance(button, dict) or not button.get("text"):
            raise ValueError("a button message needs 'button' with payload and text")
        message["button"] = {
            "payload": str(button.get("payload") or button["text"]),
            "text": str(button["text"]),
        }
    else:
        raise ValueError(f"message type {kind!r} cannot be simulated")
    return message


def status_item(
    *,
    message_id: str,
    status: str,
    recipient: str,
    timestamp: int,
    conversation_id: str,
    error: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One `statuses[]` item, shaped like the fixtures' sent/delivered/read/failed cases."""
    item: dict[str, Any] = {
        "id": message_id,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient,
    }
    if status == "failed":
        code = int((error or {}).get("code") or 131000)
        title = str((error or {}).get("title") or "Something went wrong")
        item["errors"] = [
            {
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": str((error or {}).get("details") or title)},
                "href": GRAPH_DOCS,
            }
        ]
        return item
    conversation: dict[str, Any] = {"id": conversation_id}
    if status == "sent":
        conversation["expiration_timestamp"] = str(timestamp + 24 * 3600)
    conversation["origin"] = {"type": "service"}
    item["conversation"] = conversation
    item["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
    return item
