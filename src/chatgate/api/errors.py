"""The one place where errors become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from chatgate.api.problems import problem
from chatgate.domain import errors as e

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[e.ChatgateError], int, str]] = [
    (e.PayloadTooLarge, 413, "Payload too large"),
    (e.InvalidInput, 422, "Invalid input"),
    (e.Unauthenticated, 401, "Unauthenticated"),
    (e.PermissionDenied, 403, "Permission denied"),
    (e.NotFound, 404, "Not found"),
    (e.Conflict, 409, "Conflict"),
    (e.RateLimited, 429, "Too many requests"),
    (e.ServiceUnavailable, 503, "Service unavailable"),
    (e.CryptoError, 500, "Secret could not be decrypted"),
    (e.ProviderRateLimited, 503, "Provider rate limit"),
    (e.AuthRevoked, 409, "Provider credentials revoked"),
    (e.PermanentProviderError, 422, "Provider refused the request"),
    (e.TransientProviderError, 502, "Provider unavailable"),
    (e.ChatgateError, 500, "Internal error"),
]

_HTTP_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    413: "Payload too large",
    415: "Unsupported media type",
}


def status_for(error: e.ChatgateError) -> tuple[int, str]:
    for cls, status, title in _STATUS:
        if isinstance(error, cls):
            return status, title
    return 500, "Internal error"


def chatgate_error_response(request: Request, error: e.ChatgateError) -> Response:
    status, title = status_for(error)
    retry_after = error.retry_after if isinstance(error, e.RateLimited | e.ProviderRateLimited) else None
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    response = problem(
        status, title, error.message, code=error.code, instance=request.url.path, retry_after=retry_after
    )
    response.headers.update(headers)
    return response


def _validation_errors(exc: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    items: list[dict[str, Any]] = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            reason = err.get("ctx", {}).get("error", "invalid JSON")
            return 400, f"the request body is not valid JSON: {reason}", []
        location = [str(part) for part in err.get("loc", ())]
        field = ".".join(location[1:]) if len(location) > 1 else ".".join(location)
        message = str(err.get("msg", "invalid value"))
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        items.append({"field": field, "location": location[0] if location else "body", "message": message})
    summary = "; ".join(f"{i['field'] or i['location']}: {i['message']}" for i in items[:5])
    return 422, f"the request is invalid — {summary}", items


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(e.ChatgateError)
    async def _chatgate(request: Request, exc: e.ChatgateError) -> Response:
        return chatgate_error_response(request, exc)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> Response:
        # A unique or foreign-key constraint caught a race the service's own checks missed.
        detail = "the request conflicts with existing data (a duplicate, or a reference to something deleted)"
        return problem(409, "Conflict", detail, code="conflict", instance=request.url.path)

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> Response:
        log.error("database error on %s: %s", request.url.path, type(exc.orig).__name__)
        detail = "the database is not available right now; retry shortly"
        return problem(503, "Service unavailable", detail, code="service_unavailable", retry_after=5)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        status, detail, items = _validation_errors(exc)
        code = "malformed_json" if status == 400 else "invalid_input"
        title = "Malformed JSON" if status == 400 else "Invalid input"
        return problem(status, title, detail, code=code, instance=request.url.path, errors=items)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = _HTTP_TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is no route {request.method} {request.url.path}"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        code = title.lower().replace(" ", "_")
        response = problem(exc.status_code, title, detail, code=code, instance=request.url.path)
        if exc.headers:
            response.headers.update(exc.headers)
        return response
