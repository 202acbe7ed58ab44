"""Run the provider sandboxes (Telegram Bot API, Meta Graph API, Twilio, Telegram accounts).

`chatgate sandbox` runs them alone; `chatgate serve --demo` runs them beside the API and points
the provider base URLs at them, so every flow works on a laptop without real accounts.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import uvicorn

from chatgate.sandbox.graph_api import SandboxGraphApi
from chatgate.sandbox.telegram_accounts import SandboxTelegramAccounts
from chatgate.sandbox.telegram_bot_api import SandboxBotApi
from chatgate.sandbox.twilio_api import SandboxTwilioApi


@dataclass(frozen=True)
class SandboxUrls:
    telegram: str
    graph: str
    twilio: str
    accounts: str

    def settings(self) -> dict[str, str]:
        """The CHATGATE_* overrides that point chatgate at these sandboxes."""
        return {
            "telegram_api_base": self.telegram,
            "graph_api_base": self.graph,
            "twilio_api_base": self.twilio,
            "telegram_account_sandbox_url": self.accounts,
        }


def sandbox_apps() -> dict[str, Any]:
    return {
        "telegram": SandboxBotApi().app,
        "graph": SandboxGraphApi().app,
        "twilio": SandboxTwilioApi().app,
        "accounts": SandboxTelegramAccounts().app,
    }


async def serve_sandboxes(host: str, base_port: int, stop: asyncio.Event | None = None) -> None:
    """Telegram Bot API on base_port, Graph + 1, Twilio + 2, Telegram accounts + 3, until `stop`."""
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app, host=host, port=base_port + i, log_level="warning", access_log=False, lifespan="off"
            )
        )
        for i, app in enumerate(sandbox_apps().values())
    ]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    if stop is not None:
        await stop.wait()
        for server in servers:
            server.should_exit = True
    await asyncio.gather(*tasks)


def urls(host: str, base_port: int) -> SandboxUrls:
    return SandboxUrls(*(f"http://{host}:{base_port + i}" for i in range(4)))


def start_in_background(host: str, base_port: int) -> SandboxUrls:
    """For `serve --demo`: the sandboxes on their own thread and event loop (daemon)."""
    thread = threading.Thread(
        target=lambda: asyncio.run(serve_sandboxes(host, base_port)), name="sandboxes", daemon=True
    )
    thread.start()
    return urls(host, base_port)
