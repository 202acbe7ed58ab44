"""JSON Schemas of the event envelope and of every event type's payload (version 1).

`python -m chatgate.domain.event_schemas docs/events` writes them; a test keeps the
published files identical to these models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from chatgate.domain.events import EVENT_VERSION, PAYLOADS, EventEnvelope


def schemas() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {"envelope": EventEnvelope.model_json_schema()}
    for event_type, model in PAYLOADS.items():
        schema = model.model_json_schema()
        schema["title"] = f"{event_type.value} (v{EVENT_VERSION})"
        result[event_type.value] = schema
    return result


def render() -> dict[str, str]:
    return {
        f"{name}.v{EVENT_VERSION}.schema.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for name, schema in schemas().items()
    }


def main(argv: list[str]) -> int:
    target = Path(argv[1] if len(argv) > 1 else "docs/events")
    target.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (target / name).write_text(text, "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
