"""The Telegram bot adapter: secret-token webhooks in, the Bot API out.

Message ids are only unique per chat in Telegram, so our provider message id is
`"{chat_id}:{message_id}"` in both directions (the parser uses the same scheme).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from chatgate.domain.errors import NotFound, PayloadTooLarge, PermanentProviderError, Unauthenticated
from chatgate.domain.inbound import ProviderEvent
from chatgate.domain.integrations import IntegrationKind
from chatgate.providers.base import (
    Bucket,
    FetchedMedia,
    InboundRequest,
    IntegrationContext,
    OutboundMessage,
    SendResult,
)
from chatgate.providers.http import FilePart
from chatgate.providers.telegram import parsing
from chatgate.providers.telegram.botapi import DOWNLOAD_LIMIT, MAX_CAPTION, MAX_TEXT, BotApi, ChatMigrated
from chatgate.providers.telegram.text import split_text, utf16_len
from chatgate.ratelimit.policies import RatePolicies

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name, not a secret

# Our attachment kinds → (Bot API method, its file parameter).
_SEND_METHODS = {
    "image": ("sendPhoto", "photo"),
    "video": ("sendVideo", "video"),
    "audio": ("sendAudio", "audio"),
    "voice": ("sendVoice", "voice"),
    "sticker": ("sendSticker", "sticker"),
    "document": ("sendDocument", "document"),
}
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


def split_message_id(provider_message_id: str) -> tuple[str, int]:
    chat, _, number = provider_message_id.rpartition(":")
    try:
        return chat, int(number)
    except ValueError:
        raise PermanentProviderError(
            f"'{provider_message_id}' is not a Telegram message id of the form chat:message"
        ) from None


def inline_keyboard(rows: list[Any]) -> dict[str, Any] | None:
    keyboard = []
    for row in rows:
        buttons = []
        for button in row if isinstance(row, list) else [row]:
            item = {"text": str(button["text"])}
            if button.get("url"):
                item["url"] = str(button["url"])
            else:
                item["callback_data"] = str(button.get("callback_data") or button["text"])[:64]
            buttons.append(item)
        keyboard.append(buttons)
    return {"inline_keyboard": keyboard} if keyboard else None


class TelegramBotAdapter:
    kind = IntegrationKind.TELEGRAM_BOT

    def __init__(self, api_base: str, policies: RatePolicies | None = None) -> None:
        self.api_base = api_base
        self.policies = policies or RatePolicies()

    def bot(self, ctx: IntegrationContext) -> BotApi:
        token = ctx.credentials.get("bot_token")
        if not token:
            raise PermanentProviderError("this Telegram integration has no bot token")
        return BotApi(ctx.provider_api(), self.api_base, token)

    # Inbound

    def verify_inbound(self, request: InboundRequest, ctx: IntegrationContext) -> None:
        expected = ctx.credentials.get("secret_token")
        given = request.headers.get(SECRET_HEADER)
        if not expected:
            raise Unauthenticated("this Telegram integration has no webhook secret configured")
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthenticated(f"the {SECRET_HEADER} header is missing or wrong")

    def event_id(self, request: InboundRequest) -> str:
        return parsing.update_id(request.body)

    def parse_inbound(self, body: bytes, headers: Mapping[str, str]) -> list[ProviderEvent]:
        return parsing.parse_update(body)

    # Outbound

    def send_buckets(self, message: OutboundMessage, ctx: IntegrationContext) -> list[Bucket]:
        bot = str(ctx.integration.config.get("bot_id") or ctx.integration.id)
        chat = message.recipient
        scope = "group" if chat.startswith("-") else "chat"
        return [
            Bucket(f"tg:{bot}", self.policies.limit("telegram_bot", "bot")),
            Bucket(f"tg:{bot}:{chat}", self.policies.limit("telegram_bot", scope)),
        ]

    async def send(self, message: OutboundMessage, ctx: IntegrationContext) -> SendResult:
        api = self.bot(ctx)
        try:
            return await self._send_to(api, message.recipient, message, ctx)
        except ChatMigrated as moved:
            # The group became a supergroup: deliver there and let the caller re-point the conversation.
            result = await self._send_to(api, moved.new_chat_id, message, ctx)
            return SendResult(
                result.provider_message_id, {**result.detail, "recipient_moved_to": moved.new_chat_id}
            )

    async def _send_to(
        self, api: BotApi, chat_id: str, message: OutboundMessage, ctx: IntegrationContext
    ) -> SendResult:
        parse_mode = message.options.get("parse_mode")
        markup = inline_keyboard(message.buttons)
        reply: dict[str, Any] | None = None
        if message.reply_to_provider_id:
            _, reply_id = split_message_id(message.reply_to_provider_id)
            reply = {"message_id": reply_id, "allow_sending_without_reply": True}
        text = message.text or ""
        caption: str | None = None
        if message.attachments and text and utf16_len(text) <= MAX_CAPTION:
            caption, text = text, ""
        chunks = split_text(text, MAX_TEXT) if text else []
        calls: list[tuple[str, dict[str, Any], list[FilePart]]] = []
        for index, attachment in enumerate(message.attachments):
            method, field = _SEND_METHODS.get(str(attachment.get("kind")), _SEND_METHODS["document"])
            params: dict[str, Any] = {"chat_id": chat_id}
            files: list[FilePart] = []
            if attachment.get("media_id"):
                files.append(await self._upload(str(attachment["media_id"]), field, attachment, ctx))
            else:
                params[field] = str(attachment.get("url") or attachment.get("provider_file_id"))
            if index == 0 and caption:
                params.update(caption=caption, parse_mode=parse_mode)
            calls.append((method, params, files))
        calls.extend(
            ("sendMessage", {"chat_id": chat_id, "text": chunk, "parse_mode": parse_mode}, [])
            for chunk in chunks
        )
        if not calls:
            raise PermanentProviderError("nothing to send: no text and no attachments")
        if reply is not None:
            calls[0][1]["reply_parameters"] = reply
        if markup is not None:
            calls[-1][1]["reply_markup"] = markup
        # A failure after the first part leaves earlier parts sent; a retry resends them
        # (Telegram has no idempotency key), which is why long texts are split only at the end.
        ids: list[str] = []
        for method, params, files in calls:
            sent = await api.call(method, params, files=files)
            ids.append(f"{sent['chat']['id']}:{sent['message_id']}")
        return SendResult(ids[0], {"provider_message_ids": ids} if len(ids) > 1 else {})

    async def _upload(
        self, media_id: str, field: str, attachment: Mapping[str, Any], ctx: IntegrationContext
    ) -> FilePart:
        if ctx.load_media is None:
            raise PermanentProviderError("uploaded files cannot be sent from this context")
        media = await ctx.load_media(media_id)
        return FilePart(
            field,
            media.content,
            str(attachment.get("file_name") or media.file_name or "file"),
            str(attachment.get("mime_type") or media.mime_type or "application/octet-stream"),
        )

    # Capabilities

    async def fetch_media(
        self, provider_file_id: str, ctx: IntegrationContext, *, max_bytes: int
    ) -> FetchedMedia:
        api = self.bot(ctx)
        info = await api.call("getFile", {"file_id": provider_file_id})
        limit = min(max_bytes, DOWNLOAD_LIMIT)
        size = info.get("file_size")
        if isinstance(size, int) and size > limit:
            raise PayloadTooLarge(f"the file is {size} bytes; files over {limit} bytes cannot be fetched")
        path = info.get("file_path")
        if not path:
            raise NotFound("Telegram no longer has this file")
        content = await api.download(str(path), max_bytes=limit)
        return FetchedMedia(content, None, str(path).rsplit("/", 1)[-1])

    async def edit(
        self,
        recipient: str,
        provider_message_id: str,
        text: str | None,
        buttons: list[Any],
        ctx: IntegrationContext,
    ) -> None:
        chat, number = split_message_id(provider_message_id)
        markup = inline_keyboard(buttons)
        if text is not None:
            await self.bot(ctx).call(
                "editMessageText",
                {"chat_id": chat, "message_id": number, "text": text, "reply_markup": markup},
            )
        else:
            await self.bot(ctx).call(
                "editMessageReplyMarkup",
                {"chat_id": chat, "message_id": number, "reply_markup": markup or {"inline_keyboard": []}},
            )

    async def delete(self, recipient: str, provider_message_id: str, ctx: IntegrationContext) -> None:
        chat, number = split_message_id(provider_message_id)
        await self.bot(ctx).call("deleteMessage", {"chat_id": chat, "message_id": number})

    async def chat_action(self, recipient: str, action: str, ctx: IntegrationContext) -> None:
        await self.bot(ctx).call("sendChatAction", {"chat_id": recipient, "action": action})

    async def answer_button(
        self, callback_id: str, text: str | None, show_alert: bool, ctx: IntegrationContext
    ) -> None:
        await self.bot(ctx).call(
            "answerCallbackQuery", {"callback_query_id": callback_id, "text": text, "show_alert": show_alert}
        )
