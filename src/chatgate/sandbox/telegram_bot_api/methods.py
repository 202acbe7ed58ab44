"""What the Bot API methods our gateway uses do, on validated parameters (see validation.py).

Each handler returns `(result, description)`; the description is the optional text Telegram adds
to some successful answers ("Webhook was set"). Errors are raised as BotApiError with Telegram's
wording. Valid calls to any other method answer `true`.
"""

from __future__ import annotations

import copy
import mimetypes
import posixpath
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from chatgate.sandbox.telegram_bot_api import formatting, objects, updates
from chatgate.sandbox.telegram_bot_api.delivery import WebhookDelivery
from chatgate.sandbox.telegram_bot_api.errors import (
    CHAT_NOT_FOUND,
    WRONG_FILE_ID,
    WRONG_FILE_IDENTIFIER,
    BotApiError,
    bad_request,
    forbidden,
)
from chatgate.sandbox.telegram_bot_api.spec import BotApiSpec
from chatgate.sandbox.telegram_bot_api.state import (
    Bot,
    ChatRecord,
    SandboxState,
    StoredFile,
    StoredMessage,
    WebhookSettings,
)
from chatgate.sandbox.telegram_bot_api.validation import UploadedFile

MAX_TEXT = 4096
MAX_CAPTION = 1024
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile serves files up to 20 MB
UPLOAD_LIMIT = 50 * 1024 * 1024
URL_FETCH_LIMIT = 20 * 1024 * 1024
WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# method -> (file parameter, right needed when the bot is restricted, what Telegram calls it)
MEDIA_METHODS = {
    "sendPhoto": ("photo", "can_send_photos", "photos"),
    "sendDocument": ("document", "can_send_documents", "documents"),
    "sendAudio": ("audio", "can_send_audios", "music"),
    "sendVideo": ("video", "can_send_videos", "videos"),
    "sendVoice": ("voice", "can_send_voice_notes", "voice notes"),
    "sendSticker": ("sticker", "can_send_other_messages", "stickers"),
}
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_CHAT_KIND = {"group": "group chat", "supergroup": "supergroup chat", "channel": "channel chat"}
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same "
    "as a current content and reply markup of the message"
)

Handler = Callable[[Bot, dict[str, Any]], Awaitable[tuple[Any, str | None]]]


@dataclass(frozen=True, slots=True)
class MethodOptions:
    clock: Callable[[], float]
    history_limit: int
    fetch_url_files: bool
    strict_webhook_urls: bool


def _inline_markup(markup: Any) -> dict[str, Any] | None:
    """The markup a Message carries: only a non-empty inline keyboard."""
    if isinstance(markup, dict) and markup.get("inline_keyboard"):
        return markup
    return None


def _check_buttons(markup: Any) -> None:
    if not isinstance(markup, dict) or "inline_keyboard" not in markup:
        return
    for row in markup["inline_keyboard"]:
        for button in row:
            actions = [a for a in _BUTTON_ACTIONS if a in button]
            if not actions:
                raise bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                )
            data = button.get("callback_data")
            if isinstance(data, str) and not 1 <= len(data.encode()) <= 64:
                raise bad_request("BUTTON_DATA_INVALID")


class BotApiMethods:
    def __init__(
        self, spec: BotApiSpec, state: SandboxState, delivery: WebhookDelivery, options: MethodOptions
    ) -> None:
        self.spec = spec
        self.state = state
        self.delivery = delivery
        self.options = options
        self._handlers: dict[str, Handler] = {
            "getMe": self.get_me,
            "logOut": self.log_out,
            "close": self.close,
            "setWebhook": self.set_webhook,
            "deleteWebhook": self.delete_webhook,
            "getWebhookInfo": self.get_webhook_info,
            "getUpdates": self.get_updates,
            "sendMessage": self.send_message,
            "sendChatAction": self.send_chat_action,
            "editMessageText": self.edit_message_text,
            "editMessageReplyMarkup": self.edit_message_reply_markup,
            "deleteMessage": self.delete_message,
            "answerCallbackQuery": self.answer_callback_query,
            "getFile": self.get_file,
            "getChat": self.get_chat,
            "getChatMember": self.get_chat_member,
            "getChatAdministrators": self.get_chat_administrators,
            "getChatMemberCount": self.get_chat_member_count,
        }
        for method in MEDIA_METHODS:
            self._handlers[method] = self._media_handler(method)

    @property
    def implemented(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def call(self, bot: Bot, method: str, params: dict[str, Any]) -> tuple[Any, str | None]:
        handler = self._handlers.get(method)
        if handler is None:
            return True, None
        return await handler(bot, params)

    def _now(self) -> int:
        return int(self.options.clock())

    # -- chats --------------------------------------------------------------------------------

    def chat(self, bot: Bot, chat_id: int | str) -> ChatRecord:
        """The chat the bot knows by that id or @username; migrated groups answer with their new id."""
        chat = bot.find_chat(chat_id)
        if chat is None:
            raise bad_request(CHAT_NOT_FOUND)
        if chat.migrated_to is not None:
            raise bad_request(
                "group chat was upgraded to a supergroup chat", {"migrate_to_chat_id": chat.migrated_to}
            )
        return chat

    def member_chat(self, bot: Bot, chat_id: int | str) -> ChatRecord:
        """A chat the bot can act in: not blocked by the user, not kicked, not left."""
        chat = self.chat(bot, chat_id)
        if chat.type == "private":
            if chat.blocked or chat.status == "kicked":
                raise forbidden("bot was blocked by the user")
            return chat
        where = _CHAT_KIND[chat.type]
        if chat.status == "kicked":
            raise forbidden(f"bot was kicked from the {where}")
        if chat.status == "left":
            raise forbidden(f"bot is not a member of the {where}")
        return chat

    def sendable_chat(self, bot: Bot, chat_id: int | str, right: str | None, what: str) -> ChatRecord:
        chat = self.member_chat(bot, chat_id)
        if chat.type == "channel":
            if chat.status == "creator":
                return chat
            if chat.status != "administrator" or not chat.rights.get("can_post_messages"):
                raise bad_request("need administrator rights in the channel chat")
        elif chat.status == "restricted" and right is not None and not chat.rights.get(right, True):
            raise bad_request(f"not enough rights to send {what} to the chat")
        return chat

    # -- account and webhook ------------------------------------------------------------------

    async def get_me(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        return objects.get_me(bot), None

    async def log_out(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        return True, None

    async def close(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        return True, None

    def _allowed_updates(self, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        for value in values:
            if value not in self.spec.update_types:
                raise bad_request(f'unknown update type "{value}" in allowed_updates')
        return values

    def _check_webhook_url(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise bad_request("bad webhook: Failed to resolve host: Name or service not known") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if self.options.strict_webhook_urls:
            if parts.scheme != "https":
                raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
            if (port or 443) not in WEBHOOK_PORTS:
                raise bad_request("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")

    async def set_webhook(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        url = str(params.get("url", ""))
        if not url:
            return await self.delete_webhook(bot, params)
        self._check_webhook_url(url)
        secret = params.get("secret_token") or None
        if secret is not None and not _SECRET_TOKEN.fullmatch(secret):
            raise bad_request("secret token contains unallowed characters")
        allowed = self._allowed_updates(params.get("allowed_updates"))
        settings = WebhookSettings(
            url=url,
            secret_token=secret,
            max_connections=min(max(int(params.get("max_connections", 40)), 1), 100),
            ip_address=params.get("ip_address"),
            has_custom_certificate=isinstance(params.get("certificate"), UploadedFile),
        )
        old = bot.webhook
        unchanged = old is not None and (
            old.url,
            old.secret_token,
            old.max_connections,
            old.ip_address,
            old.has_custom_certificate,
        ) == (url, secret, settings.max_connections, settings.ip_address, settings.has_custom_certificate)
        if old is not None and old.url == url:
            settings.last_error_date, settings.last_error_message = (
                old.last_error_date,
                old.last_error_message,
            )
        if allowed is not None:
            unchanged = unchanged and bot.allowed_updates == (tuple(allowed) or None)
            bot.allowed_updates = tuple(allowed) or None
        if params.get("drop_pending_updates") and bot.updates:
            bot.updates.clear()
        if bot.poll is not None:
            bot.poll.terminate("setWebhook request")
            bot.poll = None
        if unchanged and not params.get("drop_pending_updates"):
            self.delivery.kick(bot)
            return True, "Webhook is already set"
        bot.webhook = settings
        self.delivery.kick(bot)
        return True, "Webhook was set"

    async def delete_webhook(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        if params.get("drop_pending_updates") and bot.updates:
            bot.updates.clear()
        had = bot.webhook is not None
        bot.webhook = None
        return True, ("Webhook was deleted" if had else "Webhook is already deleted")

    async def get_webhook_info(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        return objects.webhook_info(bot.webhook, bot.pending_count(), bot.allowed_updates), None

    async def get_updates(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        found = await updates.get_updates(
            bot,
            offset=params.get("offset"),
            limit=params.get("limit"),
            poll_seconds=params.get("timeout"),
            allowed=self._allowed_updates(params.get("allowed_updates")),
        )
        return found, None

    # -- sending ------------------------------------------------------------------------------

    def _new_message(self, bot: Bot, chat: ChatRecord, params: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"message_id": chat.take_message_id()}
        if chat.type == "channel":
            message["sender_chat"] = chat.short()
        else:
            message["from"] = bot.user()
        message["date"] = self._now()
        message["chat"] = chat.short()
        if chat.is_forum and params.get("message_thread_id"):
            message["message_thread_id"] = params["message_thread_id"]
            message["is_topic_message"] = True
        return message

    def _formatted(
        self, params: dict[str, Any], field: str, entities_field: str, parse_mode_field: str = "parse_mode"
    ) -> tuple[str, list[dict[str, Any]]]:
        raw = str(params.get(field, ""))
        if params.get(entities_field) is not None:
            return raw, list(params[entities_field])
        return formatting.parse(raw, params.get(parse_mode_field))

    def _text(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        text, entities = self._formatted(params, "text", "entities")
        if not text.strip():
            raise bad_request("message text is empty")
        if formatting.utf16_len(text) > MAX_TEXT:
            raise bad_request("message is too long")
        return text, entities

    def _reply(self, chat: ChatRecord, params: dict[str, Any], message: dict[str, Any]) -> None:
        reply = params.get("reply_parameters")
        if reply is not None:
            message_id = reply["message_id"]
            allow = bool(reply.get("allow_sending_without_reply"))
            other = reply.get("chat_id")
            if other is not None and str(other) not in (str(chat.id), f"@{chat.username}"):
                if allow:
                    return
                raise bad_request("message to be replied not found")
        elif params.get("reply_to_message_id") is not None:
            message_id = params["reply_to_message_id"]
            allow = bool(params.get("allow_sending_without_reply"))
        else:
            return
        stored = chat.messages.get(message_id)
        if stored is None or stored.deleted:
            if allow:
                return
            raise bad_request("message to be replied not found")
        original = copy.deepcopy(stored.message)
        original.pop("reply_to_message", None)
        message["reply_to_message"] = original
        quote = reply.get("quote") if reply is not None else None
        if quote:
            source = str(original.get("text") or original.get("caption") or "")
            position = source.find(quote)
            if position < 0:
                raise bad_request("quote not found")
            message["quote"] = {
                "text": quote,
                "position": formatting.utf16_len(source[:position]),
                "is_manual": True,
            }

    def _finish(
        self, chat: ChatRecord, params: dict[str, Any], message: dict[str, Any]
    ) -> tuple[Any, str | None]:
        _check_buttons(params.get("reply_markup"))
        self._reply(chat, params, message)
        markup = _inline_markup(params.get("reply_markup"))
        if markup is not None:
            message["reply_markup"] = markup
        chat.store(message, outgoing=True, limit=self.options.history_limit)
        return copy.deepcopy(message), None

    async def send_message(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat = self.sendable_chat(bot, params["chat_id"], "can_send_messages", "text messages")
        text, entities = self._text(params)
        message = self._new_message(bot, chat, params)
        message["text"] = text
        if entities:
            message["entities"] = entities
        if params.get("link_preview_options"):
            message["link_preview_options"] = params["link_preview_options"]
        return self._finish(chat, params, message)

    def _media_handler(self, method: str) -> Handler:
        async def handler(bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
            return await self.send_media(bot, method, params)

        return handler

    async def send_media(self, bot: Bot, method: str, params: dict[str, Any]) -> tuple[Any, str | None]:
        field, right, what = MEDIA_METHODS[method]
        chat = self.sendable_chat(bot, params["chat_id"], right, what)
        caption, caption_entities = self._formatted(params, "caption", "caption_entities")
        if formatting.utf16_len(caption) > MAX_CAPTION:
            raise bad_request("message caption is too long")
        stored = await self.input_file(bot, params[field], field)
        message = self._new_message(bot, chat, params)
        message[field] = objects.media_object(field, stored, params)
        if caption:
            message["caption"] = caption
            if caption_entities:
                message["caption_entities"] = caption_entities
            if params.get("show_caption_above_media"):
                message["show_caption_above_media"] = True
        if params.get("has_spoiler"):
            message["has_media_spoiler"] = True
        return self._finish(chat, params, message)

    async def input_file(self, bot: Bot, value: Any, kind: str) -> StoredFile:
        """An uploaded file, a URL Telegram would fetch, or a file_id this bot may reuse."""
        if isinstance(value, UploadedFile):
            if value.size > UPLOAD_LIMIT:
                raise BotApiError(413, "Request Entity Too Large")
            if value.size == 0:
                raise bad_request("file must be non-empty")
            return self.state.add_file(
                bot.id,
                kind=kind,
                data=value.data,
                file_name=None if kind == "photo" else value.file_name,
                mime_type=value.content_type or mimetypes.guess_type(value.file_name)[0],
            )
        text = str(value)
        if text.startswith(("http://", "https://")):
            data, mime_type = await self._fetch(text, kind) if self.options.fetch_url_files else (b"", None)
            name = posixpath.basename(urlsplit(text).path) or None
            return self.state.add_file(
                bot.id,
                kind=kind,
                data=data,
                file_name=None if kind == "photo" else name,
                mime_type=mime_type or (mimetypes.guess_type(name)[0] if name else None),
                source_url=text,
            )
        stored = self.state.files.get(text)
        if stored is None or stored.bot_id != bot.id:
            raise bad_request(WRONG_FILE_IDENTIFIER)
        if stored.kind is not None and stored.kind != kind:
            raise bad_request("type of file mismatch")
        return stored

    async def _fetch(self, url: str, kind: str) -> tuple[bytes, str | None]:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(url, timeout=aiohttp.ClientTimeout(total=10), allow_redirects=True) as response,
            ):
                if response.status != 200:
                    raise bad_request("failed to get HTTP URL content")
                data = await response.content.read(URL_FETCH_LIMIT + 1)
                content_type = response.headers.get("Content-Type", "").split(";")[0].strip() or None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            raise bad_request("failed to get HTTP URL content") from None
        if len(data) > URL_FETCH_LIMIT or not data:
            raise bad_request("failed to get HTTP URL content")
        if kind == "photo" and not (content_type or "").startswith("image/"):
            raise bad_request("wrong type of the web page content")
        return data, content_type

    async def send_chat_action(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        self.sendable_chat(bot, params["chat_id"], None, "")
        if params["action"] not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True, None

    # -- editing and deleting ------------------------------------------------------------------

    def _editable(self, bot: Bot, params: dict[str, Any]) -> tuple[ChatRecord, StoredMessage] | None:
        if params.get("inline_message_id"):
            return None
        if params.get("chat_id") is None:
            raise bad_request("chat_id is empty")
        if params.get("message_id") is None:
            raise bad_request("message identifier is not specified")
        chat = self.member_chat(bot, params["chat_id"])
        stored = chat.messages.get(params["message_id"])
        if stored is None or stored.deleted:
            raise bad_request("message to edit not found")
        if not stored.outgoing and not (chat.type == "channel" and chat.rights.get("can_edit_messages")):
            raise bad_request("message can't be edited")
        return chat, stored

    async def edit_message_text(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        target = self._editable(bot, params)
        if params.get("rich_message") is not None and "text" not in params:
            raise bad_request("the sandbox does not implement rich_message")
        if "text" not in params:
            raise bad_request("message text is empty")
        _check_buttons(params.get("reply_markup"))
        text, entities = self._text(params)
        if target is None:
            return True, None
        _, stored = target
        message = stored.message
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        markup = _inline_markup(params.get("reply_markup"))
        if (message["text"], message.get("entities", []), message.get("reply_markup")) == (
            text,
            entities,
            markup,
        ):
            raise bad_request(NOT_MODIFIED)
        message["text"] = text
        _put(message, "entities", entities or None)
        _put(message, "reply_markup", markup)
        message["edit_date"] = self._now()
        return copy.deepcopy(message), None

    async def edit_message_reply_markup(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        target = self._editable(bot, params)
        _check_buttons(params.get("reply_markup"))
        if target is None:
            return True, None
        _, stored = target
        message = stored.message
        markup = _inline_markup(params.get("reply_markup"))
        if message.get("reply_markup") == markup:
            raise bad_request(NOT_MODIFIED)
        _put(message, "reply_markup", markup)
        message["edit_date"] = self._now()
        return copy.deepcopy(message), None

    async def delete_message(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat = self.member_chat(bot, params["chat_id"])
        stored = chat.messages.get(params["message_id"])
        if stored is None or stored.deleted:
            raise bad_request("message to delete not found")
        may_delete = (
            stored.outgoing
            or chat.type == "private"
            or chat.status == "creator"
            or (chat.status == "administrator" and chat.rights.get("can_delete_messages", False))
        )
        if not may_delete:
            raise bad_request("message can't be deleted")
        stored.deleted = True
        return True, None

    async def answer_callback_query(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        queries = bot.callback_queries or {}
        query_id = params["callback_query_id"]
        if queries.get(query_id) is not False:
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        queries[query_id] = True
        return True, None

    # -- files --------------------------------------------------------------------------------

    async def get_file(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        stored = self.state.files.get(params["file_id"])
        if stored is None or stored.bot_id != bot.id:
            raise bad_request(WRONG_FILE_ID)
        if stored.size > DOWNLOAD_LIMIT:
            raise bad_request("file is too big")
        self.state.by_path[objects.assign_file_path(stored, self.state.file_number())] = stored
        return objects.file_object(stored), None

    # -- chats and members --------------------------------------------------------------------

    async def get_chat(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        return objects.chat_full_info(self.chat(bot, params["chat_id"])), None

    def _member(self, bot: Bot, chat: ChatRecord, user_id: int) -> dict[str, Any]:
        if user_id == bot.id:
            return objects.chat_member(self.spec, chat.type, bot.user(), chat.status, chat.rights)
        record = chat.members.get(user_id)
        if record is not None:
            user = objects.user_object(user_id, record.get("user"))
            return objects.chat_member(
                self.spec, chat.type, user, record["status"], record.get("rights", {}), record.get("extra")
            )
        if chat.type == "private" and user_id == chat.id:
            given = {
                k: v
                for k, v in (
                    ("first_name", chat.first_name),
                    ("last_name", chat.last_name),
                    ("username", chat.username),
                )
                if v
            }
            return objects.chat_member(
                self.spec, chat.type, objects.user_object(user_id, given), "member", {}
            )
        seen = (bot.users or {}).get(user_id)
        if seen is not None:
            return objects.chat_member(self.spec, chat.type, objects.user_object(user_id, seen), "left", {})
        raise bad_request("user not found")

    async def get_chat_member(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat = self.chat(bot, params["chat_id"])
        return self._member(bot, chat, params["user_id"]), None

    async def get_chat_administrators(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat = self.chat(bot, params["chat_id"])
        if chat.type == "private":
            raise bad_request("there are no administrators in the private chat")
        if chat.type == "channel" and chat.status not in ("creator", "administrator"):
            raise bad_request("member list is inaccessible")
        admins = [
            self._member(bot, chat, user_id)
            for user_id, record in chat.members.items()
            if record.get("status") in ("creator", "administrator")
        ]
        if chat.status in ("creator", "administrator"):
            admins.append(self._member(bot, chat, bot.id))
        return admins, None

    async def get_chat_member_count(self, bot: Bot, params: dict[str, Any]) -> tuple[Any, str | None]:
        chat = self.chat(bot, params["chat_id"])
        if chat.type == "private":
            return 2, None
        present = sum(1 for r in chat.members.values() if r.get("status") not in ("left", "kicked"))
        return present + (1 if chat.status not in ("left", "kicked") else 0), None


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value
