"""Telegram measures text in UTF-16 code units; long texts are split where a reader would."""

from __future__ import annotations


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cut(text: str, limit: int) -> int:
    """The longest prefix (in characters) of `text` within `limit` UTF-16 units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def split_text(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` UTF-16 units, cut at a paragraph, line, sentence or word end."""
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        hard = _cut(rest, limit)
        window = rest[:hard]
        cut = -1
        for separator in ("\n\n", "\n", ". ", " "):
            position = window.rfind(separator)
            if position >= hard // 2:  # never leave a tiny first part
                cut = position + len(separator)
                break
        if cut <= 0:
            cut = hard
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    if rest:
        parts.append(rest)
    return [p for p in parts if p]
