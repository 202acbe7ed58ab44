"""Telegram user accounts, login through the HTTP API against the in-process FakeTelegram:
phone → code (app / SMS, resend) → 2FA → active, QR (refreshed before expiry, images, 2FA), every
step an `account.login` event, and every mapped Telegram error as a clear HTTP answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from telethon import errors as tl_errors  # type: ignore[import-untyped, unused-ignore]

from chatgate.providers.telegram_user.fake import FakeTelegram
from tests.account_helpers import (
    ACCOUNT_SETTINGS,
    account_api,
    events,
    login,
    login_states,
    new_phone,
    start_code,
    step,
)
from tests.conftest import Api, make_settings
from tests.webhook_helpers import eventually


@pytest.fixture(scope="module")
def fake() -> FakeTelegram:
    return FakeTelegram()


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory, fake: FakeTelegram) -> AsyncIterator[Api]:
    tmp: Path = tmp_path_factory.mktemp("accounts-login")
    async with account_api(make_settings(tmp, None, **ACCOUNT_SETTINGS), fake) as running:
        yield running


@pytest.fixture(autouse=True)
def default_codes(fake: FakeTelegram) -> None:
    fake.configure_codes("app", "sms", timeout=60)
    fake.qr_ttl = 30


def _states(found: list[dict[str, object]]) -> list[object]:
    return [e["state"] for e in found]


async def test_phone_code_active_with_app_code_and_sms_resend(api: Api, fake: FakeTelegram) -> None:
    tenant = await api.tenant()
    phone = new_phone()
    user = fake.add_account(phone, "Ada", "Lovelace", username="ada_" + phone[-6:])

    started = await start_code(api, tenant, phone)
    assert started["status"] == "pending"
    assert started["login"] == {"state": "code_sent", "code_type": "app", "next_type": "sms", "timeout": 60}
    first_code = fake.last_code(phone)

    resent = await step(api, tenant, started["id"], "resend")
    assert resent["login"]["code_type"] == "sms"  # the next type
    assert resent["login"]["next_type"] is None
    del first_code

    active = await step(api, tenant, started["id"], "code", code=fake.last_code(phone))
    assert active["status"] == "active"
    assert active["phone"] == phone
    assert active["username"] == user.username
    assert active["login"] == {"state": "active"}

    found = await login_states(api, tenant, started["id"])
    assert _states(found) == ["code_sent", "code_sent", "active"]
    assert [(e["code_type"], e["next_type"]) for e in found[:2]] == [("app", "sms"), ("sms", None)]
    assert all(e["phone"] == phone and e["provider"] == "telegram_user" for e in found)
    changed = await events(api, tenant, "integration.status_changed", started["id"])
    assert [e["data"]["status"] for e in changed][-1] == "active"


async def test_code_sent_by_sms_is_reported_as_sms(api: Api, fake: FakeTelegram) -> None:
    tenant = await api.tenant()
    phone = new_phone()
    fake.add_account(phone)
    fake.configure_codes("sms", "call", timeout=120)
    started = await start_code(api, tenant, phone)
    assert started["login"] == {"state": "code_sent", "code_type": "sms", "next_type": "call", "timeout": 120}
    resent = await step(api, tenant, started["id"], "resend")
    assert (resent["login"]["code_type"], resent["login"]["next_type"]) == ("call", None)
    # No other way left: a clear 409, and the login goes on with the code already sent.
    again = await api.client.post(f"/v1/telegram/accounts/{started['id']}/resend", headers=tenant.key_headers)
    assert again.status_code == 409, again.text
    assert "no other way left" in again.json()["detail"]
    active = await step(api, tenant, started["id"], "code", code=fake.last_code(phone))
    assert active["status"] == "active"


async def test_phone_code_password_active(api: Api, fake: FakeTelegram) -> None:
    tenant = await api.tenant()
    phone = new_phone()
    fake.add_account(phone, "Grace", password="s3cret pass", password_hint="the usual")
    started = await start_code(api, tenant, phone)
    needs = await step(api, tenant, started["id"], "code", code=fake.last_code(phone))
    assert needs["login"] == {"state": "password_needed", "password_hint": "the usual"}
    assert needs["status"] == "pending"

    wrong = await api.client.post(
        f"/v1/telegram/accounts/{started['id']}/password",
        json={"password": "nope"},
        headers=tenant.key_headers,
    )
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["detail"] == "wrong 2FA password"

    active = await step(api, tenant, started["id"], "password", password="s3cret pass")
    assert active["status"] == "active"
    found = await login_states(api, tenant, started["id"])
    assert _states(found) == ["code_sent", "password_needed", "password_needed", "active"]
    assert found[1]["password_hint"] == "the usual"
    assert found[2]["error_message"] == "wrong 2FA password"  # the failed try is reported too


async def test_steps_out_of_order_are_refused(api: Api, fake: FakeTelegram) -> None:
    tenant = await api.tenant()
    phone = new_phone()
    fake.add_account(phone)
    started = await start_code(api, tenant, phone)
    early = await api.client.post(
        f"/v1/telegram/accounts/{started['id']}/password", json={"password": "x"}, headers=tenant.key_headers
    )
    assert early.status_code == 409
    assert "'code_sent'" in early.json()["detail"]
    await step(api, tenant, started["id"], "code", code=fake.last_code(phone))
    late = await api.client.post(
        f"/v1/telegram/accounts/{started['id']}/code", json={"code": "12345"}, headers=tenant.key_headers
    )
    assert late.status_code == 409


async def test_qr_login_refreshes_the_code_then_two_step(api: Api, fake: FakeTelegram) -> None:
    tenant = await api.tenant()
    phone = new_phone()
    fake.add_account(phone, "Qr", password="qr pass")
    fake.qr_ttl = 2  # Telegram's tokens live ~30 s; here a refresh is due within 2 s

    response = await api.client.post(
        "/v1/telegram/accounts", json={"method": "qr"}, headers=tenant.key_headers
    )
    assert response.status_code == 201, response.text
    started = response.json()
    first_url = started["login"]["qr_url"]
    first_expiry = datetime.fromisoformat(started["login"]["qr_expires_at"])
    assert first_url.startswith("tg://login?token=")
    assert started["login"]["state"] == "qr_pending"

    png = await api.client.get(f"/v1/telegram/accounts/{started['id']}/qr.png", headers=tenant.key_headers)
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    svg = await api.client.get(f"/v1/telegram/accounts/{started['id']}/qr.svg", headers=tenant.key_headers)
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content

    async def refreshed() -> list[dict[str, object]]:
        found = await login_states(api, tenant, started["id"])
        return found if len(found) >= 2 else []

    found = await eventually(refreshed, timeout=10)
    assert _states(found)[:2] == ["qr_pending", "qr_pending"]
    new_url = str(found[1]["qr_url"])
    assert new_url != first_url
    envelope = (await events(api, tenant, "account.login", started["id"]))[1]
    refreshed_at = datetime.fromisoformat(envelope["created_at"].replace("Z", "+00:00"))
    assert refreshed_at < first_expiry, "the new code must be on screen before the old one expires"
    with pytest.raises(tl_errors.AuthTokenInvalidError):
        fake.accept_qr(first_url, phone)  # the replaced token no longer scans

    current = await api.client.get(f"/v1/telegram/accounts/{started['id']}", headers=tenant.key_headers)
    url = current.json()["config"]["login"]["qr_url"]
    fake.accept_qr(url, phone)
    await api.container.telegram_accounts.wait_qr(started["id"])
    found = await login_states(api, tenant, started["id"])
    assert found[-1]["state"] == "password_needed"
    no_qr = await api.client.get(f"/v1/telegram/accounts/{started['id']}/qr.png", headers=tenant.key_headers)
    assert no_qr.status_code == 409

    active = await step(api, tenant, started["id"], "password", password="qr pass")
    assert active["status"] == "active"
    assert active["phone"] == phone
    assert _states(await login_states(api, tenant, started["id"]))[-2:] == ["password_needed", "active"]


async def test_qr_login_without_two_step(api: Api, fake: FakeTelegram) -> None:
    tenant = await api.tenant()
    phone = new_phone()
    fake.add_account(phone, "Quick")
    response = await api.client.post(
        "/v1/telegram/accounts", json={"method": "qr", "name": "quick"}, headers=tenant.key_headers
    )
    started = response.json()
    fake.accept_qr(started["login"]["qr_url"], phone)
    await api.container.telegram_accounts.wait_qr(started["id"])
    got = await api.client.get(f"/v1/telegram/accounts/{started['id']}", headers=tenant.key_headers)
    assert got.json()["status"] == "active"
    assert got.json()["config"]["phone"] == phone
    assert _states(await login_states(api, tenant, started["id"])) == ["qr_pending", "active"]


# --- errors ---------------------------------------------------------------------------------


async def _post(
    api: Api, headers: dict[str, str], path: str, body: dict[str, str]
) -> tuple[int, dict[str, str], str]:
    response = await api.client.post(path, json=body, headers=headers)
    detail = response.json().get("detail", "")
    return response.status_code, dict(response.headers), str(detail)


@pytest.mark.parametrize(
    ("phone", "message"),
    [
        ("hello", "is not a phone number"),  # ours, before asking Telegram
        ("+0123456789", "the phone number is not valid"),  # Telegram's PHONE_NUMBER_INVALID
    ],
)
async def test_invalid_phone_numbers(api: Api, phone: str, message: str) -> None:
    tenant = await api.tenant()
    status, _, detail = await _post(api, tenant.key_headers, "/v1/telegram/accounts", {"phone": phone})
    assert status == 422
    assert message in detail


async def test_start_errors(api: Api, fake: FakeTelegram) -> None:
    tenant = await api.tenant()
    path = "/v1/telegram/accounts"

    flooded = new_phone()
    fake.add_account(flooded)
    fake.set_flood_wait(42, "send_code")
    status, headers, detail = await _post(api, tenant.key_headers, path, {"phone": flooded})
    assert status == 429
    assert headers["retry-after"] == "42"
    assert "wait 42 seconds" in detail

    banned = new_phone()
    fake.add_account(banned)
    fake.ban(banned)
    status, _, detail = await _post(api, tenant.key_headers, path, {"phone": banned})
    assert (status, detail) == (403, "this number is banned by Telegram")

    many = new_phone()
    fake.fail_next("send_code", tl_errors.PhoneNumberFloodError(request=None))
    status, headers, detail = await _post(api, tenant.key_headers, path, {"phone": many})
    assert status == 429
    assert detail.startswith("too many attempts")
    assert int(headers["retry-after"]) > 0

    # Nothing was created for the refused starts.
    listed = await api.client.get("/api/integrations/telegram/accounts", headers=tenant.key_headers)
    assert listed.json() == []


async def test_code_and_password_errors(api: Api, fake: FakeTelegram) -> None:
    tenant = await api.tenant()
    phone = new_phone()
    fake.add_account(phone, password="pw", password_hint=None)
    started = await start_code(api, tenant, phone)
    code_path = f"/v1/telegram/accounts/{started['id']}/code"

    wrong = "00000" if fake.last_code(phone) != "00000" else "11111"
    status, _, detail = await _post(api, tenant.key_headers, code_path, {"code": wrong})
    assert (status, detail) == (422, "the login code is wrong")

    fake.set_flood_wait(7, "sign_in_code")
    status, headers, detail = await _post(api, tenant.key_headers, code_path, {"code": wrong})
    assert (status, headers["retry-after"]) == (429, "7")
    assert "wait 7 seconds" in detail
    fake.fail_next("sign_in_code", ConnectionError("network down"))
    status, _, detail = await _post(api, tenant.key_headers, code_path, {"code": wrong})
    assert status == 502
    assert detail.startswith("cannot reach Telegram")
    # Neither ends the login: retried (after the wait), the right code goes through.
    needs = await step(api, tenant, started["id"], "code", code=fake.last_code(phone))
    assert needs["login"]["state"] == "password_needed"
    found = await login_states(api, tenant, started["id"])
    assert [(e["state"], e["error_code"]) for e in found] == [
        ("code_sent", None),
        ("code_sent", "invalid_input"),
        ("code_sent", "rate_limited"),
        ("code_sent", "provider_transient"),
        ("password_needed", None),
    ]

    again = await start_code(api, tenant, phone)
    fake.advance(fake.code_ttl + 1)
    try:
        status, _, detail = await _post(
            api,
            tenant.key_headers,
            f"/v1/telegram/accounts/{again['id']}/code",
            {"code": fake.last_code(phone)},
        )
    finally:
        fake.advance(-(fake.code_ttl + 1))
    assert (status, detail) == (422, "the login code has expired: request a new one")

    third = await start_code(api, tenant, phone)
    await step(api, tenant, third["id"], "code", code=fake.last_code(phone))
    password_path = f"/v1/telegram/accounts/{third['id']}/password"
    status, _, detail = await _post(api, tenant.key_headers, password_path, {"password": "bad"})
    assert (status, detail) == (422, "wrong 2FA password")
    fake.fail_next("sign_in_password", tl_errors.PhonePasswordFloodError(request=None))
    status, headers, detail = await _post(api, tenant.key_headers, password_path, {"password": "bad"})
    assert status == 429
    assert detail.startswith("too many attempts")


async def test_unknown_account_and_validation(api: Api, fake: FakeTelegram) -> None:
    tenant = await api.tenant()
    phone = new_phone()  # no Telegram account has this number
    started = await start_code(api, tenant, phone)
    status, _, detail = await _post(
        api,
        tenant.key_headers,
        f"/v1/telegram/accounts/{started['id']}/code",
        {"code": fake.last_code(phone)},
    )
    assert status == 422
    assert "no Telegram account uses this phone number" in detail
    missing = await api.client.post(
        "/v1/telegram/accounts", json={"method": "code"}, headers=tenant.key_headers
    )
    assert missing.status_code == 422
    other = await api.tenant()
    foreign = await api.client.post(
        f"/v1/telegram/accounts/{started['id']}/code", json={"code": "12345"}, headers=other.key_headers
    )
    assert foreign.status_code == 404


async def test_the_same_account_twice_is_a_conflict(api: Api, fake: FakeTelegram) -> None:
    tenant = await api.tenant()
    phone = new_phone()
    fake.add_account(phone)
    await login(api, tenant, fake, phone)
    second = await start_code(api, tenant, phone)
    status, _, detail = await _post(
        api, tenant.key_headers, f"/v1/telegram/accounts/{second['id']}/code", {"code": fake.last_code(phone)}
    )
    assert status == 409
    assert "already connected" in detail


async def test_a_number_banned_during_the_login_ends_it(api: Api, fake: FakeTelegram) -> None:
    tenant = await api.tenant()
    phone = new_phone()
    fake.add_account(phone)
    started = await start_code(api, tenant, phone)
    fake.ban(phone)
    status, _, detail = await _post(
        api,
        tenant.key_headers,
        f"/v1/telegram/accounts/{started['id']}/code",
        {"code": fake.last_code(phone)},
    )
    assert (status, detail) == (403, "this number is banned by Telegram")
    found = await login_states(api, tenant, started["id"])
    assert (found[-1]["state"], found[-1]["error_code"]) == ("failed", "permission_denied")
    got = await api.client.get(f"/v1/telegram/accounts/{started['id']}", headers=tenant.key_headers)
    assert (got.json()["status"], got.json()["status_reason"]) == (
        "error",
        "this number is banned by Telegram",
    )
    retry = await api.client.post(
        f"/v1/telegram/accounts/{started['id']}/code", json={"code": "12345"}, headers=tenant.key_headers
    )
    assert retry.status_code == 409
