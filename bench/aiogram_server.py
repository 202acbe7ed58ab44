"""aiogram's own webhook server with a no-op message handler, for comparison.

Runs in its own virtualenv (aiogram pins pydantic<2.14, older than chatgate's), see
bench/requirements.txt:

    ~/.cache/chatgate-bench/aiogram-venv/bin/python bench/aiogram_server.py --port 8125

`SimpleRequestHandler` with its defaults (handle_in_background=True: it answers 200 and runs
the dispatcher in a task) and a secret token, on aiohttp's server, one process, uvloop.
Nothing leaves 127.0.0.1: the handler never calls the Bot API.
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop
from aiogram import Bot, Dispatcher, Router
from aiogram.types import Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

SECRET_TOKEN = "bench-secret-token-0123456789"  # = common.TELEGRAM_SECRET_TOKEN
BOT_TOKEN = "123456:AAbenchbenchbenchbenchbenchbenchbench"  # never used to call anything

router = Router()


@router.message()
async def noop(message: Message) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    bot = Bot(BOT_TOKEN)
    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    app = web.Application()
    SimpleRequestHandler(dispatcher=dispatcher, bot=bot, secret_token=SECRET_TOKEN).register(
        app, path="/webhook"
    )
    app.router.add_get("/health", lambda _: web.Response(text="ok"))
    setup_application(app, dispatcher, bot=bot)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
