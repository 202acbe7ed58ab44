"""The WhatsApp Business Cloud API provider (Meta Graph API).

- `signature`: the `X-Hub-Signature-256` check and the GET subscription handshake
- `routing`: which phone numbers a webhook concerns, splitting it per number, the dedupe key
- `parsing`: webhook JSON to provider-neutral events (pure)
- `outbound`: pure builders of `POST /{phone_number_id}/messages` bodies
- `errors`: Graph's `{"error": {...}}` answers to our typed provider errors
- `graph`: the HTTP calls (bearer token, uploads, media downloads)
- `adapter`: `WhatsAppCloudAdapter`, the provider adapter itself
"""
