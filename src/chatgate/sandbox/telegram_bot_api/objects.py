"""Result objects shaped as in the spec: User, ChatFullInfo, ChatMember*, WebhookInfo, File, media."""

from __future__ import annotations

import mimetypes
from typing import Any

from chatgate.sandbox.telegram_bot_api.spec import BotApiSpec, Primitive
from chatgate.sandbox.telegram_bot_api.state import Bot, ChatRecord, StoredFile, WebhookSettings

MEMBER_TYPES = {
    "creator": "ChatMemberOwner",
    "administrator": "ChatMemberAdministrator",
    "member": "ChatMemberMember",
    "restricted": "ChatMemberRestricted",
    "left": "ChatMemberLeft",
    "kicked": "ChatMemberBanned",
}
# Administrator rights that exist only for some chat types.
_CHANNEL_ONLY_RIGHTS = frozenset({"can_post_messages", "can_edit_messages", "can_manage_direct_messages"})
_GROUP_ONLY_RIGHTS = frozenset({"can_pin_messages", "can_manage_topics", "can_manage_tags"})
_FILE_DIRS = {
    "photo": ("photos", ".jpg"),
    "document": ("documents", ""),
    "audio": ("music", ".mp3"),
    "video": ("videos", ".mp4"),
    "voice": ("voice", ".oga"),
    "sticker": ("stickers", ".webp"),
    "animation": ("animations", ".mp4"),
}


def get_me(bot: Bot) -> dict[str, Any]:
    return {
        **bot.user(),
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


def user_object(user_id: int, given: dict[str, Any] | None = None) -> dict[str, Any]:
    user = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
    if given:
        user.update(given)
    return user


def chat_full_info(chat: ChatRecord) -> dict[str, Any]:
    info = chat.short()
    info.update(
        accent_color_id=chat.id % 7 if chat.id >= 0 else (-chat.id) % 7,
        max_reaction_count=11,
        accepted_gift_types={
            "unlimited_gifts": chat.type == "private",
            "limited_gifts": chat.type == "private",
            "unique_gifts": chat.type == "private",
            "premium_subscription": chat.type == "private",
            "gifts_from_channels": chat.type == "private",
        },
    )
    if chat.username:
        info["active_usernames"] = [chat.username]
    if chat.description and chat.type != "private":
        info["description"] = chat.description
    if chat.type in ("group", "supergroup"):
        info["permissions"] = {
            "can_send_messages": True,
            "can_send_audios": True,
            "can_send_documents": True,
            "can_send_photos": True,
            "can_send_videos": True,
            "can_send_video_notes": True,
            "can_send_voice_notes": True,
            "can_send_polls": True,
            "can_send_other_messages": True,
            "can_add_web_page_previews": True,
            "can_change_info": False,
            "can_invite_users": True,
            "can_pin_messages": False,
        }
    return info


def allowed_rights(spec: BotApiSpec, status: str, chat_type: str) -> dict[str, bool]:
    """The Boolean fields of the status's ChatMember type that apply to this chat type."""
    member_type = spec.types[MEMBER_TYPES[status]]
    names: dict[str, bool] = {}
    for name, field in member_type.fields.items():
        if field.types != (Primitive("Boolean"),) or name in ("can_be_edited", "is_member"):
            continue
        if chat_type == "channel" and name in _GROUP_ONLY_RIGHTS:
            continue
        if chat_type != "channel" and name in _CHANNEL_ONLY_RIGHTS:
            continue
        names[name] = field.required
    return names


def chat_member(
    spec: BotApiSpec,
    chat_type: str,
    user: dict[str, Any],
    status: str,
    rights: dict[str, bool],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ChatMember of the given status: required flags default to False, known rights applied."""
    member: dict[str, Any] = {"status": status, "user": user}
    fields = allowed_rights(spec, status, chat_type)
    for name, required in fields.items():
        if name in rights:
            member[name] = bool(rights[name])
        elif required:
            member[name] = (status == "restricted" and name.startswith("can_")) or (
                status == "administrator" and name == "can_manage_chat"
            )
    if status == "administrator":
        member["can_be_edited"] = False
        for name in ("can_post_messages", "can_edit_messages", "can_pin_messages", "can_manage_topics"):
            if name in fields:
                member.setdefault(name, False)
    if status == "restricted":
        member["is_member"] = True
    if status in ("restricted", "kicked"):
        member["until_date"] = 0
    for key, value in (extra or {}).items():
        if key in spec.types[MEMBER_TYPES[status]].fields and key not in member:
            member[key] = value
    return member


def webhook_info(
    webhook: WebhookSettings | None, pending: int, allowed: tuple[str, ...] | None
) -> dict[str, Any]:
    if webhook is None:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": pending}
    info: dict[str, Any] = {
        "url": webhook.url,
        "has_custom_certificate": webhook.has_custom_certificate,
        "pending_update_count": pending,
        "max_connections": webhook.max_connections,
    }
    if webhook.ip_address:
        info["ip_address"] = webhook.ip_address
    if webhook.last_error_date is not None:
        info["last_error_date"] = webhook.last_error_date
        info["last_error_message"] = webhook.last_error_message or ""
    if allowed is not None:
        info["allowed_updates"] = list(allowed)
    return info


def assign_file_path(stored: StoredFile, number: int) -> str:
    if stored.file_path is None:
        folder, default_ext = _FILE_DIRS.get(stored.kind or "document", ("documents", ""))
        ext = ""
        if stored.file_name and "." in stored.file_name:
            ext = "." + stored.file_name.rsplit(".", 1)[1][:8]
        elif stored.mime_type:
            ext = mimetypes.guess_extension(stored.mime_type) or ""
        stored.file_path = f"{folder}/file_{number}{ext or default_ext}"
    return stored.file_path


def file_object(stored: StoredFile) -> dict[str, Any]:
    result: dict[str, Any] = {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": stored.size,
    }
    if stored.file_path:
        result["file_path"] = stored.file_path
    return result


def media_object(kind: str, stored: StoredFile, params: dict[str, Any]) -> Any:
    """The Message field for a sent file: `photo` is an Array of PhotoSize, the rest one object."""
    base: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
    size = {"file_size": stored.size} if stored.size else {}
    named: dict[str, Any] = {}
    if stored.file_name:
        named["file_name"] = stored.file_name
    if stored.mime_type:
        named["mime_type"] = stored.mime_type
    if kind == "photo":
        return [{**base, "file_size": stored.size, "width": 1280, "height": 720}]
    if kind == "document":
        return {**base, **named, **size}
    if kind == "audio":
        extra = {k: params[k] for k in ("performer", "title") if k in params}
        return {**base, "duration": int(params.get("duration", 0)), **extra, **named, **size}
    if kind == "video":
        return {
            **base,
            "width": int(params.get("width", 1280)),
            "height": int(params.get("height", 720)),
            "duration": int(params.get("duration", 0)),
            **named,
            **size,
        }
    if kind == "voice":
        return {
            **base,
            "duration": int(params.get("duration", 0)),
            "mime_type": stored.mime_type or "audio/ogg",
            **size,
        }
    if kind == "sticker":
        sticker = {
            **base,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
        if params.get("emoji"):
            sticker["emoji"] = params["emoji"]
        return {**sticker, **size}
    return {**base, **named, **size}
