"""A simulated Twilio Programmable Messaging API, as an ASGI app: a TEST AND DEMO STAND-IN ONLY.

It follows Twilio's documented REST API (2010-04-01) closely enough for the Twilio adapter to be
tested end to end over real HTTP: HTTP Basic auth, form-encoded requests checked against the
`CreateMessageRequest` schema of Twilio's own OpenAPI description
(`chatgate.sandbox.specs.TWILIO_MESSAGES_API`), Twilio's error bodies
`{"code", "message", "more_info", "status"}`, and webhooks signed exactly as Twilio signs them
(`X-Twilio-Signature`, HMAC-SHA1 of the URL and the sorted parameters with the Auth Token).
State lives in memory and vanishes with the process.

Twilio API (basic auth: `AccountSid:AuthToken` or `ApiKeySid:ApiKeySecret` of that account;
otherwise 401 with code 20003; valid credentials of another account → 404, code 20404):

- `GET  /2010-04-01/Accounts/{AccountSid}.json`                  the account resource
- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`         send a message (201 + resource)
- `GET  /2010-04-01/Accounts/{AccountSid}/Messages.json`         list messages (one page)
- `GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`   fetch a message
- `GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}/Media/{MediaSid}`   media of an inbound
  message: 307 to `/cdn/{token}`, which serves the bytes without auth (like Twilio's CDN)

Message creation checks, in order: every field name is in the schema (unknown → 400 code 20001)
and every value has the schema's type, enum and pattern (code 21609 for StatusCallback, 21620 for
MediaUrl, 21655 for ContentSid, 21656 for ContentVariables, 20001 otherwise); `To` present
(21604); `From` or `MessagingServiceSid` present (21603); `Body`, `MediaUrl` or `ContentSid`
present (21602); Body at most 1600 characters (21617); at most 10 media, 1 on WhatsApp (21623);
`To` a valid E.164 number with an optional `whatsapp:` prefix (21211); `From` and `To` on the
same channel (21910); `From` one of the account's senders when the account lists senders (21606,
or 63007 for WhatsApp); `To` not opted out (21610); and, when the WhatsApp 24-hour rule is on, a
freeform WhatsApp message to someone who has not written within 24 hours is refused (400, code
63016, `whatsapp_window: "reject"`) or accepted and then failed with error 63016 in its status
callback (`whatsapp_window: "callback"`, what Twilio really does).

When a message has a `StatusCallback`, its statuses are POSTed there one after another
(`queued → sent → delivered`, and `read` on WhatsApp; configurable), form-encoded and signed.

Control API (no auth; JSON in and out):

- `POST /sandbox/accounts` `{account_sid?, auth_token?, friendly_name?, status?, senders?: [...]}`
  → 201 `{account_sid, auth_token, friendly_name, status}`
- `POST /sandbox/accounts/{AccountSid}/keys` `{sid?, secret?}` → 201 `{sid, secret}`
- `POST /sandbox/accounts/{AccountSid}/opt_outs` `{address}` → `{ok}` (sends then fail with 21610)
- `POST /sandbox/window` `{account_sid, address, at?}`: the user at `address` wrote at `at`
  (epoch seconds, default now), which opens (or, with an old `at`, closes) the WhatsApp window
- `POST /sandbox/settings` `{whatsapp_window?: "off"|"reject"|"callback", auto_status?: bool,
  callback_delay?: seconds, progression?: {"sms": [...], "whatsapp": [...]}}` → the settings
- `POST /sandbox/faults` `{kind: "rate_limit"|"server_error"|"unauthorized"|"slow"|"error",
  count?: 1, status?, code?, message?, retry_after?, delay?, path_contains?, method?}`: the next
  `count` matching Twilio API calls fail that way (`slow` waits `delay` s, then answers normally);
  `DELETE /sandbox/faults` clears them
- `POST /sandbox/inbound` `{account_sid, url, from, to, body?, profile_name?, wa_id?,
  messaging_service_sid?, media?: [{content_type, content_base64}], latitude?, longitude?,
  address?, label?, button_payload?, button_text?, original_replied_message_sid?, extra?: {},
  signing_url?, headers?: {}}`: POSTs a signed inbound-message webhook shaped like Twilio's
  (`MessageSid`, `SmsSid`, `SmsMessageSid`, `AccountSid`, `MessagingServiceSid`, `From`, `To`,
  `Body`, `NumMedia`, `NumSegments`, `MediaUrl{N}`, `MediaContentType{N}`, `ProfileName`,
  `WaId`, `SmsStatus=received`, `ApiVersion`…) to `url`, signed over `signing_url` (default
  `url`), and answers `{message_sid, params, signature, response: {status, body}}`
- `POST /sandbox/messages/{Sid}/status` `{status, error_code?}`: report a status now
- `GET /sandbox/requests` (every Twilio API and CDN call: method, path, query, form, auth user,
  status, fault), `GET /sandbox/messages`, `GET /sandbox/callbacks`, `GET /sandbox/webhooks`
  (inbound webhooks sent); `POST /sandbox/reset` forgets messages, records and faults

Not implemented: message update/delete/redaction, Media list/fetch/delete resources, Feedback,
scheduling (`SendAt` is validated, not honoured), pricing, segments beyond a rough count,
fetching outbound MediaUrl (they are recorded, never downloaded), subaccounts, every other API.
It is NOT a security boundary and must never hold real credentials.
"""

from __future__ import annotations

from chatgate.sandbox.twilio_api.app import SandboxTwilioApi
from chatgate.sandbox.twilio_api.model import (
    Account,
    CallbackRecord,
    Fault,
    RecordedCall,
    SandboxControlError,
    SandboxMessage,
    Settings,
    TwilioApiError,
    twilio_signature,
)
from chatgate.sandbox.twilio_api.spec import create_message_schema, message_resource_schema

__all__ = [
    "Account",
    "CallbackRecord",
    "Fault",
    "RecordedCall",
    "SandboxControlError",
    "SandboxMessage",
    "SandboxTwilioApi",
    "Settings",
    "TwilioApiError",
    "create_message_schema",
    "message_resource_schema",
    "twilio_signature",
]
