"""Validation of a Bot API call against the spec, built generically from `spec.py`.

Parameters arrive as text (query string, url-encoded or multipart form: numbers and booleans
are parsed, arrays and objects are JSON-encoded strings) or as JSON values (`application/json`
bodies: values must have their real JSON type; an array or object may also be a JSON-encoded
string, as Telegram accepts). Inside decoded JSON every value must have its JSON type, objects
may hold only their spec's fields and must hold the required ones, unions are resolved through
their members (by discriminator such as `type` where the spec has one). Deliberately stricter
than Telegram: unknown parameters and unknown object fields are errors.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatgate.sandbox.telegram_bot_api.errors import bad_request
from chatgate.sandbox.telegram_bot_api.spec import (
    ArrayType,
    BotApiSpec,
    FieldSpec,
    InputFileType,
    MethodSpec,
    ObjectSpec,
    ObjectType,
    Primitive,
    TypeExpr,
    describe,
    describe_union,
    parse_type,
)

PARSE_MODES = frozenset({"HTML", "Markdown", "MarkdownV2"})
ATTACH_PREFIX = "attach://"
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})

# Parameters Telegram still accepts although the spec dropped them (Bot API 7.0 replaced them
# with reply_parameters); allowed on the methods that take reply_parameters.
LEGACY_REPLY_PARAMETERS = {
    "reply_to_message_id": FieldSpec("reply_to_message_id", (Primitive("Integer"),), False),
    "allow_sending_without_reply": FieldSpec("allow_sending_without_reply", (Primitive("Boolean"),), False),
}
# Special wording Telegram uses for some missing parameters.
_MISSING_MESSAGES = {
    "chat_id": "chat_id is empty",
    "text": "message text is empty",
    "message_id": "message_id is empty",
    "user_id": "user_id is empty",
    "file_id": "file_id is empty",
    "callback_query_id": "query_id is empty",
    "action": "action is empty",
}
_FILE_PARAMETERS = frozenset({"photo", "document", "audio", "video", "voice", "sticker", "animation"})
# Required parameters for which an empty string is a meaningful value.
_EMPTY_ALLOWED = frozenset({("setWebhook", "url")})


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """One `multipart/form-data` file part."""

    field: str
    file_name: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


class Mismatch(Exception):
    """A value that does not fit; `depth` ranks alternatives (the deepest failure is the most telling).

    A union member whose discriminator (e.g. `type`) differs fails half a level deep, below any
    failure inside a member whose discriminator matched; `constant` keeps (field path, value)
    so such failures can be merged into "must be one of".
    """

    def __init__(self, message: str, depth: float, constant: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.depth = depth
        self.constant = constant


@dataclass(slots=True)
class _Call:
    files: Mapping[str, UploadedFile] = field(default_factory=dict)
    attached: set[str] = field(default_factory=set)


def _label(path: str) -> str:
    return f'field "{path}"' if ("." in path or "[" in path) else f'parameter "{path}"'


def _wrong_type(path: str, expected: str, depth: float) -> Mismatch:
    return Mismatch(f"{_label(path)} must be {expected}", depth)


def _is_parse_mode(name: str) -> bool:
    return name == "parse_mode" or name.endswith("_parse_mode")


def missing_message(method: str, name: str) -> str:
    if name in _FILE_PARAMETERS:
        return f"there is no {name} in the request"
    if name == "text" and method != "sendMessage":
        return 'parameter "text" is required'
    return _MISSING_MESSAGES.get(name, f'parameter "{name}" is required')


class Validator:
    """Checks calls (and, for tests, result objects) against one compiled spec."""

    def __init__(self, spec: BotApiSpec) -> None:
        self.spec = spec

    # -- calls ------------------------------------------------------------------------------

    def method_fields(self, method: MethodSpec) -> Mapping[str, FieldSpec]:
        if "reply_parameters" in method.fields:
            return {**method.fields, **LEGACY_REPLY_PARAMETERS}
        return method.fields

    def validate_call(
        self,
        method: MethodSpec,
        text_params: Mapping[str, str],
        json_params: Mapping[str, Any],
        files: Mapping[str, UploadedFile],
    ) -> dict[str, Any]:
        """The call's parameters converted to Python values, or a 400 BotApiError."""
        fields = self.method_fields(method)
        supplied: dict[str, tuple[Any, bool]] = {k: (v, True) for k, v in text_params.items()}
        supplied.update({k: (v, False) for k, v in json_params.items() if v is not None})
        for name in supplied:
            if name not in fields:
                raise bad_request(f'unknown parameter "{name}"')
        call = _Call(files)
        result: dict[str, Any] = {}
        for name, spec in fields.items():
            value: Any
            if name in supplied:
                value, textual = supplied[name]
            elif name in files:
                value, textual = files[name], False
            else:
                value, textual = None, False
            if (
                value == ""
                and (method.name, name) not in _EMPTY_ALLOWED
                and (spec.required or Primitive("String") not in spec.types)
            ):
                value = None
            if value is None:
                if spec.required:
                    raise bad_request(missing_message(method.name, name))
                continue
            try:
                result[name] = self._parameter(call, spec, value, textual)
            except Mismatch as exc:
                raise bad_request(exc.message) from None
        for name in files:
            if name in fields or name in call.attached:
                continue
            raise bad_request(f'unknown parameter "{name}"')
        for name in call.attached:
            if name not in files:
                raise bad_request(f'can\'t find the attached file "{name}" in the request')
        return result

    def _parameter(self, call: _Call, spec: FieldSpec, value: Any, textual: bool) -> Any:
        if isinstance(value, UploadedFile):
            if any(isinstance(t, InputFileType) for t in spec.types):
                return value
            raise _wrong_type(spec.name, describe_union(spec.types), 0)
        failures: list[Mismatch] = []
        for expr in spec.types:
            try:
                converted = self._top_value(call, expr, value, spec.name, textual)
            except Mismatch as exc:
                failures.append(exc)
            else:
                if _is_parse_mode(spec.name) and converted and converted not in PARSE_MODES:
                    raise Mismatch("unsupported parse_mode", 0)
                if isinstance(expr, InputFileType) and converted[len(ATTACH_PREFIX) :] in call.files:
                    return call.files[converted[len(ATTACH_PREFIX) :]]
                return converted
        raise _best(failures, spec.name, spec.types, 0)

    def _top_value(self, call: _Call, expr: TypeExpr, value: Any, name: str, textual: bool) -> Any:
        if isinstance(expr, ArrayType | ObjectType) and isinstance(value, str):
            try:
                decoded = json.loads(value)
            except ValueError:
                if textual:
                    raise Mismatch(f'can\'t parse JSON in parameter "{name}"', 0) from None
                raise _wrong_type(name, describe(expr), 0) from None
            return self._check(call, expr, decoded, name, 0)
        if textual and isinstance(value, str) and isinstance(expr, Primitive):
            return _from_text(expr.name, value, name)
        return self._check(call, expr, value, name, 0)

    # -- values inside JSON -----------------------------------------------------------------

    def _check(self, call: _Call, expr: TypeExpr, value: Any, path: str, depth: float) -> Any:
        if isinstance(expr, Primitive):
            return _primitive(expr.name, value, path, depth, call)
        if isinstance(expr, InputFileType):
            if isinstance(value, str) and value.startswith(ATTACH_PREFIX):
                call.attached.add(value[len(ATTACH_PREFIX) :])
                return value
            raise _wrong_type(path, "InputFile (an upload or attach://<name>)", depth)
        if isinstance(expr, ArrayType):
            if not isinstance(value, list):
                raise _wrong_type(path, describe(expr), depth)
            return [self._check(call, expr.item, v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        return self._object(call, self.spec.types[expr.name], value, path, depth)

    def _object(self, call: _Call, spec: ObjectSpec, value: Any, path: str, depth: float) -> Any:
        if spec.subtypes:
            return self._union(call, spec, value, path, depth)
        if not isinstance(value, dict):
            raise _wrong_type(path, spec.name, depth)
        if spec.constant is not None:
            key, constant = spec.constant
            if value.get(key) != constant:
                where = f"{path}.{key}"
                raise Mismatch(f'field "{where}" must be "{constant}"', depth + 0.5, (where, constant))
        for key in value:
            if key not in spec.fields:
                raise Mismatch(f'unknown field "{path}.{key}"', depth + 1)
        out: dict[str, Any] = {}
        for name, field_spec in spec.fields.items():
            item = value.get(name)
            sub = f"{path}.{name}"
            if item is None:
                if field_spec.required:
                    raise Mismatch(f'field "{sub}" is required', depth + 1)
                continue
            out[name] = self._alternatives(call, field_spec.types, item, sub, depth + 1)
            if _is_parse_mode(name) and item and item not in PARSE_MODES:
                raise Mismatch(f'unsupported parse_mode in field "{sub}"', depth + 1)
        return out

    def _union(self, call: _Call, spec: ObjectSpec, value: Any, path: str, depth: float) -> Any:
        candidates = spec.subtypes
        if spec.discriminator is not None and isinstance(value, dict):
            key = spec.discriminator
            tag = value.get(key)
            if tag is None:
                raise Mismatch(f'field "{path}.{key}" is required', depth + 1)
            members = spec.by_discriminator.get(tag) if isinstance(tag, str) else None
            if not members:
                allowed = ", ".join(f'"{v}"' for v in spec.by_discriminator)
                raise Mismatch(f'field "{path}.{key}" must be one of {allowed}', depth + 1)
            candidates = tuple(ObjectType(m) for m in members)
        try:
            return self._alternatives(call, candidates, value, path, depth)
        except Mismatch as exc:
            if exc.depth == depth:
                raise _wrong_type(path, spec.name, depth) from None
            raise

    def _alternatives(
        self, call: _Call, alternatives: tuple[TypeExpr, ...], value: Any, path: str, depth: float
    ) -> Any:
        failures: list[Mismatch] = []
        for expr in alternatives:
            try:
                return self._check(call, expr, value, path, depth)
            except Mismatch as exc:
                failures.append(exc)
        raise _best(failures, path, alternatives, depth)

    # -- results (used by tests to prove the sandbox answers with spec-shaped objects) ----------

    def check_value(self, type_text: str, value: Any) -> None:
        """Raise ValueError naming the first place where `value` does not fit `type_text`."""
        try:
            self._check(_Call(), parse_type(type_text), value, "result", 0)
        except Mismatch as exc:
            raise ValueError(exc.message) from None


def _best(failures: list[Mismatch], path: str, alternatives: tuple[TypeExpr, ...], depth: float) -> Mismatch:
    deepest = max(failures, key=lambda m: m.depth)
    if len(failures) == 1:
        return deepest
    if deepest.depth > depth:
        tied = [m for m in failures if m.depth == deepest.depth]
        constants = [m.constant for m in tied if m.constant is not None]
        if len(constants) == len(tied) > 1 and len({c[0] for c in constants}) == 1:
            values = ", ".join(dict.fromkeys(f'"{c[1]}"' for c in constants))
            return Mismatch(f'field "{constants[0][0]}" must be one of {values}', deepest.depth, None)
        return deepest
    return _wrong_type(path, describe_union(alternatives), depth)


def _primitive(name: str, value: Any, path: str, depth: float, call: _Call) -> Any:
    if name == "String":
        if isinstance(value, str):
            if value.startswith(ATTACH_PREFIX):
                call.attached.add(value[len(ATTACH_PREFIX) :])
            return value
    elif name == "Integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif name == "Float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    elif name == "Boolean" and isinstance(value, bool):
        return value
    raise _wrong_type(path, name, depth)


def _from_text(name: str, value: str, path: str) -> Any:
    if name == "String":
        return value
    if name == "Integer" and _INTEGER.fullmatch(value):
        return int(value)
    if name == "Float":
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    if name == "Boolean":
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise _wrong_type(path, name, 0)
