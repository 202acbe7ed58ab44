"""A stand-in receiving site for outbound sends: answers `{"message_id": ...}` and records when.

    .venv/bin/python bench/fake_provider.py --port 8126

POST /<anything>  -> 200 {"message_id": "site-N"}, receive time recorded (time.time()).
POST /tenant/...  -> the same, as a tenant's webhook receiver: also records the event's
                     data.provider_ids.message_id (a message.received envelope) with its time.
GET  /stats       -> {"count": N, "times": [...], "events": {message_id: time}}
                     (?reset=1 clears them)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

import uvloop
from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    times: list[float] = []
    events: dict[str, float] = {}
    counter = itertools.count(1)

    async def receive(request: web.Request) -> web.Response:
        now = time.time()
        times.append(now)
        body = await request.read()
        if request.path.startswith("/tenant"):
            try:
                message_id = json.loads(body)["data"]["provider_ids"]["message_id"]
                events.setdefault(str(message_id), now)
            except (ValueError, KeyError, TypeError):
                pass
        return web.json_response({"message_id": f"site-{next(counter)}"})

    async def stats(request: web.Request) -> web.Response:
        body = {"count": len(times), "times": list(times), "events": dict(events)}
        if request.query.get("reset"):
            times.clear()
            events.clear()
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_post("/{tail:.*}", receive)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
