"""What a Telegram `Message` carries besides its text: files, places, contacts and the rest.

Part of `parsing` (see its docstring for the full mapping); split out to keep each module short.
Also home to the small, lenient JSON accessors both modules use: Telegram adds fields in every
Bot API version and old fixtures carry retired ones, so unknown fields are skipped and a field of
an unexpected type reads as absent. Only a missing field we cannot do without raises `Malformed`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatgate.domain.inbound import Attachment, Ignored


class Malformed(ValueError):
    """A Telegram object lacks a field we need; `parse_update` reports it as `Ignored`."""


def as_obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"'{where}' must be an object")
    return value


def opt_obj(container: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = container.get(key)
    return value if isinstance(value, dict) else None


def opt_int(container: dict[str, Any], key: str) -> int | None:
    value = container.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def req_int(container: dict[str, Any], key: str, where: str) -> int:
    value = opt_int(container, key)
    if value is None:
        raise Malformed(f"'{where}.{key}' must be an integer")
    return value


def opt_str(container: dict[str, Any], key: str) -> str | None:
    value = container.get(key)
    return value if isinstance(value, str) and value else None


def _pick(container: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The listed keys that are present and not null, unchanged (small, JSON-safe extras)."""
    return {key: container[key] for key in keys if container.get(key) is not None}


# field, attachment kind, mime type when Telegram sends none, fixed extra
_FILES: tuple[tuple[str, str, str | None, dict[str, Any]], ...] = (
    ("animation", "video", "video/mp4", {"animation": True}),
    ("video", "video", None, {}),
    ("video_note", "video", "video/mp4", {"video_note": True}),
    ("audio", "audio", None, {}),
    ("voice", "voice", "audio/ogg", {}),
    ("document", "document", None, {}),
)


def _file(raw: dict[str, Any], kind: str, mime: str | None, extra: dict[str, Any]) -> Attachment | None:
    file_id = opt_str(raw, "file_id")
    if file_id is None:
        return None
    return Attachment(
        kind=kind,
        mime_type=opt_str(raw, "mime_type") or mime,
        size=opt_int(raw, "file_size"),
        file_name=opt_str(raw, "file_name"),
        provider_file_id=file_id,
        extra={
            **extra,
            **_pick(raw, "file_unique_id", "width", "height", "length", "duration", "title", "performer"),
        },
    )


def largest_photo(sizes: Any) -> dict[str, Any] | None:
    """The PhotoSize with the most pixels (file size breaks ties); Telegram's order is not trusted."""
    candidates = (
        [s for s in sizes if isinstance(s, dict) and opt_str(s, "file_id")] if isinstance(sizes, list) else []
    )
    if not candidates:
        return None
    return max(
        candidates,
        key=lambda s: (
            (opt_int(s, "width") or 0) * (opt_int(s, "height") or 0),
            opt_int(s, "file_size") or 0,
        ),
    )


def _photo(message: dict[str, Any]) -> Attachment | None:
    size = largest_photo(message.get("photo"))
    if size is None:
        return None
    return _file(size, "image", "image/jpeg", {})


def _sticker(raw: dict[str, Any]) -> Attachment | None:
    if raw.get("is_video") is True:
        mime = "video/webm"
    elif raw.get("is_animated") is True:
        mime = "application/x-tgsticker"
    else:
        mime = "image/webp"
    extra = _pick(raw, "emoji", "set_name", "is_animated", "is_video")
    return _file(raw, "sticker", mime, extra)


def _place(message: dict[str, Any]) -> Attachment | None:
    venue = opt_obj(message, "venue")
    location = (opt_obj(venue, "location") if venue else None) or opt_obj(message, "location")
    if location is None:
        return None
    extra = _pick(location, "latitude", "longitude", "live_period", "horizontal_accuracy")
    if venue:
        extra.update(_pick(venue, "title", "address"))
    return Attachment(kind="location", extra=extra)


def _contact(raw: dict[str, Any]) -> Attachment:
    extra = _pick(raw, "phone_number", "first_name", "last_name", "vcard")
    user_id = opt_int(raw, "user_id")
    if user_id is not None:
        extra["user_id"] = str(user_id)
    return Attachment(kind="contact", extra=extra)


def _texts(items: Any, key: str = "text") -> list[str]:
    return (
        [i[key] for i in items if isinstance(i, dict) and isinstance(i.get(key), str)]
        if isinstance(items, list)
        else []
    )


def _chat_id(story: dict[str, Any]) -> str | None:
    chat_id = opt_int(opt_obj(story, "chat") or {}, "id")
    return None if chat_id is None else str(chat_id)


# Content a person sends that has no attachment kind of its own: kept as kind "other".
_OTHER: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "dice": lambda d: _pick(d, "emoji", "value"),
    "poll": lambda p: {
        **_pick(p, "id", "question"),
        "poll_type": p.get("type"),
        "options": _texts(p.get("options")),
    },
    "game": lambda g: _pick(g, "title", "description"),
    "checklist": lambda c: {**_pick(c, "title"), "tasks": _texts(c.get("tasks"))},
    "story": lambda s: {"story_id": s.get("id"), "chat_id": _chat_id(s)},
    "invoice": lambda i: _pick(i, "title", "description", "currency", "total_amount"),
    "rich_message": lambda r: {"blocks": len(r["blocks"]) if isinstance(r.get("blocks"), list) else 0},
    "paid_media": lambda p: {
        **_pick(p, "star_count"),
        "count": len(p["paid_media"]) if isinstance(p.get("paid_media"), list) else 0,
    },
}


def message_attachments(message: dict[str, Any]) -> tuple[Attachment, ...]:
    result: list[Attachment | None] = [_photo(message)]
    for name, kind, mime, extra in _FILES:
        raw = opt_obj(message, name)
        if raw is not None and not (name == "document" and "animation" in message):
            result.append(_file(raw, kind, mime, extra))  # an animation repeats itself as a document
    sticker = opt_obj(message, "sticker")
    if sticker is not None:
        result.append(_sticker(sticker))
    result.append(_place(message))  # a venue repeats its location in `location`: one attachment
    contact = opt_obj(message, "contact")
    if contact is not None:
        result.append(_contact(contact))
    for name, describe in _OTHER.items():
        raw = opt_obj(message, name)
        if raw is not None:
            result.append(Attachment(kind="other", extra={**describe(raw), "type": name}))
    return tuple(a for a in result if a is not None)


_SERVICE_FIELDS = frozenset(
    """new_chat_members left_chat_member chat_owner_left chat_owner_changed new_chat_title new_chat_photo
    delete_chat_photo group_chat_created supergroup_chat_created channel_chat_created
    message_auto_delete_timer_changed migrate_to_chat_id migrate_from_chat_id pinned_message
    successful_payment refunded_payment users_shared user_shared chat_shared gift unique_gift
    gift_upgrade_sent connected_website write_access_allowed passport_data proximity_alert_triggered
    boost_added chat_background_set checklist_tasks_done checklist_tasks_added
    direct_message_price_changed paid_message_price_changed forum_topic_created forum_topic_edited
    forum_topic_closed forum_topic_reopened general_forum_topic_hidden general_forum_topic_unhidden
    giveaway_created giveaway giveaway_winners giveaway_completed managed_bot_created
    poll_option_added poll_option_deleted suggested_post_approved suggested_post_approval_failed
    suggested_post_declined suggested_post_paid suggested_post_refunded video_chat_scheduled
    video_chat_started video_chat_ended video_chat_participants_invited web_app_data
    community_chat_added community_chat_removed""".split()  # noqa: SIM905
)
# Message fields that describe the envelope, not the content (left out of "unknown content" reasons).
_ENVELOPE = frozenset(
    """message_id message_thread_id direct_messages_topic from sender_chat sender_boost_count
    sender_business_bot sender_tag date guest_query_id business_connection_id chat forward_origin
    is_topic_message is_automatic_forward reply_to_message external_reply quote reply_to_story
    reply_to_checklist_task_id reply_to_poll_option_id via_bot guest_bot_caller_user
    guest_bot_caller_chat edit_date has_protected_content is_from_offline is_paid_post
    media_group_id author_signature paid_star_count text entities link_preview_options
    suggested_post_info effect_id caption caption_entities show_caption_above_media
    has_media_spoiler reply_markup""".split()  # noqa: SIM905
)


def no_content(kind: str, message_ref: str, message: dict[str, Any]) -> Ignored:
    """Why a message without text or attachments is skipped: a service message, or unknown content."""
    fields = sorted(k for k in message if k not in _ENVELOPE and message[k] is not None)
    service = [f for f in fields if f in _SERVICE_FIELDS]
    if not service:
        listed = ", ".join(fields) or "none"
        return Ignored(f"{kind} {message_ref} has no text or content we understand (fields: {listed})")
    reason = (
        f"{kind} {message_ref} is a service message ({', '.join(service)}); service messages are not handled"
    )
    chat_id = message_ref.split(":", 1)[0]
    if opt_int(message, "migrate_to_chat_id") is not None:
        reason += f"; group {chat_id} migrated to supergroup {message['migrate_to_chat_id']} (no event type for migrations yet)"
    if opt_int(message, "migrate_from_chat_id") is not None:
        reason += f"; supergroup {chat_id} migrated from group {message['migrate_from_chat_id']} (no event type for migrations yet)"
    return Ignored(reason)
