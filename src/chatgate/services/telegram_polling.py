"""Long polling for bots without a public webhook URL (a laptop, the embedded default).

One poll loop per bot, in exactly one process: a lease per bot, renewed every round. Each
update is stored durably (same raw-event store and dedupe key as the webhook path) before the
next getUpdates confirms it with `offset`, so a crash re-reads updates and stores them once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

from sqlalchemy import select

from chatgate.domain.clock import Clock
from chatgate.domain.errors import AuthRevoked, NotFound, ProviderError
from chatgate.domain.integrations import IntegrationKind, IntegrationStatus
from chatgate.providers.telegram.botapi import BotApi, UpdatesConflict
from chatgate.services.ingest import IngestWriter
from chatgate.services.telegram_bots import ALLOWED_UPDATES, TelegramBots
from chatgate.store.models import Integration
from chatgate.store.repositories.integrations import IntegrationRouting
from chatgate.workers.pause import wait_until_stopped

log = logging.getLogger(__name__)
_SCAN_PAGE = 2000


def lease_name(integration_id: str) -> str:
    return f"telegram:poll:{integration_id}"


class TelegramPoller:
    def __init__(
        self,
        bots: TelegramBots,
        ingest: IngestWriter,
        clock: Clock,
        owner: str,
        *,
        poll_timeout: int = 25,
        scan_interval: float = 5.0,
        max_bots: int = 500,
    ) -> None:
        self.bots = bots
        self.ingest = ingest
        self.clock = clock
        self.owner = owner
        self.poll_timeout = poll_timeout
        self.scan_interval = scan_interval
        self.max_bots = max_bots
        # A lease outlives one long poll plus slack; a dead owner's bots move within this time.
        self.lease_ttl = timedelta(seconds=poll_timeout + 15)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def polling(self) -> set[str]:
        return set(self._tasks)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.scan()
                except Exception:
                    log.exception("scanning for polling-mode bots failed")
                await wait_until_stopped(stop, self.scan_interval)
        finally:
            await self.stop_all()

    async def scan(self) -> None:
        """Start loops for polling-mode bots nobody polls; forget loops that ended."""
        for integration_id, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[integration_id]
        for integration_id in await self._polling_mode_ids():
            if integration_id in self._tasks or len(self._tasks) >= self.max_bots:
                continue
            name = lease_name(integration_id)
            if await self.bots.leases.acquire(name, self.owner, self.clock(), self.lease_ttl):
                try:
                    integration = await self.bots.integrations.by_id_unscoped(integration_id)
                except NotFound:
                    await self.bots.leases.release(name, self.owner)
                    continue
                self._tasks[integration_id] = asyncio.create_task(
                    self._poll(integration), name=f"telegram-poll-{integration_id}"
                )

    async def _polling_mode_ids(self) -> list[str]:
        """Active bots in polling mode. Only ids and configs are read: with thousands of bots in
        webhook mode this runs every scan, and whole rows (credentials, statuses) would cost
        a tenth of a core at 10,000 bots."""
        wanted: list[str] = []
        after = ""
        while True:
            query = (
                select(Integration.id, Integration.config)
                .where(
                    Integration.kind == IntegrationKind.TELEGRAM_BOT,
                    Integration.status == IntegrationStatus.ACTIVE,
                    Integration.id > after,
                )
                .order_by(Integration.id)
                .limit(_SCAN_PAGE)
            )
            async with self.bots.db.sessions() as session:
                page = (await session.execute(query)).all()
            wanted.extend(row.id for row in page if self.bots.mode_of(row.config or {}) == "polling")
            if len(page) < _SCAN_PAGE:
                return wanted
            after = page[-1].id

    async def stop_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for integration_id in list(self._tasks):
            await self.bots.leases.release(lease_name(integration_id), self.owner)
        self._tasks.clear()

    async def _poll(self, integration: Integration) -> None:
        credentials = await self.bots.integrations.credentials(integration)
        api = BotApi(self.bots.contexts.provider_http, self.bots.adapter.api_base, credentials["bot_token"])
        offset: int | None = None
        failures = 0
        name = lease_name(integration.id)
        log.info("polling Telegram for integration %s", integration.id)
        try:
            while await self.bots.leases.acquire(name, self.owner, self.clock(), self.lease_ttl):
                if not await self._still_polling(integration):
                    return
                try:
                    updates = await api.call(
                        "getUpdates",
                        {"offset": offset, "timeout": self.poll_timeout, "allowed_updates": ALLOWED_UPDATES},
                        time_limit=self.poll_timeout + 10,
                    )
                    failures = 0
                except AuthRevoked as exc:
                    await self.bots.integrations.set_status(
                        integration.tenant_id, integration.id, IntegrationStatus.NEEDS_REAUTH, exc.message
                    )
                    return
                except UpdatesConflict as exc:
                    # A webhook got set behind our back, or another poller runs with this token.
                    log.warning("integration %s: %s", integration.id, exc.message)
                    await self.bots.check(integration)
                    failures += 1
                    await asyncio.sleep(min(30.0, 2.0**failures))
                    continue
                except ProviderError as exc:
                    failures += 1
                    log.warning("getUpdates for integration %s failed: %s", integration.id, exc.message)
                    await asyncio.sleep(min(30.0, 2.0**failures))
                    continue
                for update in updates or []:
                    await self.ingest.submit(
                        tenant_id=integration.tenant_id,
                        integration_id=integration.id,
                        kind=IntegrationKind.TELEGRAM_BOT.value,
                        provider_event_id=str(update["update_id"]),
                        headers={},
                        body=json.dumps(update, separators=(",", ":")).encode(),
                    )
                    offset = int(update["update_id"]) + 1
        finally:
            await self.bots.leases.release(name, self.owner)
            log.info("stopped polling Telegram for integration %s", integration.id)

    async def _still_polling(self, integration: Integration) -> bool:
        try:
            async with self.bots.db.sessions() as session:
                current = await IntegrationRouting(session).by_public_id(
                    integration.kind, integration.public_id
                )
        except NotFound:
            return False  # deleted
        return current.status == IntegrationStatus.ACTIVE and self.bots.effective_mode(current) == "polling"
