"""Our own overhead of each Telegram account login step, through the real HTTP API.

    .venv/bin/python bench/telegram_login.py                     # N=200 logins, one at a time
    .venv/bin/python bench/telegram_login.py --logins 500 --concurrency 20
    .venv/bin/python bench/telegram_login.py --json result.json

chatgate runs in this process: the real app (`create_app`, lifespan, the in-process workers, so
every activated account also gets its live worker like in production) on the embedded default
(SQLite file in a temporary directory), called through httpx's ASGI transport, with the
Container's `account_clients=` pointing at the in-process `FakeTelegram`. Telegram itself costs
~0 here, so the figures are chatgate's own work per step: HTTP handling, auth, the login state
machine, sealing/unsealing the session and phone_code_hash, the database writes and the
`account.login` event of each step.

Steps timed per login (each an HTTP request): `start` (POST /v1/telegram/accounts {phone}),
`code` (POST …/code → password_needed: the accounts have 2FA), `password` (POST …/password →
active), and `qr_start` (POST /v1/telegram/accounts {"method": "qr"}, a separate login that is
then scanned so its background wait ends). `connect` is start + code + password of one login.
`--no-workers` leaves the in-process workers out (no heartbeats of the accounts already live).
Seed 001's target for connecting an account is 5 s end to end (Telegram's round trips and the
person typing the code included); this measures the part chatgate adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SEED_CONNECT_TARGET_MS = 5000.0
STEPS = ("start", "code", "password", "qr_start", "connect")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run(logins: int, concurrency: int, *, workers: bool = True) -> dict[str, Any]:
    import httpx
    from asgi_lifespan import LifespanManager

    from chatgate.app import create_app
    from chatgate.bootstrap import Container
    from chatgate.config import Settings
    from chatgate.providers.telegram_user.fake import FakeAccountClient, FakeTelegram
    from chatgate.services.account_clients import AccountSpec

    fake = FakeTelegram()

    def clients(spec: AccountSpec) -> FakeAccountClient:
        return FakeAccountClient(fake, spec.session, update_state=spec.update_state)

    timings: dict[str, list[float]] = {step: [] for step in STEPS}
    with tempfile.TemporaryDirectory(prefix="chatgate-bench-login-") as tmp:
        settings = Settings(
            _env_file=None,
            data_dir=Path(tmp),
            telegram_api_id=12345,
            telegram_api_hash="0123456789abcdef0123456789abcdef",
            rate_limit_ip_per_second=1_000_000,
            rate_limit_ip_burst=1_000_000,
            rate_limit_key_per_second=1_000_000,
            rate_limit_key_burst=1_000_000,
            log_level="WARNING",
            run_workers_in_api=workers,
        )
        container = Container(settings, account_clients=clients)
        app = create_app(container)
        async with LifespanManager(app, startup_timeout=120) as manager:
            transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                tenant = await container.access.bootstrap_tenant(
                    name="bench",
                    slug="bench",
                    owner_email="owner@bench.example",
                    owner_password="bench password 1",
                )
                headers = {"X-API-Key": tenant.api_key.plaintext}

                async def timed(step: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
                    started = time.perf_counter()
                    response = await client.request(method, path, json=body, headers=headers)
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code not in (200, 201):
                        raise RuntimeError(f"{step}: {response.status_code} {response.text}")
                    timings[step].append(elapsed)
                    result: dict[str, Any] = response.json()
                    return result

                async def one(index: int) -> None:
                    phone = f"+1777{index:07d}"
                    fake.add_account(phone, f"Bench {index}", password="bench 2fa")
                    started = time.perf_counter()
                    account = await timed("start", "POST", "/v1/telegram/accounts", {"phone": phone})
                    path = f"/v1/telegram/accounts/{account['id']}"
                    step = await timed("code", "POST", f"{path}/code", {"code": fake.last_code(phone)})
                    assert step["login"]["state"] == "password_needed", step
                    done = await timed("password", "POST", f"{path}/password", {"password": "bench 2fa"})
                    assert done["status"] == "active", done
                    timings["connect"].append((time.perf_counter() - started) * 1000)

                    qr_phone = f"+1888{index:07d}"
                    fake.add_account(qr_phone, f"Bench QR {index}")
                    qr = await timed("qr_start", "POST", "/v1/telegram/accounts", {"method": "qr"})
                    fake.accept_qr(qr["login"]["qr_url"], qr_phone)
                    await container.telegram_accounts.wait_qr(qr["id"])

                gate = asyncio.Semaphore(concurrency)

                async def bounded(index: int) -> None:
                    async with gate:
                        await one(index)

                wall = time.perf_counter()
                await asyncio.gather(*(bounded(i) for i in range(logins)))
                wall_seconds = time.perf_counter() - wall

    summary = {
        step: {
            "n": len(values),
            "p50_ms": round(percentile(values, 50), 2),
            "p99_ms": round(percentile(values, 99), 2),
            "max_ms": round(max(values), 2) if values else 0.0,
            "mean_ms": round(statistics.fmean(values), 2) if values else 0.0,
        }
        for step, values in timings.items()
    }
    return {
        "logins": logins,
        "concurrency": concurrency,
        "workers": workers,
        "wall_seconds": round(wall_seconds, 2),
        "steps": summary,
        "seed_connect_target_ms": SEED_CONNECT_TARGET_MS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=200, help="code logins (and as many QR starts)")
    parser.add_argument("--concurrency", type=int, default=1, help="logins in flight at once")
    parser.add_argument(
        "--no-workers",
        action="store_true",
        help="without the in-process workers (no live account heartbeats next to the logins)",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.logins, max(1, args.concurrency), workers=not args.no_workers))
    print(
        f"Telegram account logins: N={result['logins']}, concurrency {result['concurrency']}, "
        f"{result['wall_seconds']} s in all, workers {'on' if result['workers'] else 'off'} "
        "(FakeTelegram: chatgate's own overhead)"
    )
    print(f"{'step':<10} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for step, row in result["steps"].items():
        print(f"{step:<10} {row['n']:>5} {row['p50_ms']:>9.2f} {row['p99_ms']:>9.2f} {row['max_ms']:>9.2f}")
    connect_p99 = result["steps"]["connect"]["p99_ms"]
    share = connect_p99 / SEED_CONNECT_TARGET_MS * 100
    print(f"connect p99 {connect_p99:.1f} ms = {share:.1f}% of seed 001's 5 s connect target")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
