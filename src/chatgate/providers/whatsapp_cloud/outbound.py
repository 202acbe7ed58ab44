"""Pure builders of `POST /{phone_number_id}/messages` bodies (validated against Meta's spec in tests).

`build_bodies` turns one `OutboundMessage` into the bodies to post, in order:

- a template (`message.template`) is sent alone; text, attachments and buttons must be empty;
- with `buttons` or `options["list"]`: the attachments first (or, for one image, video or
  document with buttons, as the interactive header), then one interactive message whose body
  is the text (at most 1024 characters). Up to 3 reply buttons (`callback_data`, else the
  text, is the reply id); a single URL button becomes a `cta_url` message; URL and reply
  buttons cannot be mixed;
- otherwise each attachment is one media message; the text becomes the caption of the
  first image, video or document when it fits (1024 characters), else it follows as text
  messages of at most 4096 characters.

The reply context goes on the first body. Attachments are `{kind, url | media_id |
provider_file_id, mime_type, file_name}`: `url` is sent by link, `provider_file_id` (a media id
WhatsApp already has) by id, and `media_id` (a tenant upload) by the id its upload returned,
passed in `uploads` by attachment index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chatgate.domain.errors import ContentRejected, PermanentProviderError
from chatgate.providers.base import OutboundMessage

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_INTERACTIVE_BODY = 1024
MAX_REPLY_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256
# Our attachment kinds → WhatsApp message types (voice notes are audio messages).
MEDIA_TYPES = {
    "image": "image",
    "video": "video",
    "audio": "audio",
    "voice": "audio",
    "sticker": "sticker",
    "document": "document",
}
CAPTIONED = frozenset({"image", "video", "document"})
HEADER_TYPES = frozenset({"image", "video", "document"})


def base(to: str, kind: str, reply_to: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": kind,
    }
    if reply_to:
        body["context"] = {"message_id": reply_to}
    return body


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Pieces of at most `limit` characters, cut at a paragraph, line or word break when one
    lies in the second half of the window (the separator itself is dropped)."""
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        for separator in ("\n\n", "\n", " "):
            at = window.rfind(separator)
            if at >= limit // 2:
                chunks.append(rest[:at])
                rest = rest[at + len(separator) :]
                break
        else:
            chunks.append(window)
            rest = rest[limit:]
    if rest:
        chunks.append(rest)
    return chunks


def text_body(
    to: str, text: str, *, preview_url: bool = False, reply_to: str | None = None
) -> dict[str, Any]:
    body = base(to, "text", reply_to)
    body["text"] = {"body": text, "preview_url": True} if preview_url else {"body": text}
    return body


def media_type(attachment: Mapping[str, Any]) -> str:
    """The WhatsApp message type for an attachment (by kind, else by MIME type, else document)."""
    kind = str(attachment.get("kind") or "")
    if kind in MEDIA_TYPES:
        return MEDIA_TYPES[kind]
    mime = str(attachment.get("mime_type") or "")
    major = mime.split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "document"


def needs_upload(attachment: Mapping[str, Any]) -> bool:
    """Whether the attachment is a tenant upload that must go to `/media` first."""
    return bool(attachment.get("media_id"))


def media_ref(attachment: Mapping[str, Any], uploaded_id: str | None, index: int = 0) -> dict[str, str]:
    if uploaded_id:
        return {"id": uploaded_id}
    if needs_upload(attachment):
        raise PermanentProviderError(
            f"attachment {index} (an upload) was not sent to WhatsApp's /media first"
        )
    if attachment.get("provider_file_id"):
        return {"id": str(attachment["provider_file_id"])}
    if attachment.get("url"):
        return {"link": str(attachment["url"])}
    raise ContentRejected(f"attachment {index} has neither a url nor a media_id")


def media_body(
    to: str,
    kind: str,
    ref: Mapping[str, str],
    *,
    caption: str | None = None,
    file_name: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """One media message; `kind` is a WhatsApp type (image, video, audio, document, sticker)."""
    body = base(to, kind, reply_to)
    media: dict[str, Any] = dict(ref)
    if caption and kind in CAPTIONED:
        media["caption"] = caption
    if file_name and kind == "document":
        media["filename"] = file_name
    body[kind] = media
    return body


def _interactive(
    to: str,
    kind: str,
    text: str,
    action: dict[str, Any],
    *,
    header: dict[str, Any] | None,
    footer: str | None,
    reply_to: str | None,
) -> dict[str, Any]:
    interactive: dict[str, Any] = {"type": kind, "body": {"text": text}, "action": action}
    if header:
        interactive["header"] = header
    if footer:
        interactive["footer"] = {"text": footer}
    body = base(to, "interactive", reply_to)
    body["interactive"] = interactive
    return body


def reply_buttons_body(
    to: str,
    text: str,
    buttons: Sequence[tuple[str, str]],
    *,
    header: dict[str, Any] | None = None,
    footer: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """Up to 3 reply buttons, given as (id, title)."""
    action = {"buttons": [{"type": "reply", "reply": {"id": key, "title": title}} for key, title in buttons]}
    return _interactive(to, "button", text, action, header=header, footer=footer, reply_to=reply_to)


def cta_url_body(
    to: str,
    text: str,
    display_text: str,
    url: str,
    *,
    header: dict[str, Any] | None = None,
    footer: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """One URL button."""
    action = {"name": "cta_url", "parameters": {"display_text": display_text, "url": url}}
    return _interactive(to, "cta_url", text, action, header=header, footer=footer, reply_to=reply_to)


def list_body(to: str, text: str, spec: Mapping[str, Any], *, reply_to: str | None = None) -> dict[str, Any]:
    """A list message from `{"button": label, "sections": [{"title", "rows": [{"id", "title",
    "description"}]}], "header": text, "footer": text}`."""
    label = spec.get("button")
    sections = spec.get("sections")
    if not isinstance(label, str) or not label:
        raise ContentRejected("options.list.button (the label of the list's button) is required")
    if not isinstance(sections, list) or not sections:
        raise ContentRejected("options.list.sections must be a non-empty list")
    shaped = []
    for number, section in enumerate(sections):
        rows = section.get("rows") if isinstance(section, dict) else None
        if not isinstance(rows, list) or not rows:
            raise ContentRejected(f"options.list.sections[{number}].rows must be a non-empty list")
        shaped_rows = []
        for row in rows:
            if not isinstance(row, dict) or not row.get("id") or not row.get("title"):
                raise ContentRejected(f"every row of options.list.sections[{number}] needs an id and a title")
            item = {"id": str(row["id"]), "title": str(row["title"])}
            if row.get("description"):
                item["description"] = str(row["description"])
            shaped_rows.append(item)
        shaped_section: dict[str, Any] = {"rows": shaped_rows}
        if section.get("title"):
            shaped_section["title"] = str(section["title"])
        shaped.append(shaped_section)
    header = {"type": "text", "text": str(spec["header"])} if spec.get("header") else None
    footer = str(spec["footer"]) if spec.get("footer") else None
    action = {"button": label, "sections": shaped}
    return _interactive(to, "list", text, action, header=header, footer=footer, reply_to=reply_to)


def _template_parameter(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return {"type": "text", "text": str(value)}
    raise ContentRejected(f"template parameter {value!r} must be text or a WhatsApp parameter object")


def template_body(to: str, template: Mapping[str, Any], *, reply_to: str | None = None) -> dict[str, Any]:
    """From `{"name", "language": "en_US" | {"code"}, "components": [...] | "parameters": [...]}`;
    plain `parameters` fill the body's {{1}}, {{2}}… in order."""
    name = template.get("name")
    if not isinstance(name, str) or not name:
        raise ContentRejected("template.name is required")
    language = template.get("language")
    if isinstance(language, dict):
        language = language.get("code")
    if not isinstance(language, str) or not language:
        raise ContentRejected("template.language (a code such as en_US) is required")
    data: dict[str, Any] = {"name": name, "language": {"policy": "deterministic", "code": language}}
    components = template.get("components")
    parameters = template.get("parameters")
    if components is not None:
        if not isinstance(components, list):
            raise ContentRejected("template.components must be a list of WhatsApp component objects")
        data["components"] = components
    elif parameters:
        if not isinstance(parameters, list):
            raise ContentRejected("template.parameters must be a list")
        data["components"] = [{"type": "body", "parameters": [_template_parameter(p) for p in parameters]}]
    body = base(to, "template", reply_to)
    body["template"] = data
    return body


def read_receipt_body(provider_message_id: str, *, typing_indicator: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": provider_message_id,
    }
    if typing_indicator:
        body["typing_indicator"] = {"type": "text"}
    return body


def flatten_buttons(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Our button rows (`[[{text, callback_data | url}]]`, or a flat list) as one list."""
    flat: list[dict[str, Any]] = []
    for row in rows:
        for button in row if isinstance(row, list) else [row]:
            if not isinstance(button, dict) or not button.get("text"):
                raise ContentRejected("every button needs a text")
            flat.append(button)
    return flat


def _button_action(
    to: str,
    text: str,
    buttons: list[dict[str, Any]],
    header: dict[str, Any] | None,
    footer: str | None,
) -> dict[str, Any]:
    links = [b for b in buttons if b.get("url")]
    for button in buttons:
        if len(str(button["text"])) > MAX_BUTTON_TITLE:
            raise ContentRejected(
                f"WhatsApp button texts are at most {MAX_BUTTON_TITLE} characters: {button['text']!r}"
            )
    if links:
        if len(buttons) != 1:
            raise ContentRejected(
                "WhatsApp sends either up to 3 reply buttons or exactly one URL button, not a mix or several URLs"
            )
        return cta_url_body(
            to, text, str(links[0]["text"]), str(links[0]["url"]), header=header, footer=footer
        )
    if len(buttons) > MAX_REPLY_BUTTONS:
        raise ContentRejected(
            f"WhatsApp allows at most {MAX_REPLY_BUTTONS} reply buttons, got {len(buttons)}"
        )
    pairs = []
    for button in buttons:
        key = str(button.get("callback_data") or button["text"])
        if len(key) > MAX_BUTTON_ID:
            raise ContentRejected(f"a button's callback_data is at most {MAX_BUTTON_ID} characters")
        pairs.append((key, str(button["text"])))
    return reply_buttons_body(to, text, pairs, header=header, footer=footer)


def build_bodies(message: OutboundMessage, uploads: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """Every body to post for `message`, in order (see the module docstring)."""
    uploads = uploads or {}
    to = message.recipient
    text = message.text or ""
    options = message.options or {}
    list_spec = options.get("list")
    bodies: list[dict[str, Any]] = []

    if message.template is not None:
        if text or message.attachments or message.buttons or list_spec:
            raise ContentRejected(
                "a WhatsApp template message is sent alone: put its content in the template's parameters, "
                "not in text, attachments or buttons"
            )
        bodies.append(template_body(to, message.template))
    elif message.buttons or list_spec:
        if list_spec is not None and not isinstance(list_spec, dict):
            raise ContentRejected("options.list must be an object")
        if not text:
            raise ContentRejected("WhatsApp interactive messages (buttons, lists) need a text for their body")
        if len(text) > MAX_INTERACTIVE_BODY:
            raise ContentRejected(
                f"the text of a WhatsApp message with buttons or a list is at most {MAX_INTERACTIVE_BODY} characters"
            )
        attachments = list(enumerate(message.attachments))
        header: dict[str, Any] | None = None
        if message.buttons and len(attachments) == 1 and media_type(attachments[0][1]) in HEADER_TYPES:
            index, attachment = attachments.pop()
            kind = media_type(attachment)
            header = {"type": kind, kind: media_ref(attachment, uploads.get(index), index)}
        elif options.get("header"):
            header = {"type": "text", "text": str(options["header"])}
        for index, attachment in attachments:
            bodies.append(_media(to, index, attachment, uploads, None))
        footer = str(options["footer"]) if options.get("footer") else None
        if message.buttons:
            bodies.append(_button_action(to, text, flatten_buttons(message.buttons), header, footer))
        else:
            assert isinstance(list_spec, dict)
            bodies.append(list_body(to, text, list_spec))
    else:
        caption_at: int | None = None
        if text and len(text) <= MAX_CAPTION:
            caption_at = next(
                (i for i, a in enumerate(message.attachments) if media_type(a) in CAPTIONED), None
            )
        for index, attachment in enumerate(message.attachments):
            bodies.append(_media(to, index, attachment, uploads, text if index == caption_at else None))
        if text and caption_at is None:
            preview = bool(options.get("preview_url"))
            bodies.extend(text_body(to, chunk, preview_url=preview) for chunk in split_text(text))

    if not bodies:
        raise ContentRejected("nothing to send: no text, attachments or template")
    if message.reply_to_provider_id:
        bodies[0]["context"] = {"message_id": message.reply_to_provider_id}
    return bodies


def _media(
    to: str, index: int, attachment: Mapping[str, Any], uploads: Mapping[int, str], caption: str | None
) -> dict[str, Any]:
    file_name = attachment.get("file_name")
    return media_body(
        to,
        media_type(attachment),
        media_ref(attachment, uploads.get(index), index),
        caption=caption,
        file_name=str(file_name) if file_name else None,
    )
