"""RFC 9457 problem details: every error leaves as `application/problem+json`."""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import JSONResponse

from chatgate.observability.context import request_id_var

PROBLEM_TYPE_BASE = "https://chatgate.dev/problems/"


class ProblemResponse(JSONResponse):
    media_type = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    retry_after: float | None = None,
    extra: dict[str, Any] | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        body["retry_after"] = round(retry_after, 3)
    return ProblemResponse(body, status_code=status, headers=headers)
