"""Live Telegram accounts: each runs in exactly one worker, held by a lease with a heartbeat.

Two clients on one session at once make Telegram kill it (AuthKeyDuplicated), so a worker starts
an account only after taking its lease, renews the lease every third of its lifetime, and drops
the client the moment a renewal fails. A dead worker's lease expires and another worker takes the
account over within lease + scan interval. Updates are stored as raw events (dedupe key per
update) before anything else, so a takeover neither loses nor duplicates a message.

Catching up: Telegram keeps an account's updates for the session (updates.getDifference). The
worker stores where its client stands in that sequence (`provider_status["update_state"]`, from
`client.UpdateStateful`) when the account starts and at every heartbeat, one heartbeat late, so
the stored position never passes an update that is not stored yet. The next worker (after a
takeover or a restart) creates its client from that position and gets every update since,
including those that arrived while no worker ran the account; the ones already stored are
dropped as duplicates by their dedupe key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from chatgate.domain.channels import channel_kind
from chatgate.domain.clock import Clock
from chatgate.domain.errors import AuthRevoked, ChatgateError, NotFound
from chatgate.domain.inbound import ProviderEvent
from chatgate.domain.integrations import IntegrationKind, IntegrationStatus
from chatgate.providers.telegram_user.client import AccountClient, RawAccountUpdate, UpdateStateful
from chatgate.providers.telegram_user.live import LiveAccounts
from chatgate.providers.telegram_user.parsing import unplaced_deleted_ids
from chatgate.services.account_clients import AccountClientFactory, AccountSpec
from chatgate.services.ingest import IngestWriter
from chatgate.services.integrations import IntegrationService
from chatgate.services.telegram_accounts import SESSION, lease_name
from chatgate.store.db import Database
from chatgate.store.models import Conversation, Integration, Message
from chatgate.store.repositories.channels import ChannelRepository
from chatgate.store.repositories.integrations import IntegrationRepository, IntegrationRouting
from chatgate.store.repositories.leases import LeaseStore
from chatgate.workers.pause import wait_until_stopped

log = logging.getLogger(__name__)

SYNC_EVERY_BEATS = 90  # dialogs and channels re-read about every half hour (20 s leases)
# provider_status key: when someone asked for a sync (`request_sync`); the owner syncs at its next
# heartbeat when this is later than "dialogs_synced_at".
SYNC_REQUESTED = "sync_requested_at"


async def request_sync(db: Database, integration: Integration, now: datetime) -> None:
    """Ask the worker that runs the account (any process) to re-read its dialogs and channels at
    its next heartbeat (within a third of the lease)."""
    async with db.transaction() as session:
        row = await IntegrationRepository(session, integration.tenant_id).get(integration.id)
        row.provider_status = {**(row.provider_status or {}), SYNC_REQUESTED: now.isoformat()}


class AccountRuntime:
    def __init__(
        self,
        db: Database,
        integrations: IntegrationService,
        clients: AccountClientFactory,
        leases: LeaseStore,
        ingest: IngestWriter,
        live: LiveAccounts,
        clock: Clock,
        owner: str,
        *,
        lease_seconds: float = 20.0,
        scan_interval: float = 5.0,
    ) -> None:
        self.db = db
        self.integrations = integrations
        self.clients = clients
        self.leases = leases
        self.ingest = ingest
        self.live = live
        self.clock = clock
        self.owner = owner
        self.lease_ttl = timedelta(seconds=lease_seconds)
        self.scan_interval = scan_interval
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._abandoned = False

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set() and not self._abandoned:
                try:
                    await self.scan()
                except Exception:
                    log.exception("scanning for Telegram accounts failed")
                await wait_until_stopped(stop, self.scan_interval)
        finally:
            await self.stop_all()

    async def scan(self) -> None:
        if self._abandoned:  # a "killed" process takes nothing again (its leases run out)
            return
        for integration_id, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[integration_id]
        after: str | None = None
        while True:
            async with self.db.sessions() as session:
                page = await IntegrationRouting(session).of_kind(
                    IntegrationKind.TELEGRAM_USER, ["active"], after_id=after
                )
            if not page:
                return
            for integration in page:
                if integration.id in self._tasks:
                    continue
                if await self.leases.acquire(
                    lease_name(integration.id), self.owner, self.clock(), self.lease_ttl
                ):
                    self._tasks[integration.id] = asyncio.create_task(
                        self._run_account(integration), name=f"telegram-account-{integration.id}"
                    )
            after = page[-1].id

    async def stop_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def abandon(self) -> None:
        """Stop every account WITHOUT releasing leases or logging out: what a killed process
        leaves behind (used to prove takeovers)."""
        self._abandoned = True
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self.live.clients.clear()

    async def _run_account(self, integration: Integration) -> None:
        name = lease_name(integration.id)
        client: AccountClient | None = None
        try:
            credentials = await self.integrations.credentials(integration)
            api_id = credentials.get("api_id")
            stored = (integration.provider_status or {}).get("update_state")
            client = self.clients(
                AccountSpec(
                    session=credentials.get(SESSION),
                    api_id=int(api_id) if api_id else None,
                    api_hash=credentials.get("api_hash") or None,
                    update_state=stored if isinstance(stored, dict) else None,
                )
            )
            client.on_event(self._handler(integration))
            await client.connect()
            if not await client.is_authorized():
                await self._needs_reauth(
                    integration, "Telegram no longer accepts this account's session: log in again"
                )
                return
            self.live.clients[integration.id] = client
            log.info("account %s is live in %s", integration.id, self.owner)
            # Caught up by now: every update up to this position is stored.
            previous = self._update_state(client)
            await self._save_update_state(integration, previous)
            await self._sync(integration, client)
            beats = 0
            while True:
                await asyncio.sleep(self.lease_ttl.total_seconds() / 3)
                if not await self.leases.acquire(name, self.owner, self.clock(), self.lease_ttl):
                    log.warning("lost the lease of account %s: stopping it here", integration.id)
                    return
                current = await self._current(integration)
                if current is None or current.status != IntegrationStatus.ACTIVE:
                    return
                await client.get_me()  # a heartbeat to Telegram too: a revoked session shows here
                # The position of one heartbeat ago: its updates have long been stored.
                await self._save_update_state(integration, previous)
                previous = self._update_state(client)
                beats += 1
                status = current.provider_status or {}
                requested = str(status.get(SYNC_REQUESTED) or "")
                if beats % SYNC_EVERY_BEATS == 0 or requested > str(status.get("dialogs_synced_at") or ""):
                    await self._sync(integration, client)
        except AuthRevoked as exc:
            await self._needs_reauth(integration, exc.message)
        except ChatgateError as exc:
            log.warning("account %s stopped: %s", integration.id, exc.message)
        finally:
            self.live.clients.pop(integration.id, None)
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.disconnect()
            if not self._abandoned:  # a graceful stop hands the account over at once
                await self.leases.release(name, self.owner)

    @staticmethod
    def _update_state(client: AccountClient) -> dict[str, Any] | None:
        return client.update_state() if isinstance(client, UpdateStateful) else None

    async def _save_update_state(self, integration: Integration, state: dict[str, Any] | None) -> None:
        if state is None:
            return
        async with self.db.transaction() as session:
            row = await IntegrationRepository(session, integration.tenant_id).get(integration.id)
            if (row.provider_status or {}).get("update_state") != state:
                row.provider_status = {**(row.provider_status or {}), "update_state": state}

    async def _sync(self, integration: Integration, client: AccountClient) -> None:
        """Dialogs and administered channels, copied where any API process can read them (only
        the owning worker may talk to Telegram with this session)."""
        try:
            dialogs = await client.dialogs(limit=100)
            channels = await client.admin_channels()
        except ChatgateError as exc:
            log.info("syncing dialogs of account %s failed: %s", integration.id, exc.message)
            return
        now = self.clock()
        async with self.db.transaction() as session:
            row = await IntegrationRepository(session, integration.tenant_id).get(integration.id)
            row.provider_status = {
                **row.provider_status,
                "dialogs": [
                    {
                        "id": str(d.id),
                        "kind": d.kind.value,
                        "title": d.title,
                        "username": d.username,
                        "unread_count": d.unread_count,
                        "is_admin": d.is_admin,
                        "can_post": d.can_post,
                    }
                    for d in dialogs
                ],
                "dialogs_synced_at": now.isoformat(),
                "live_in": self.owner,
            }
            repo = ChannelRepository(session, integration.tenant_id)
            for channel in channels:
                await repo.upsert(
                    integration.id,
                    str(channel.id),
                    now,
                    kind=channel_kind(channel.kind),
                    title=channel.title,
                    username=channel.username,
                    member_status="administrator",
                    rights={f"can_{r}": True for r in channel.admin_rights},
                    can_post=channel.can_post,
                )

    def _handler(self, integration: Integration) -> Any:
        async def handle(update: RawAccountUpdate, _: list[ProviderEvent]) -> None:
            # Stored first (deduplicated by the update's key); parsed by the inbound worker.
            payload = await self._with_context(integration, update.payload)
            await self.ingest.submit(
                tenant_id=integration.tenant_id,
                integration_id=integration.id,
                kind=IntegrationKind.TELEGRAM_USER.value,
                provider_event_id=update.key[:191],
                headers={},
                body=json.dumps(payload, separators=(",", ":"), default=str).encode(),
            )

        return handle

    async def _with_context(self, integration: Integration, payload: dict[str, Any]) -> dict[str, Any]:
        """What only our store knows, added to the payload so parsing stays pure (see
        `parsing`): the chats of deleted messages Telegram did not place, and which of our sent
        messages a read receipt ("read up to max_id") covers."""
        try:
            if payload.get("type") == "delete" and payload.get("chat") is None:
                ids = unplaced_deleted_ids(payload)
                return {**payload, "placed": await self._place_deleted(integration, ids)}
            if payload.get("type") == "read" and payload.get("outbox") is True and payload.get("chat"):
                chat_id, max_id = payload["chat"].get("id"), payload.get("max_id")
                if isinstance(chat_id, int) and isinstance(max_id, int):
                    return {**payload, "read_ids": await self._unread_up_to(integration, chat_id, max_id)}
        except SQLAlchemyError as exc:  # the update is stored anyway, with what Telegram said
            log.warning("could not look up the context of an account update: %s", type(exc).__name__)
        return payload

    async def _place_deleted(self, integration: Integration, ids: list[int]) -> dict[str, Any]:
        """Message id → its chat, for messages of private chats and basic groups (numbered per
        account, so an id names one message among them)."""
        placed: dict[str, Any] = {}
        async with self.db.sessions() as session:
            for message_id in ids[:200]:
                row = (
                    await session.execute(
                        select(Conversation.external_id, Conversation.kind, Conversation.title)
                        .join(Message, Message.conversation_id == Conversation.id)
                        .where(
                            Message.tenant_id == integration.tenant_id,
                            Message.integration_id == integration.id,
                            Message.provider_message_id.like(f"%:{int(message_id)}"),
                            Conversation.external_id.not_like("-100%"),
                        )
                        .limit(1)
                    )
                ).first()
                if row is not None and row.external_id.lstrip("-").isdigit():
                    placed[str(message_id)] = {
                        "id": int(row.external_id),
                        "kind": row.kind,
                        "title": row.title,
                    }
        return placed

    async def _unread_up_to(self, integration: Integration, chat_id: int, max_id: int) -> list[int]:
        """Our sent, not yet read messages of the chat with an id up to `max_id`."""
        async with self.db.sessions() as session:
            rows = await session.execute(
                select(Message.provider_message_id)
                .join(Conversation, Message.conversation_id == Conversation.id)
                .where(
                    Message.tenant_id == integration.tenant_id,
                    Message.integration_id == integration.id,
                    Message.direction == "outbound",
                    Message.status.in_(("sent", "delivered")),
                    Conversation.external_id == str(chat_id),
                )
            )
            found = set()
            for (provider_id,) in rows:
                _, _, number = (provider_id or "").rpartition(":")
                if number.isdigit() and int(number) <= max_id:
                    found.add(int(number))
        return sorted(found)[-500:]

    async def _current(self, integration: Integration) -> Integration | None:
        """The integration as it is now (None: deleted)."""
        try:
            async with self.db.sessions() as session:
                return await IntegrationRouting(session).by_public_id(integration.kind, integration.public_id)
        except NotFound:
            return None

    async def _needs_reauth(self, integration: Integration, reason: str) -> None:
        with contextlib.suppress(ChatgateError):
            await self.integrations.set_status(
                integration.tenant_id, integration.id, IntegrationStatus.NEEDS_REAUTH, reason
            )
