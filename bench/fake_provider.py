"""A stand-in receiving site for outbound sends: answers `{"message_id": ...}` and records when.

    .venv/bin/python bench/fake_provider.py --port 8126

POST /<anything>  -> 200 {"message_id": "site-N"}, receive time recorded (time.time()).
GET  /stats       -> {"count": N, "times": [...]}   (and clears them with ?reset=1)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time

import uvloop
from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    times: list[float] = []
    counter = itertools.count(1)

    async def receive(request: web.Request) -> web.Response:
        times.append(time.time())
        await request.read()
        return web.json_response({"message_id": f"site-{next(counter)}"})

    async def stats(request: web.Request) -> web.Response:
        body = {"count": len(times), "times": list(times)}
        if request.query.get("reset"):
            times.clear()
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_post("/{tail:.*}", receive)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
