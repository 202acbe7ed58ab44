"""The `chatgate` command: serve, worker, migrate, bootstrap, keys rotate|status."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from pydantic import ValidationError

from chatgate.config import Settings
from chatgate.domain.errors import ChatgateError

T = TypeVar("T")
log = logging.getLogger("chatgate")


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [
            f"  CHATGATE_{'_'.join(str(p) for p in e['loc']).upper() or '?'}: {e['msg']}"
            for e in exc.errors()
        ]
        print("chatgate: the settings are invalid:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


def _run(coro: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(coro())  # type: ignore[arg-type]


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from chatgate.api.inbound_protocol import InboundHttpProtocol
    from chatgate.app import create_app
    from chatgate.bootstrap import Container
    from chatgate.observability.logging import configure_logging

    settings = load_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    configure_logging(settings.log_level, json_output=settings.log_json)
    if args.demo:
        from chatgate.sandbox.runner import start_in_background

        sandboxes = start_in_background("127.0.0.1", args.sandbox_port)
        settings = settings.model_copy(update=sandboxes.settings())
        print(
            f"demo mode: provider sandboxes on {sandboxes.telegram} (Telegram), {sandboxes.graph} (Graph), "
            f"{sandboxes.twilio} (Twilio), {sandboxes.accounts} (Telegram accounts); no real provider is called",
            file=sys.stderr,
        )
    container = Container(settings)
    app = create_app(container)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - only for display
    base = f"http://{shown_host}:{port}"
    _announce(settings, base)
    settle_heap()
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=InboundHttpProtocol,  # webhooks without ASGI, one write per response (api/inbound_protocol.py)
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=",".join(settings.trusted_proxies) or "127.0.0.1",
        server_header=False,
        timeout_graceful_shutdown=10,  # open streams and long polls must not hold shutdown forever
    )
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from chatgate.sandbox.runner import serve_sandboxes, urls

    found = urls(args.host, args.port)
    print(
        "provider sandboxes (simulated APIs, state in memory):\n"
        + "\n".join(f"  CHATGATE_{k.upper()}={v}" for k, v in found.settings().items()),
        file=sys.stderr,
        flush=True,
    )
    asyncio.run(serve_sandboxes(args.host, args.port))
    return 0


def _announce(settings: Settings, base: str) -> None:
    storage = (
        "SQLite at " + str(settings.data_dir / "chatgate.db") if settings.is_embedded else "external database"
    )
    print(
        f"\nchatgate is starting at {base}  ({storage})\n"
        f"  API docs:      {base}/docs\n"
        f"  Health:        {base}/health/ready\n"
        f"  First tenant:  .venv/bin/chatgate bootstrap --email you@example.com   (prints an API key once)\n",
        file=sys.stderr,
        flush=True,
    )


# Young-generation threshold (Python's default: 700). A busy gateway allocates and frees many
# short-lived containers (rows, events, requests): at 700 the collector ran ~450 times in a
# 10-s, 500-events/s run (210 ms) and its rarer older-generation passes stopped the event loop
# for up to 14 ms, a latency tail of its own; at 7,000 most of those objects are freed by their
# reference counts before a collection, which ran ~10 times (30 ms, at most 4.6 ms each).
GC_YOUNG_THRESHOLD = 7000


def settle_heap() -> None:
    """Move what start-up made (modules, the container, settings) out of the cycle collector's
    way: every collection would walk it again for nothing (~10 % of a busy worker's CPU); and
    collect the young generation less often (GC_YOUNG_THRESHOLD)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def cmd_worker(_: argparse.Namespace) -> int:
    from chatgate.bootstrap import Container
    from chatgate.observability.logging import configure_logging
    from chatgate.workers.runner import run_workers

    settings = load_settings()
    configure_logging(settings.log_level, json_output=settings.log_json)

    async def main() -> None:
        container = Container(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await container.start()
            settle_heap()
            await run_workers(container, stop)
        finally:
            await container.aclose()

    asyncio.run(main())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from chatgate.store import migrate

    settings = load_settings()
    url = settings.effective_database_url
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        before = await migrate.current_revision(url)
        if args.revision.startswith("-") or (before and args.revision < before and args.revision != "head"):
            await migrate.downgrade(url, args.revision)
        else:
            await migrate.upgrade(url, args.revision)
        after = await migrate.current_revision(url)
        print(f"database schema: {before or 'empty'} -> {after}")

    asyncio.run(main())
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from chatgate.bootstrap import Container

    settings = load_settings()
    password = args.password or secrets.token_urlsafe(12)

    async def main() -> int:
        container = Container(settings)
        try:
            await container.start()
            result = await container.access.bootstrap_tenant(
                name=args.name, slug=args.slug, owner_email=args.email, owner_password=password
            )
        finally:
            await container.aclose()
        print(
            f"tenant   {result.tenant.slug} ({result.tenant.id})\n"
            f"owner    {result.owner.email}  password: {password if not args.password else '(as given)'}\n"
            f"API key  {result.api_key.plaintext}\n"
            "The API key and password are shown once; store them now.\n"
            f"Try:     curl -H 'X-API-Key: {result.api_key.plaintext}' http://{settings.host}:{settings.port}/v1/me"
        )
        return 0

    return asyncio.run(main())


def cmd_keys(args: argparse.Namespace) -> int:
    from chatgate.bootstrap import Container

    settings = load_settings()

    async def main() -> None:
        container = Container(settings)
        try:
            await container.start()
            if args.keys_command == "rotate":
                report = await container.key_rotation.rotate()
                print(
                    f"new primary key {report.new_version}: {report.resealed} secrets re-encrypted, "
                    f"{report.already_current} already current, {report.changed_concurrently} changed meanwhile"
                )
            elif args.keys_command == "reseal":
                report = await container.key_rotation.reseal_all()
                print(f"primary key {report.new_version}: {report.resealed} secrets re-encrypted")
            else:
                for column, counts in (await container.key_rotation.status()).items():
                    shown = ", ".join(f"{v}: {n}" for v, n in sorted(counts.items())) or "no secrets"
                    print(f"{column}: {shown}")
                print(f"primary key: {await container.box.provider.primary_version()}")
        finally:
            await container.aclose()

    asyncio.run(main())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatgate", description="Multi-tenant messaging integration gateway"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (and in-process workers) on one port")
    serve.add_argument("--host", help="address to listen on (default CHATGATE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default CHATGATE_PORT or 8000)")
    serve.add_argument(
        "--demo", action="store_true", help="also run the provider sandboxes and point chatgate at them"
    )
    serve.add_argument("--sandbox-port", type=int, default=8900, help="first sandbox port in demo mode")
    serve.set_defaults(func=cmd_serve)

    sandbox = sub.add_parser("sandbox", help="run the provider sandboxes (Telegram, Graph, Twilio, accounts)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument(
        "--port", type=int, default=8900, help="Telegram; Graph, Twilio, accounts on the next three"
    )
    sandbox.set_defaults(func=cmd_sandbox)

    sub.add_parser("worker", help="run background workers only").set_defaults(func=cmd_worker)

    migrate_p = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate_p.add_argument("--revision", default="head", help="target revision (default head)")
    migrate_p.set_defaults(func=cmd_migrate)

    boot = sub.add_parser("bootstrap", help="create a tenant with its owner and an API key (printed once)")
    boot.add_argument("--email", required=True, help="the owner's e-mail")
    boot.add_argument("--name", default="Default", help="tenant name")
    boot.add_argument("--slug", default="default", help="tenant slug (unique)")
    boot.add_argument("--password", help="owner password (generated and printed when omitted)")
    boot.set_defaults(func=cmd_bootstrap)

    keys = sub.add_parser("keys", help="encryption keys")
    keys.add_argument(
        "keys_command",
        choices=["rotate", "status", "reseal"],
        help="rotate: new key + re-encrypt all; status: secrets per key version; reseal: finish a rotation",
    )
    keys.set_defaults(func=cmd_keys)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ChatgateError as exc:
        print(f"chatgate: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
