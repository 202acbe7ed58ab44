"""A simulated WhatsApp Business Cloud API (Meta Graph API), as an ASGI app: TESTS AND DEMOS ONLY.

`SandboxGraphApi().app` serves a small part of Graph v23.0 with state in memory, so the
WhatsApp adapter can be exercised over real HTTP without Meta. It is not a security
boundary and must never hold real tokens.

Graph endpoints (any `vN.N` version; the bearer token, or `?access_token=`, must belong to
the number that owns the object: none → 401 code 104, unknown → 401 code 190, another
number's object or an unknown id → 400 code 100 subcode 33):

- `GET  /{version}/{phone_number_id}?fields=…`  id, display_phone_number, verified_name,
  quality_rating by default; also name_status, code_verification_status, platform_type,
  throughput; an unknown field → 400 code 100
- `POST /{version}/{phone_number_id}/messages`  the JSON body is validated against the
  request schema of Meta's OpenAPI spec (`spec.py`, with its documented normalisation and
  supplements) → 400 code 100 naming each problem; media sent by id must have been uploaded
  to this number; answers `{"messaging_product", "contacts": [{"input", "wa_id"}],
  "messages": [{"id": "wamid.…"}]}` (read receipts: `{"success": true}`)
- `POST /{version}/{phone_number_id}/media`     multipart `file` + `messaging_product=whatsapp`
  (+ `type`) → `{"id"}`
- `GET  /{version}/{media_id}`                  `{url, mime_type, sha256, file_size, id,
  messaging_product}`; the url (`/whatsapp_business/attachments/?mid=…`) serves the bytes
  only with the owning number's bearer token
- anything else → 400 code 2500 "Unknown path components"

Simulated behaviour:

- 24-hour window, per number (`window_mode`): `off`; `reject` (a free-form message to a
  wa_id that has not written within 24 h → 400 code 131047 at once); `webhook` (accepted,
  then a `failed` status webhook with 131047, which is what Meta does). Templates are exempt.
- Webhooks: every message accepted for a number with a `callback_url` gets `sent`,
  `delivered`, `read` status webhooks (`auto_status`, `status_interval`); inbound customer
  messages and statuses can be sent on request. Bodies are shaped like the fixtures,
  serialised like Meta's and signed (`X-Hub-Signature-256`, and the legacy `X-Hub-Signature`).
- Faults (`state.Fault`): the next N matching Graph calls (by number/object id, path
  substring, method) answer `rate_limit` (429, 130429), `pair_rate_limit` (429, 131056),
  `server_error` (500, 131000), `unavailable` (503, 2), `auth` (401, 190), `reengagement`
  (400, 131047), `undeliverable` (400, 131026), `invalid_parameter` (400, 100), a custom
  `error` (status, code), or are only `slow` (`delay` seconds); `retry_after` adds a header.
- Every Graph call is recorded (`calls`: method, path, query, object id, whether the token
  was accepted, the JSON body or form fields, status, fault); so are accepted messages and
  webhook deliveries.

Control API (JSON; also available as Python methods of the same names):

- `POST /sandbox/numbers` `{phone_number_id, display_phone_number, access_token, app_secret,
  waba_id, [verified_name, quality_rating, callback_url, window_mode, auto_status,
  status_interval]}` → 201; `GET /sandbox/numbers`
- `POST /sandbox/numbers/{id}/settings` any of the optional keys above
- `POST /sandbox/numbers/{id}/window` `{wa_id, last_inbound_at | open: bool}`
- `POST /sandbox/numbers/{id}/inbound` `{from, name, type: text|image|video|audio|document|
  sticker|location|contacts|reaction|interactive|button, text | media: {content_base64,
  mime_type, filename, caption, voice, animated} | location | contacts | reaction:
  {message_id, emoji} | reply: {type: button_reply|list_reply, id, title, description} |
  button: {payload, text}, context_id, forwarded, deliver}` → `{message_id, payload,
  media_id?, delivery}`
- `POST /sandbox/numbers/{id}/statuses` `{message_id, status | statuses: [...], recipient,
  error: {code, title, details}}` → the deliveries
- `POST|GET|DELETE /sandbox/faults` `{kind, times, phone_number_id, path, method, status,
  code, subcode, message, details, retry_after, delay}`
- `GET|DELETE /sandbox/calls`, `GET /sandbox/messages`, `GET /sandbox/deliveries`,
  `POST /sandbox/reset`

Not implemented: templates management (any template name is accepted), message history,
business profiles, groups, calls, flows, media deletion, media URL expiry, size limits per
media type, pricing/conversation accounting, webhook retries and the GET subscription
handshake towards the callback.
"""

from chatgate.sandbox.graph_api.app import SandboxGraphApi
from chatgate.sandbox.graph_api.state import Call, Delivery, Fault, Number, SentMessage, StoredMedia

__all__ = ["Call", "Delivery", "Fault", "Number", "SandboxGraphApi", "SentMessage", "StoredMedia"]
