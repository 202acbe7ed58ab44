"""API conventions: health, OpenAPI, request ids, problem+json errors for bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Api


async def test_health_endpoints(sqlite_api: Api) -> None:
    client = sqlite_api.client
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "keyring": "ok"}


async def test_openapi_and_docs_are_served(sqlite_api: Api) -> None:
    spec = (await sqlite_api.client.get("/openapi.json")).json()
    assert spec["info"]["title"] == "chatgate"
    assert "/v1/integrations/{integration_id}" in spec["paths"]
    schemes = spec["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)
    docs = await sqlite_api.client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_every_response_has_a_request_id(sqlite_api: Api) -> None:
    generated = await sqlite_api.client.get("/health")
    assert len(generated.headers["x-request-id"]) == 32
    echoed = await sqlite_api.client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    hostile = await sqlite_api.client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert hostile.headers["x-request-id"] != "bad id\twith spaces"


async def test_unknown_route_is_a_problem_document(sqlite_api: Api) -> None:
    response = await sqlite_api.client.get("/v1/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 404
    assert "GET /v1/nope" in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]


async def test_wrong_method_is_405(sqlite_api: Api) -> None:
    response = await sqlite_api.client.put("/health")
    assert response.status_code == 405
    assert response.json()["detail"] == "PUT is not allowed on /health"


async def test_malformed_json_is_400_with_the_reason(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    response = await sqlite_api.client.post(
        "/v1/integrations",
        content=b'{"kind": "webhook", "name": ',
        headers={**tenant.key_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "malformed_json"
    assert "not valid JSON" in body["detail"]
    assert "Traceback" not in response.text


async def test_wrong_types_name_the_field(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    response = await sqlite_api.client.post(
        "/v1/integrations",
        json={"kind": "webhook", "name": 42, "credentials": {"secret": 7}},
        headers=tenant.key_headers,
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"name", "credentials.secret"} <= fields


async def test_unknown_fields_are_refused(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    response = await sqlite_api.client.post(
        "/v1/integrations",
        json={"kind": "webhook", "name": "x", "colour": "blue"},
        headers=tenant.key_headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "colour", "location": "body", "message": "unknown field"}]


async def test_unknown_enum_value_lists_the_choices(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    response = await sqlite_api.client.post(
        "/v1/integrations", json={"kind": "fax", "name": "x"}, headers=tenant.key_headers
    )
    assert response.status_code == 422
    assert "telegram_bot" in response.json()["detail"]


async def test_oversized_body_is_413_and_nothing_is_written(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    limit = sqlite_api.container.settings.max_body_bytes
    big = json.dumps({"kind": "webhook", "name": "big", "config": {"blob": "x" * (limit + 10)}})
    response = await sqlite_api.client.post(
        "/v1/integrations", content=big, headers={**tenant.key_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert str(limit) in response.json()["detail"]
    listed = await sqlite_api.client.get("/v1/integrations", headers=tenant.key_headers)
    assert listed.json()["data"] == []


async def test_oversized_chunked_body_is_413(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    limit = sqlite_api.container.settings.max_body_bytes

    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"kind": "webhook", "name": "x", "config": {"blob": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}}'

    response = await sqlite_api.client.post(
        "/v1/integrations",
        content=chunks(),
        headers={**tenant.key_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413


async def test_bad_cursor_is_a_clear_422(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    response = await sqlite_api.client.get("/v1/integrations?cursor=garbage!!", headers=tenant.key_headers)
    assert response.status_code == 422
    assert "cursor" in response.json()["detail"]


async def test_limit_out_of_range_is_422(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    response = await sqlite_api.client.get("/v1/integrations?limit=5000", headers=tenant.key_headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "limit"


def test_ids_sort_in_creation_order_within_a_millisecond() -> None:
    from chatgate.domain.ids import new_id

    made = [new_id("x") for _ in range(5000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ids_made_for_a_batch_sort_between_the_ids_made_around_them() -> None:
    from chatgate.domain.ids import new_id, new_ids

    before = new_id("raw")
    batch = new_ids("raw", 300)
    after = new_id("raw")
    made = [before, *batch, after]
    assert made == sorted(made)
    assert len(set(made)) == 302
    assert all(i.startswith("raw_") and len(i) == 30 for i in batch)
    assert new_ids("raw", 0) == []


def test_a_batch_of_ids_spells_each_value_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's shared head is only a shortcut: every id is the ULID text of its value, also
    when the run carries past its low bits."""
    from ulid import ULID

    from chatgate.domain import ids

    later_ms = (1 << 47) + 12345  # after now, so the next value continues from the state set here
    for low_start in (0, (1 << 20) - 3):  # no carry, and a carry into the higher bits
        random_part = (7 << 40) | low_start
        first = (later_ms << 80) | random_part
        monkeypatch.setattr(ids, "_last_ms", later_ms)
        monkeypatch.setattr(ids, "_last_random", random_part - 1)
        made = ids.new_ids("raw", 6)
        assert [int(ULID.from_str(m.removeprefix("raw_").upper())) for m in made] == [
            first + i for i in range(6)
        ]


def test_ids_are_the_ulid_text_of_their_value() -> None:
    """The table-driven encoder spells exactly what python-ulid spells (lower case)."""
    import secrets

    from ulid import ULID

    from chatgate.domain.ids import _encode, new_id

    for value in [0, 1, 2**128 - 1, *(secrets.randbits(128) for _ in range(2000))]:
        assert _encode(value) == str(ULID.from_int(value)).lower()
    made = new_id("raw")
    assert made.startswith("raw_")
    assert len(made) == 30
    assert ULID.from_str(made.removeprefix("raw_").upper()).timestamp > 1.7e9
