"""The Twilio provider adapter: WhatsApp and SMS/MMS over Twilio's Programmable Messaging API.

- `signature`: Twilio's webhook signature (`X-Twilio-Signature`), computed and verified (pure).
- `parsing`: inbound message webhooks and status callbacks to provider-neutral events (pure),
  plus `routing_keys` to route a shared webhook URL to the right integration.
- `outbound`: the form fields of `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (pure).
- `errors`: Twilio's error answers (`{"code", "message", "more_info", "status"}`) to typed errors.
- `adapter`: `TwilioAdapter`, which ties them together over `ProviderHttp`.

Credentials: `auth_token`, or `api_key_sid` + `api_key_secret` for API calls. Twilio signs its
webhooks with the account's Auth Token even when the API is called with an API key, so
`auth_token` stays required to verify inbound requests.
"""
