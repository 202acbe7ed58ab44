"""The Bot API spec (`telegram-bot-api.json`) compiled into small immutable structures, once per process.

Every field's `types[]` becomes a tuple of type expressions: a primitive (`Integer`, `Float`,
`Boolean`, `String`), `InputFile`, `Array of X` (nested for `Array of Array of X`) or an object
type by name. Object types keep their fields, their `subtypes` (the union members, which may
themselves be expressions such as `String`) and, for union members, the constant value of their
first field (`type`/`status`/`source`, read from "always \"x\"" / "must be x" in the description)
so a union can be resolved by that discriminator.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatgate.sandbox.specs import TELEGRAM_BOT_API

PRIMITIVES = frozenset({"Integer", "Float", "Boolean", "String"})
_ARRAY_PREFIX = "Array of "
_CONSTANT = re.compile(r'(?:always|must be) "?([A-Za-z0-9_]+)"?')
_DISCRIMINATOR_FIELDS = ("type", "status", "source")


@dataclass(frozen=True, slots=True)
class Primitive:
    name: str


@dataclass(frozen=True, slots=True)
class InputFileType:
    pass


@dataclass(frozen=True, slots=True)
class ArrayType:
    item: TypeExpr


@dataclass(frozen=True, slots=True)
class ObjectType:
    name: str


TypeExpr = Primitive | InputFileType | ArrayType | ObjectType


def describe(expr: TypeExpr) -> str:
    """The spec's own spelling of a type expression, for error messages."""
    if isinstance(expr, Primitive):
        return expr.name
    if isinstance(expr, InputFileType):
        return "InputFile"
    if isinstance(expr, ArrayType):
        return _ARRAY_PREFIX + describe(expr.item)
    return expr.name


def describe_union(exprs: tuple[TypeExpr, ...]) -> str:
    return " or ".join(describe(e) for e in exprs)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    types: tuple[TypeExpr, ...]
    required: bool


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    name: str
    fields: Mapping[str, FieldSpec]
    subtypes: tuple[TypeExpr, ...]
    # For union members: (field, value) that identifies this member, e.g. ("type", "photo").
    constant: tuple[str, str] | None
    # For unions: discriminator field and value -> member names (several members may share one).
    discriminator: str | None
    by_discriminator: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    fields: Mapping[str, FieldSpec]
    returns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BotApiSpec:
    version: str
    methods: Mapping[str, MethodSpec]  # keyed by lower-case name: Telegram ignores the case
    types: Mapping[str, ObjectSpec]
    update_types: tuple[str, ...]  # Update's optional fields, i.e. the kinds of update

    def method(self, name: str) -> MethodSpec | None:
        return self.methods.get(name.lower())


def parse_type(text: str) -> TypeExpr:
    if text.startswith(_ARRAY_PREFIX):
        return ArrayType(parse_type(text[len(_ARRAY_PREFIX) :]))
    if text in PRIMITIVES:
        return Primitive(text)
    if text == "InputFile":
        return InputFileType()
    return ObjectType(text)


def _fields(raw: list[dict[str, Any]] | None) -> dict[str, FieldSpec]:
    return {
        f["name"]: FieldSpec(f["name"], tuple(parse_type(t) for t in f["types"]), bool(f["required"]))
        for f in raw or []
    }


def _constant(raw: dict[str, Any]) -> tuple[str, str] | None:
    if not raw.get("subtype_of") or not raw.get("fields"):
        return None
    first = raw["fields"][0]
    if first["name"] not in _DISCRIMINATOR_FIELDS:
        return None
    match = _CONSTANT.search(first.get("description", ""))
    return (first["name"], match.group(1)) if match else None


def compile_spec(raw: Mapping[str, Any]) -> BotApiSpec:
    constants = {name: _constant(t) for name, t in raw["types"].items()}
    types: dict[str, ObjectSpec] = {}
    for name, t in raw["types"].items():
        subtypes = tuple(parse_type(s) for s in t.get("subtypes") or [])
        members = [s.name for s in subtypes if isinstance(s, ObjectType)]
        member_constants = [constants.get(m) for m in members]
        discriminator: str | None = None
        by_value: dict[str, list[str]] = {}
        if members and all(c is not None for c in member_constants):
            fields_used = {c[0] for c in member_constants if c is not None}
            if len(fields_used) == 1:
                discriminator = fields_used.pop()
                for member, const in zip(members, member_constants, strict=True):
                    assert const is not None
                    by_value.setdefault(const[1], []).append(member)
        types[name] = ObjectSpec(
            name=name,
            fields=_fields(t.get("fields")),
            subtypes=subtypes,
            constant=constants[name],
            discriminator=discriminator,
            by_discriminator={k: tuple(v) for k, v in by_value.items()},
        )
    methods = {
        name.lower(): MethodSpec(name, _fields(m.get("fields")), tuple(m.get("returns") or ()))
        for name, m in raw["methods"].items()
    }
    update_types = tuple(f for f in types["Update"].fields if f != "update_id")
    return BotApiSpec(str(raw.get("version", "")), methods, types, update_types)


@functools.cache
def load_spec(path: Path = TELEGRAM_BOT_API) -> BotApiSpec:
    """The compiled spec; parsed once per process (and per path)."""
    with path.open(encoding="utf-8") as handle:
        return compile_spec(json.load(handle))
