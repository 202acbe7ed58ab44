"""Meta's WhatsApp Cloud API OpenAPI spec (Graph v23.0), loaded once, as JSON Schema validators.

The spec is Meta's own file (`chatgate.sandbox.specs.WHATSAPP_CLOUD_API`, about 1 MB of YAML). It
is parsed once per process and every validator is built once and cached.

Plain JSON Schema rejects every one of the spec's 50 request examples, because of an OpenAPI
habit: `TextMessage = allOf[BaseMessageProperties, {additionalProperties: false, properties:
{type, text}}]`. In JSON Schema each `allOf` branch is checked on its own, so the second branch
forbids `to`, `messaging_product`… that the first requires. The authors meant "the union of the
properties, nothing else", so `_Normalizer` merges such `allOf` lists into one object schema
(properties and `required` united, closed if any branch was closed). No constraint is dropped:
a property both branches define becomes `allOf` of the two definitions.

Supplements, kept small and listed here because they change what "valid" means:

1. `READ_RECEIPT_SCHEMA`: the operation's examples include "Send typing indicator and read
   receipt" (`{"messaging_product", "status": "read", "message_id", "typing_indicator"}`), but
   its `Message` schema has no branch for it. The schema below is written from that example.
2. `cta_url` interactive messages (one URL button) are a documented Cloud API feature missing
   from the spec; `InteractiveObject.type` gains `cta_url` and `ActionObject` a branch for it.
3. `TemplateComponent.index` has the pattern `^[2-6, 11-14]$`, a broken character class that
   rejects `"0"`, the index of the first button, used by the spec's own examples. Its description
   says "Position index of the button (0-9)", so the pattern becomes `^[0-9]$`.

Left as published (our bodies satisfy them): `LanguageObject` requires `policy`; location
`latitude`/`longitude` are typed as strings.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from chatgate.sandbox.specs import WHATSAPP_CLOUD_API

SPEC_URI = "urn:chatgate:whatsapp-business-messaging-api:v23.0"
SEND_MESSAGE_PATH = "/{Version}/{Phone-Number-ID}/messages"
READ_RECEIPT = "ChatgateReadReceipt"  # the name supplement 1 is registered under
_SCHEMA_PREFIX = "#/components/schemas/"
_MERGEABLE_KEYS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "description",
        "title",
        "example",
        "discriminator",
    }
)
_MAX_MESSAGE = 300

READ_RECEIPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Mark a received message as read, optionally showing a typing indicator (chatgate supplement).",
    "additionalProperties": False,
    "required": ["messaging_product", "status", "message_id"],
    "properties": {
        "messaging_product": {"type": "string", "enum": ["whatsapp"]},
        "status": {"type": "string", "enum": ["read"]},
        "message_id": {"type": "string", "minLength": 1},
        "typing_indicator": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type"],
            "properties": {"type": {"type": "string", "enum": ["text"]}},
        },
    },
}

CTA_URL_ACTION: dict[str, Any] = {
    "description": "A single URL button (chatgate supplement: cta_url is missing from the v23.0 spec).",
    "required": ["name", "parameters"],
    "properties": {
        "name": {"type": "string", "enum": ["cta_url"]},
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "required": ["display_text", "url"],
            "properties": {
                "display_text": {"type": "string", "minLength": 1, "maxLength": 20},
                "url": {"type": "string", "minLength": 1},
            },
        },
    },
}


@functools.cache
def raw_spec() -> dict[str, Any]:
    """The spec exactly as published (parsed once; do not mutate)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parses the 1 MB file ~10x faster
    with WHATSAPP_CLOUD_API.open("rb") as handle:
        data = yaml.load(handle, Loader=loader)  # noqa: S506 - SafeLoader/CSafeLoader only
    if not isinstance(data, dict):
        raise TypeError(f"{WHATSAPP_CLOUD_API.name} is not an OpenAPI document")
    return data


def _supplement(schemas: dict[str, Any]) -> None:
    interactive_type = schemas["InteractiveObject"]["properties"]["type"]
    if "cta_url" not in interactive_type["enum"]:
        interactive_type["enum"] = [*interactive_type["enum"], "cta_url"]
        schemas["ActionObject"]["oneOf"] = [*schemas["ActionObject"]["oneOf"], CTA_URL_ACTION]
    schemas["TemplateComponent"]["properties"]["index"]["pattern"] = "^[0-9]$"
    schemas[READ_RECEIPT] = READ_RECEIPT_SCHEMA


class _Normalizer:
    """Merges `allOf` lists of plain object schemas (see the module docstring)."""

    def __init__(self, schemas: Mapping[str, Any]) -> None:
        self._schemas = schemas
        self._done: dict[str, Any] = {}
        self._busy: set[str] = set()

    def named(self, name: str) -> Any:
        if name in self._done:
            return self._done[name]
        if name in self._busy:
            return None  # a cycle: the caller keeps its allOf unmerged
        self._busy.add(name)
        result = self.node(self._schemas[name])
        self._busy.discard(name)
        self._done[name] = result
        return result

    def node(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.node(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: self.node(value) for key, value in node.items()}
        parts = out.get("allOf")
        if isinstance(parts, list):
            siblings = {key: value for key, value in out.items() if key != "allOf"}
            merged = self._merge([*parts, siblings] if siblings else parts)
            if merged is not None:
                return merged
        return out

    def _resolve(self, part: Any) -> Any:
        if isinstance(part, dict) and set(part) == {"$ref"} and str(part["$ref"]).startswith(_SCHEMA_PREFIX):
            return self.named(str(part["$ref"])[len(_SCHEMA_PREFIX) :])
        return part

    def _merge(self, parts: list[Any]) -> dict[str, Any] | None:
        resolved = [self._resolve(part) for part in parts]
        properties: dict[str, Any] = {}
        required: list[str] = []
        closed = False
        for part in resolved:
            if not isinstance(part, dict) or not set(part) <= _MERGEABLE_KEYS:
                return None
            if part.get("type", "object") != "object":
                return None
            extra = part.get("additionalProperties", True)
            if extra is False:
                closed = True
            elif extra is not True:
                return None
            for key, schema in (part.get("properties") or {}).items():
                if key in properties and properties[key] != schema:
                    properties[key] = {"allOf": [properties[key], schema]}
                else:
                    properties[key] = schema
            required.extend(key for key in part.get("required") or [] if key not in required)
        merged: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            merged["required"] = required
        if closed:
            merged["additionalProperties"] = False
        return merged


@functools.cache
def normalized_spec() -> dict[str, Any]:
    """The spec with `allOf` merged and the supplements applied (built once; do not mutate)."""
    raw = raw_spec()
    schemas = copy.deepcopy(raw["components"]["schemas"])
    _supplement(schemas)
    normalizer = _Normalizer(schemas)
    doc = dict(raw)
    doc["components"] = {**raw["components"], "schemas": {name: normalizer.named(name) for name in schemas}}
    doc["paths"] = normalizer.node(raw["paths"])
    return doc


@functools.cache
def _registry(normalized: bool) -> Registry[Any]:
    contents = normalized_spec() if normalized else raw_spec()
    resource: Resource[Any] = Resource.from_contents(contents, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


@functools.cache
def schema_validator(name: str, *, normalized: bool = True) -> jsonschema.Draft202012Validator:
    """A validator for `components.schemas[name]`; `normalized=False` uses the spec verbatim."""
    doc = normalized_spec() if normalized else raw_spec()
    if name not in doc["components"]["schemas"]:
        raise KeyError(f"the spec has no schema named {name!r}")
    return jsonschema.Draft202012Validator(
        {"$ref": f"{SPEC_URI}{_SCHEMA_PREFIX}{name}"}, registry=_registry(normalized)
    )


def request_schema_name(path: str, method: str) -> str:
    """The `components.schemas` name of an operation's JSON request body."""
    operation = raw_spec()["paths"][path][method.lower()]
    ref = str(operation["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    return ref[len(_SCHEMA_PREFIX) :]


def request_examples(path: str = SEND_MESSAGE_PATH, method: str = "post") -> dict[str, Any]:
    """The operation's named request examples, `{name: body}`."""
    content = raw_spec()["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]
    return {name: example["value"] for name, example in content.get("examples", {}).items()}


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(body)"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator in ("oneOf", "anyOf") and error.context:
        return _describe(jsonschema.exceptions.best_match(error.context))
    message = error.message
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return f"{_where(error)}: {message}"


def problems(validator: jsonschema.Draft202012Validator, instance: Any) -> list[str]:
    """Every violation as `path: what is wrong`, in document order."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    return [_describe(error) for error in errors]


def send_message_problems(body: Any) -> list[str]:
    """Why `body` is not a valid `POST /{Version}/{Phone-Number-ID}/messages` request (empty: valid).

    The message `type` picks the branch through the schema's discriminator, so the problems
    name that branch's fields rather than "not valid under any of the given schemas"; a body
    with `status` and no `type` is a read receipt (supplement 1).
    """
    if not isinstance(body, dict):
        return ["(body): must be a JSON object"]
    if "type" not in body and "status" in body:
        return problems(schema_validator(READ_RECEIPT), body)
    name = request_schema_name(SEND_MESSAGE_PATH, "post")
    mapping: Mapping[str, str] = normalized_spec()["components"]["schemas"][name]["discriminator"]["mapping"]
    kind = body.get("type")
    if kind is None:
        return ["type: is required"]
    if not isinstance(kind, str) or kind not in mapping:
        return [f"type: {kind!r} is not one of {sorted(mapping)}"]
    return problems(schema_validator(mapping[kind][len(_SCHEMA_PREFIX) :]), body)
