"""What `POST …/Messages.json` accepts: the spec's fields and types, then Twilio's rules."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlparse

import jsonschema

from chatgate.sandbox.twilio_api.model import ERROR_MESSAGES, WHATSAPP, Account, TwilioApiError
from chatgate.sandbox.twilio_api.spec import create_message_schema

MAX_BODY = 1600
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Twilio's codes for a bad value of these fields; 20001 for any other field.
_FIELD_CODES = {"StatusCallback": 21609, "MediaUrl": 21620, "ContentSid": 21655, "ContentVariables": 21656}


def _coerce(name: str, kind: Any, value: str) -> Any:
    code = _FIELD_CODES.get(name, 20001)
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        raise TwilioApiError(400, code, f"Invalid {name}: {value!r} is not a {kind}") from None
    if kind == "boolean":
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise TwilioApiError(400, code, f"Invalid {name}: {value!r} is not true or false")
        return lowered == "true"
    return value


class CreateMessageRules:
    """Checks a create-message form; raises TwilioApiError with Twilio's code for each problem."""

    def __init__(self) -> None:
        schema = create_message_schema()
        self.properties: dict[str, Any] = schema["properties"]
        # `required` (To) is left to the rules, which answer Twilio's own code for it (21604).
        checked = {k: v for k, v in schema.items() if k != "required"}
        self.validator = jsonschema.Draft7Validator({**checked, "additionalProperties": False})

    def typed_form(self, form: list[tuple[str, str]]) -> dict[str, Any]:
        """Form pairs → a JSON object typed per the schema (arrays for repeatable fields)."""
        values: dict[str, Any] = {}
        for name, value in form:
            prop = self.properties.get(name)
            if prop is None:
                raise TwilioApiError(
                    400, 20001, f"Unknown parameter: {name} is not a parameter of CreateMessageRequest"
                )
            kind = prop.get("type")
            if kind == "array":
                values.setdefault(name, []).append(value)
                continue
            if name in values:
                raise TwilioApiError(400, 20001, f"Parameter {name} was given more than once")
            values[name] = _coerce(name, kind, value)
        return values

    def check_values(self, values: dict[str, Any]) -> None:
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(values))
        if error is not None:
            name = str(error.path[0]) if error.path else "request"
            raise TwilioApiError(
                400, _FIELD_CODES.get(name, 20001), f"Invalid parameter {name}: {error.message}"
            )
        if "StatusCallback" in values:
            url = urlparse(values["StatusCallback"])
            if url.scheme not in ("http", "https") or not url.hostname or "_" in url.hostname:
                raise TwilioApiError(400, 21609, f"Invalid StatusCallback URL: {values['StatusCallback']}")
        for url_text in values.get("MediaUrl", []):
            url = urlparse(url_text)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise TwilioApiError(400, 21620, f"Invalid media URL(s): {url_text}")
        if "ContentVariables" in values:
            try:
                variables = json.loads(values["ContentVariables"])
            except ValueError:
                variables = None
            if not isinstance(variables, dict):
                raise TwilioApiError(
                    400, 21656, "The ContentVariables Parameter is invalid: not a JSON object"
                )

    def check_rules(
        self, account: Account, values: dict[str, Any], *, window_mode: str, window_open: bool
    ) -> bool:
        """Twilio's create rules; True when the WhatsApp window will fail the message later."""
        to = values.get("To", "").strip()
        sender = values.get("From", "").strip()
        if not to:
            raise TwilioApiError(400, 21604, "A 'To' phone number is required.")
        if not sender and not values.get("MessagingServiceSid"):
            raise TwilioApiError(400, 21603, "A 'From' phone number or a 'MessagingServiceSid' is required.")
        media = values.get("MediaUrl", [])
        if not values.get("Body") and not media and not values.get("ContentSid"):
            raise TwilioApiError(400, 21602, "Message body is required.")
        if len(values.get("Body", "")) > MAX_BODY:
            raise TwilioApiError(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        whatsapp = to.startswith(WHATSAPP)
        if len(media) > (1 if whatsapp else 10):
            raise TwilioApiError(400, 21623, "The number of media files exceeds the allowed limit.")
        if not E164.match(to.removeprefix(WHATSAPP)):
            raise TwilioApiError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if sender and sender.startswith(WHATSAPP) != whatsapp:
            raise TwilioApiError(
                400, 21910, "Invalid From and To pair. From and To should be of the same channel."
            )
        if sender and account.senders and sender not in account.senders:
            if sender.startswith(WHATSAPP):
                raise TwilioApiError(
                    400, 63007, "Twilio could not find a Channel with the specified From address"
                )
            raise TwilioApiError(
                400,
                21606,
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone number "
                "or short code for your account.",
            )
        if to in account.opt_outs or to.removeprefix(WHATSAPP) in account.opt_outs:
            raise TwilioApiError(400, 21610, "Attempt to send to unsubscribed recipient")
        outside = whatsapp and not values.get("ContentSid") and not window_open
        if outside and window_mode == "reject":
            raise TwilioApiError(400, 63016, ERROR_MESSAGES[63016])
        return outside and window_mode == "callback"
