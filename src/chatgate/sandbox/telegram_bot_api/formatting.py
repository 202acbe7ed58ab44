"""Telegram's `parse_mode`s: marked-up text -> (plain text, MessageEntity list), or Telegram's error.

Offsets and lengths are UTF-16 code units, as in the Bot API. Implemented: HTML (b/strong,
i/em, u/ins, s/strike/del, tg-spoiler and span class="tg-spoiler", a href, code, pre with
`<code class="language-x">`, blockquote [expandable], tg-emoji; the entities &lt; &gt; &amp;
&quot; and numeric ones), MarkdownV2 (*bold*, _italic_, __underline__, ~strike~, ||spoiler||,
`code`, ```pre```, [text](url), ![emoji](tg://emoji?id=N); every reserved character outside an
entity must be escaped) and legacy Markdown (*bold*, _italic_, `code`, ```pre```, [text](url)).
Not implemented: `>` block quotations in MarkdownV2 (a `>` must be escaped), date/time entities
and the automatic detection of URLs, mentions, hashtags and commands.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from chatgate.sandbox.telegram_bot_api.errors import BotApiError, bad_request

_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_HTML_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*?)?)\s*(/?)>")
_HTML_ATTR = re.compile(r"""([a-zA-Z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_HTML_ENTITY = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]+);")
_HTML_SIMPLE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _entities_error(message: str) -> BotApiError:
    return bad_request(f"can't parse entities: {message}")


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


@dataclass(slots=True)
class _Builder:
    parts: list[str] = field(default_factory=list)
    units: int = 0
    entities: list[dict[str, Any]] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.units += utf16_len(text)

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        if self.units > start:
            self.entities.append({"type": kind, "offset": start, "length": self.units - start, **extra})

    def result(self) -> tuple[str, list[dict[str, Any]]]:
        ordered = sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.parts), ordered


def parse(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities; `parse_mode` None or "" leaves the text alone."""
    if not parse_mode:
        return text, []
    if parse_mode == "HTML":
        return _parse_html(text)
    if parse_mode == "MarkdownV2":
        return _parse_markdown_v2(text)
    if parse_mode == "Markdown":
        return _parse_markdown(text)
    raise bad_request("unsupported parse_mode")


# -- HTML ---------------------------------------------------------------------------------------


def _html_entity(kind: str, attrs: dict[str, str], tag: str, offset: int) -> tuple[str, dict[str, Any]]:
    if tag == "a":
        href = attrs.get("href", "")
        match = re.fullmatch(r"tg://user\?id=([0-9]+)", href)
        if match:
            return "text_mention", {"user": {"id": int(match.group(1)), "is_bot": False, "first_name": ""}}
        if not href:
            raise _entities_error(f'Can\'t find "href" attribute of "a" tag at byte offset {offset}')
        return "text_link", {"url": href}
    if tag == "span":
        if attrs.get("class") != "tg-spoiler":
            raise _entities_error(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        return "spoiler", {}
    if tag == "blockquote":
        return ("expandable_blockquote" if "expandable" in attrs else "blockquote"), {}
    if tag == "tg-emoji":
        emoji_id = attrs.get("emoji-id")
        if not emoji_id:
            raise _entities_error(
                f'Can\'t find "emoji-id" attribute of "tg-emoji" tag at byte offset {offset}'
            )
        return "custom_emoji", {"custom_emoji_id": emoji_id}
    return kind, {}


def _parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Builder()
    stack: list[tuple[str, int, str, dict[str, Any]]] = []  # tag, start, entity type, extra
    index = 0
    while index < len(text):
        char = text[index]
        if char == "<":
            match = _HTML_TAG.match(text, index)
            offset = _byte_offset(text, index)
            if match is None:
                raise _entities_error(f"Unclosed start tag at byte offset {offset}")
            closing, tag = match.group(1) == "/", match.group(2).lower()
            if tag not in _HTML_SIMPLE and tag not in ("a", "span", "blockquote", "tg-emoji"):
                raise _entities_error(
                    f'Unsupported {"end" if closing else "start"} tag "{tag}" at byte offset {offset}'
                )
            if closing:
                if not stack or stack[-1][0] != tag:
                    expected = f'"</{stack[-1][0]}>"' if stack else "none"
                    raise _entities_error(
                        f'Unmatched end tag at byte offset {offset}, expected {expected}, found "</{tag}>"'
                    )
                _, start, kind, extra = stack.pop()
                if kind == "code" and stack and stack[-1][2] == "pre" and extra.get("language"):
                    stack[-1][3]["language"] = extra["language"]
                    kind = ""
                if kind == "code":
                    extra = {}  # a language belongs to the enclosing pre only
                if kind:
                    out.entity(kind, start, **extra)
            else:
                attrs = {
                    m.group(1).lower(): html.unescape(m.group(2) or m.group(3) or m.group(4) or "")
                    for m in _HTML_ATTR.finditer(match.group(3))
                }
                for word in match.group(3).split():
                    if "=" not in word:
                        attrs.setdefault(word.lower(), "")
                kind, extra = _html_entity(_HTML_SIMPLE.get(tag, ""), attrs, tag, offset)
                if tag == "code" and attrs.get("class", "").startswith("language-"):
                    extra = {"language": attrs["class"][len("language-") :]}
                stack.append((tag, out.units, kind, extra))
            index = match.end()
        elif char == "&":
            match = _HTML_ENTITY.match(text, index)
            if match is None:
                out.add("&")
                index += 1
                continue
            out.add(html.unescape(match.group(0)))
            index = match.end()
        else:
            nxt = min(
                (p for p in (text.find("<", index), text.find("&", index)) if p >= 0), default=len(text)
            )
            out.add(text[index:nxt])
            index = nxt
    if stack:
        raise _entities_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.result()


# -- MarkdownV2 -----------------------------------------------------------------------------------


def _read_until(text: str, index: int, end: str, escapable: str) -> tuple[str, int] | None:
    """Text up to the unescaped `end` (backslash escapes `escapable`); (content, index after end)."""
    chars: list[str] = []
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text) and text[index + 1] in escapable:
            chars.append(text[index + 1])
            index += 2
        elif text.startswith(end, index):
            return "".join(chars), index + len(end)
        else:
            chars.append(text[index])
            index += 1
    return None


def _parse_markdown_v2(text: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Builder()
    stack: list[tuple[str, int, int]] = []  # entity type, start (UTF-16), byte offset of the opener
    index = 0
    while index < len(text):
        char = text[index]
        offset = _byte_offset(text, index)
        if char == "\\" and index + 1 < len(text) and 0 < ord(text[index + 1]) < 127:
            out.add(text[index + 1])
            index += 2
            continue
        if char == "`":
            if text.startswith("```", index):
                found = _read_until(text, index + 3, "```", "`\\")
                if found is None:
                    raise _entities_error(f"Can't find end of Pre entity at byte offset {offset}")
                body, index = found
                language, newline, rest = body.partition("\n")
                start = out.units
                if newline and language and " " not in language:
                    out.add(rest)
                    out.entity("pre", start, language=language)
                else:
                    out.add(body)
                    out.entity("pre", start)
            else:
                found = _read_until(text, index + 1, "`", "`\\")
                if found is None:
                    raise _entities_error(f"Can't find end of Code entity at byte offset {offset}")
                body, index = found
                start = out.units
                out.add(body)
                out.entity("code", start)
            continue
        kind, width = "", 1
        if char == "*":
            kind = "bold"
        elif char == "~":
            kind = "strikethrough"
        elif char == "_":
            kind, width = ("underline", 2) if text.startswith("__", index) else ("italic", 1)
        elif char == "|" and text.startswith("||", index):
            kind, width = "spoiler", 2
        if kind:
            if stack and stack[-1][0] == kind:
                _, start, _ = stack.pop()
                out.entity(kind, start)
            elif any(entry[0] == kind for entry in stack):
                raise _entities_error(
                    f"Can't find end of {_MDV2_NAMES[stack[-1][0]]} entity at byte offset {stack[-1][2]}"
                )
            else:
                stack.append((kind, out.units, offset))
            index += width
            continue
        if char == "[" or (char == "!" and text.startswith("![", index)):
            stack.append(("custom_emoji" if char == "!" else "text_link", out.units, offset))
            index += 2 if char == "!" else 1
            continue
        if char == "]" and stack and stack[-1][0] in ("text_link", "custom_emoji"):
            kind, start, opened = stack.pop()
            if not text.startswith("(", index + 1):
                raise _entities_error(f"Can't find end of {_MDV2_NAMES[kind]} entity at byte offset {opened}")
            found = _read_until(text, index + 2, ")", ")\\")
            if found is None:
                raise _entities_error(f"Can't find end of {_MDV2_NAMES[kind]} entity at byte offset {opened}")
            url, index = found
            if kind == "custom_emoji":
                out.entity(kind, start, custom_emoji_id=url.rpartition("id=")[2])
            else:
                out.entity(kind, start, url=url)
            continue
        if char in _MDV2_RESERVED:
            raise _entities_error(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        out.add(char)
        index += 1
    if stack:
        kind, _, opened = stack[-1]
        raise _entities_error(f"Can't find end of {_MDV2_NAMES[kind]} entity at byte offset {opened}")
    return out.result()


# -- legacy Markdown ------------------------------------------------------------------------------


def _parse_markdown(text: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Builder()
    index = 0
    while index < len(text):
        char = text[index]
        offset = _byte_offset(text, index)
        if char == "\\" and index + 1 < len(text) and text[index + 1] in "_*`[":
            out.add(text[index + 1])
            index += 2
            continue
        start = out.units
        if char in "*_":
            end = text.find(char, index + 1)
            if end < 0:
                raise _entities_error(f"Can't find end of the entity starting at byte offset {offset}")
            out.add(text[index + 1 : end])
            out.entity("bold" if char == "*" else "italic", start)
            index = end + 1
        elif char == "`":
            fence = "```" if text.startswith("```", index) else "`"
            end = text.find(fence, index + len(fence))
            if end < 0:
                raise _entities_error(f"Can't find end of the entity starting at byte offset {offset}")
            out.add(text[index + len(fence) : end])
            out.entity("pre" if fence == "```" else "code", start)
            index = end + len(fence)
        elif char == "[":
            close = text.find("](", index + 1)
            end = text.find(")", close + 2) if close >= 0 else -1
            if close < 0 or end < 0:
                raise _entities_error(f"Can't find end of the entity starting at byte offset {offset}")
            out.add(text[index + 1 : close])
            out.entity("text_link", start, url=text[close + 2 : end])
            index = end + 1
        else:
            out.add(char)
            index += 1
    return out.result()
