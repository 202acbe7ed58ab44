"""A simulated Telegram Bot API server, as an ASGI app: a TEST AND DEMO STAND-IN ONLY.

The real Bot API cannot be reached from our machines, so the Telegram adapter is tested (and the
demo runs) against this server, reached through the configurable Telegram base URL. Every call is
validated against the official machine-readable spec (`chatgate.sandbox.specs.TELEGRAM_BOT_API`),
generically: unknown methods (404), unknown tokens (401), missing required parameters, unknown
parameters (stricter than Telegram on purpose), wrong types including `X or Y` unions, arrays and
object types checked recursively (unknown and missing fields, union members by their `type`
discriminator), `parse_mode` values and the entities of HTML/MarkdownV2/Markdown text. Answers
have Telegram's envelope (`{"ok": true, "result": ...}` / `{"ok": false, "error_code", "description",
"parameters"}` with HTTP status = error_code) and Telegram's wording of errors.

Bot API (`GET|POST /bot{token}/{method}`, query string, JSON, url-encoded or multipart bodies;
method names case-insensitive) with behaviour:

- getMe, logOut, close
- setWebhook (url, secret_token, allowed_updates, max_connections, drop_pending_updates,
  ip_address, certificate), deleteWebhook, getWebhookInfo (with last_error_date/message)
- getUpdates (offset, limit, long-poll timeout, allowed_updates; 409 while a webhook is set
  and for the older of two concurrent polls)
- sendMessage (4096-character limit in UTF-16 units, parse_mode, entities, reply_parameters
  and the legacy reply_to_message_id, reply_markup), sendPhoto, sendDocument, sendAudio,
  sendVideo, sendVoice, sendSticker (multipart upload, http(s) URL or a file_id of this bot)
- sendChatAction, editMessageText, editMessageReplyMarkup, deleteMessage, answerCallbackQuery
- getFile (20 MB limit) and the download `GET /file/bot{token}/{file_path}`
- getChat (id or @username), getChatMember, getChatAdministrators, getChatMemberCount

Every other method of the spec is validated and answers `true`. Chats the bot knows behave like
Telegram: blocked private chats (403), kicked/left groups (403), channels needing posting rights,
groups migrated to a supergroup (400 with parameters.migrate_to_chat_id), unknown chats (400).

Control API (JSON) for tests and demos, see control.py:

- `POST /sandbox/bots` {id?, username?, first_name?, token?} -> {id, token, username, first_name}
- `POST /sandbox/bots/bulk` {count, username_prefix?} -> {bots: [{id, token, username}]}
- `GET /sandbox/bots/{id}` webhook settings, pending updates and the call log; `DELETE` removes
- `POST /sandbox/bots/{id}/revoke` -> {id, token}: the old token answers 401 from then on
- `POST /sandbox/bots/{id}/chats` a chat the bot knows (chats.py describes the fields)
- `GET /sandbox/bots/{id}/chats/{chat_id}/messages` every message of the chat
- `POST /sandbox/bots/{id}/updates` an Update (update_id assigned when absent) -> {update_id, delivery}
- `POST /sandbox/bots/{id}/files` multipart "file" or {content_base64 | size, file_name, mime_type, kind}
- `GET /sandbox/bots/{id}/calls?method=` the call log
- `POST|GET|DELETE /sandbox/faults`, `DELETE /sandbox/faults/{id}`: 429/5xx/403/slow/error faults
- `POST /sandbox/deliveries/wait` {timeout?}: returns once every webhook delivery so far is done
- `POST /sandbox/reset`

Not implemented: inline messages (edits by inline_message_id answer true), rich messages,
media groups (sendMediaGroup answers true, not an array of Messages), polls, payments, sticker
sets, forum topic management and every other method's behaviour (they are validated only);
logOut/close have no after-effects; Telegram's own flood limits (inject 429 faults instead);
automatic entity detection; concurrent webhook connections (delivery is sequential per bot);
replies to a method call in the webhook's response body; photo dimensions (always 1280x720).
Tokens look like `<id>:SANDBOX<random>`; the sandbox never logs a token (serve it without an
HTTP access log: request paths contain the token). It is NOT a security boundary.
"""

from __future__ import annotations

from chatgate.sandbox.telegram_bot_api.app import SandboxBotApi, create_app
from chatgate.sandbox.telegram_bot_api.errors import BotApiError
from chatgate.sandbox.telegram_bot_api.spec import BotApiSpec, load_spec
from chatgate.sandbox.telegram_bot_api.validation import Validator

__all__ = ["BotApiError", "BotApiSpec", "SandboxBotApi", "Validator", "create_app", "load_spec"]
