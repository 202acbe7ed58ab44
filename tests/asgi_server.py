"""Run an ASGI app (the gateway or a provider sandbox) on 127.0.0.1 for a test, in the test's own
event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import uvicorn

from chatgate.api.inbound_protocol import InboundHttpProtocol

# httpx keeps an idle connection for 5 s and uvicorn, by default, closes one after 5 s: a request
# sent on a pooled connection just as the server closes it fails with "Server disconnected
# without sending a response". Test servers keep idle connections far longer than any client
# here, so the client always lets go first.
KEEP_ALIVE_SECONDS = 120


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """A quiet uvicorn config whose keep-alive outlasts the clients' (see KEEP_ALIVE_SECONDS),
    speaking HTTP as `chatgate serve` does."""
    options.setdefault("http", InboundHttpProtocol)
    options.setdefault("log_level", "warning")
    options.setdefault("access_log", False)
    options.setdefault("timeout_keep_alive", KEEP_ALIVE_SECONDS)
    return uvicorn.Config(app, **options)


@asynccontextmanager
async def serve_asgi(
    app: Any,
    *,
    lifespan: Literal["auto", "on", "off"] = "off",
    sock: socket.socket | None = None,
    startup_seconds: float = 5,
    stop_seconds: float = 10,
    **config: Any,
) -> AsyncIterator[str]:
    """Yields the base URL (`http://127.0.0.1:PORT`); the server stops when the block ends.

    `sock`, when given, is a bound socket to serve on, so its URL can be known before the app is
    built; it is closed when the server stops. `config`: more uvicorn options."""
    if sock is None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, lifespan=lifespan, **config))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(int(startup_seconds * 100)):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        server.should_exit = True
        await task
        sock.close()
        raise RuntimeError("the ASGI test server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, timeout=stop_seconds)
        finally:
            sock.close()
