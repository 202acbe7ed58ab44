"""Webhook delivery: POST each pending update to the bot's webhook, in order, from background tasks.

A task exists only while a bot has updates to deliver (started lazily in the running loop, so
the sandbox may be served by uvicorn inside a test's event loop); one aiohttp session is shared
by the running tasks and closed when the last one ends. Each update is tried `retries` times;
every failure is recorded as the webhook's last_error_date/last_error_message, worded like
Telegram's getWebhookInfo (`Wrong response from the webhook: 401 Unauthorized`, `Connection
refused`, `Read timeout expired`). An update that still fails stays pending (it counts in
pending_update_count) until the next injected update or setWebhook retries it, or deleteWebhook
hands it to getUpdates. Delivery is sequential per bot (max_connections is recorded, not used).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from chatgate.sandbox.telegram_bot_api.state import Bot, WebhookSettings

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
logger = logging.getLogger("chatgate.sandbox.telegram")


class WebhookDelivery:
    def __init__(
        self, *, clock: Callable[[], float], timeout: float, retries: int, retry_delay: float
    ) -> None:
        if retries < 1:
            raise ValueError("webhook_retries must be at least 1")
        self._clock = clock
        self._timeout = timeout
        self._retries = retries
        self._retry_delay = retry_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._active = 0
        self.delivered = 0
        self.failed_attempts = 0

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def kick(self, bot: Bot) -> None:
        """Start delivering the bot's pending updates unless already doing so (needs a running loop)."""
        if bot.webhook is None or bot.delivering or not bot.updates:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside a loop: the next kick from a request starts it
            return
        bot.delivering = True
        task = loop.create_task(self._run(bot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Until every delivery started so far (and any it led to) has finished or given up."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _run(self, bot: Bot) -> None:
        self._active += 1
        try:
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession()
            session = self._session
            while bot.webhook is not None and bot.updates:
                webhook = bot.webhook
                update = bot.updates[0]
                delivered = await self._deliver(session, bot, webhook, update)
                if delivered:
                    if bot.updates and bot.updates[0] is update:
                        bot.updates.popleft()
                    self.delivered += 1
                elif bot.webhook is webhook:
                    break  # gave up for now; the update stays pending
        finally:
            bot.delivering = False
            self._active -= 1
            if self._active == 0 and self._session is not None:
                session, self._session = self._session, None
                await session.close()

    async def _deliver(
        self, session: aiohttp.ClientSession, bot: Bot, webhook: WebhookSettings, update: dict[str, Any]
    ) -> bool:
        body = json.dumps(update, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if webhook.secret_token:
            headers[SECRET_HEADER] = webhook.secret_token
        for attempt in range(self._retries):
            if bot.webhook is not webhook:
                return False
            error = await self._post(session, webhook.url, body, headers)
            if error is None:
                return True
            self.failed_attempts += 1
            webhook.last_error_date = int(self._clock())
            webhook.last_error_message = error
            # Only the bot id: the webhook URL often embeds the bot token.
            logger.info("sandbox webhook delivery for bot %s failed: %s", bot.id, error)
            if attempt + 1 < self._retries:
                await asyncio.sleep(self._retry_delay * (2**attempt))
        return False

    async def _post(
        self, session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
    ) -> str | None:
        """None on a 2xx answer, otherwise the error as getWebhookInfo words it."""
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"Wrong response from the webhook: {response.status} {response.reason or ''}".rstrip()
        except TimeoutError:
            return "Read timeout expired"
        except aiohttp.ClientConnectorDNSError:
            return "Failed to resolve host: Name or service not known"
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            if refused or getattr(exc.os_error, "errno", None) == errno.ECONNREFUSED:
                return "Connection refused"
            return "Connection failed"
        except aiohttp.InvalidURL:
            return "Invalid webhook URL"
        except aiohttp.ClientError as exc:
            return f"Connection error: {type(exc).__name__}"
