"""Twilio's OpenAPI description of the Messages API, as JSON Schema for validation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from chatgate.sandbox.specs import TWILIO_MESSAGES_API

MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"


def _to_json_schema(node: Any, components: Mapping[str, Any]) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: local $refs inlined, `nullable` turned into null types."""
    if isinstance(node, list):
        return [_to_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return _to_json_schema(components[ref.rsplit("/", 1)[1]], components)
    result = {k: _to_json_schema(v, components) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and isinstance(result.get("type"), str):
        result["type"] = [result["type"], "null"]
        if "enum" in result:
            result["enum"] = [*result["enum"], None]
    return result


@cache
def _spec() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(TWILIO_MESSAGES_API.read_text(encoding="utf-8"))
    return loaded


def create_message_schema() -> dict[str, Any]:
    """The `CreateMessageRequest` schema as JSON Schema (from Twilio's OpenAPI description)."""
    spec = _spec()
    operation = spec["paths"][MESSAGES_PATH]["post"]
    raw = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    schema: dict[str, Any] = _to_json_schema(raw, spec["components"]["schemas"])
    return schema


def message_resource_schema() -> dict[str, Any]:
    """The `api.v2010.account.message` response schema as JSON Schema."""
    spec = _spec()
    components = spec["components"]["schemas"]
    schema: dict[str, Any] = _to_json_schema(components["api.v2010.account.message"], components)
    return schema
