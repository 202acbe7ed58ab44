"""Telegram user-account login as an API state machine, each step an `account.login` event.

phone → code (app or SMS; resend; next type) → 2FA password when set → active, or
QR (`tg://login?token=…`, refreshed before each expiry) → 2FA when set → active.

Between steps nothing stays in memory except a running QR wait: the MTProto session (a login
code only signs in the session that asked for it) and the phone_code_hash are sealed in the
integration's credentials, so each step may run on any API process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from chatgate.domain.clock import Clock
from chatgate.domain.errors import (
    ChatgateError,
    Conflict,
    InvalidInput,
    RateLimited,
    TransientProviderError,
)
from chatgate.domain.events import AccountLoginData, EventType
from chatgate.domain.integrations import IntegrationKind, IntegrationStatus
from chatgate.providers.telegram_user.client import AccountClient, AccountInfo, SentCode, normalize_phone
from chatgate.providers.telegram_user.errors import PasswordNeeded, QrLoginTimeout
from chatgate.providers.telegram_user.live import LiveAccounts
from chatgate.services.account_clients import AccountClientFactory, AccountSpec
from chatgate.services.fanout import Fanout
from chatgate.services.integrations import IntegrationChanges, IntegrationService
from chatgate.store.db import Database
from chatgate.store.models import Integration
from chatgate.store.repositories.events import EventLog, NewEvent
from chatgate.store.repositories.integrations import IntegrationRouting
from chatgate.store.repositories.leases import LeaseStore

log = logging.getLogger(__name__)


def lease_name(integration_id: str) -> str:
    """The lease that makes one worker the only runner of an account."""
    return f"telegram:account:{integration_id}"


# Sealed credentials of an account integration.
SESSION = "session"
CODE_HASH = "phone_code_hash"


class TelegramAccounts:
    def __init__(
        self,
        db: Database,
        integrations: IntegrationService,
        clients: AccountClientFactory,
        fanout: Fanout,
        clock: Clock,
        *,
        qr_minutes: float = 5.0,
        live: LiveAccounts | None = None,
        leases: LeaseStore | None = None,
        owner_grace: float = 30.0,
    ) -> None:
        self.live = live
        self.leases = leases
        self.owner_grace = owner_grace
        self.db = db
        self.integrations = integrations
        self.clients = clients
        self.fanout = fanout
        self.clock = clock
        self.qr_minutes = qr_minutes
        self._qr_tasks: dict[str, asyncio.Task[None]] = {}

    # --- helpers ----------------------------------------------------------------------------

    async def _client(self, integration: Integration | None, credentials: dict[str, str]) -> AccountClient:
        api_id = credentials.get("api_id")
        spec = AccountSpec(
            session=credentials.get(SESSION) or None,
            api_id=int(api_id) if api_id else None,
            api_hash=credentials.get("api_hash") or None,
        )
        client = self.clients(spec)
        await client.connect()
        return client

    async def _emit(self, integration: Integration, state: str, **fields: Any) -> None:
        data = AccountLoginData(
            integration_id=integration.id,
            provider=integration.kind,
            state=state,
            phone=integration.config.get("phone"),
            **fields,
        ).model_dump(mode="json")
        now = self.clock()
        async with self.db.transaction() as session:
            await EventLog(session, integration.tenant_id).lock()
            stored = await EventLog(session, integration.tenant_id).append(
                [NewEvent(EventType.ACCOUNT_LOGIN, data, integration.id, None, None)], now
            )
            pending = await self.fanout.in_transaction(session, integration.tenant_id, stored, now)
        await self.fanout.after_commit(pending)

    async def _save(
        self, integration: Integration, login: dict[str, Any], credentials: dict[str, str] | None = None
    ) -> Integration:
        config = {**integration.config, "login": login}
        return await self.integrations.update(
            integration.tenant_id, integration.id, IntegrationChanges(config=config, credentials=credentials)
        )

    @staticmethod
    def _code_state(sent: SentCode) -> dict[str, Any]:
        return {
            "state": "code_sent",
            "code_type": sent.type,
            "next_type": sent.next_type,
            "timeout": sent.timeout,
        }

    async def _fail_step(self, integration: Integration, error: ChatgateError, *, fatal: bool) -> None:
        """Report a failed step; a fatal one (banned, revoked, refused) ends the login."""
        fields = {"error_code": error.code, "error_message": error.message}
        if fatal:
            integration = await self._save(integration, {"state": "failed", **fields})
            await self.integrations.set_status(
                integration.tenant_id, integration.id, IntegrationStatus.ERROR, error.message
            )
        await self._emit(
            integration,
            "failed" if fatal else integration.config.get("login", {}).get("state", "failed"),
            **fields,
        )

    @staticmethod
    def _fatal(error: ChatgateError) -> bool:
        """Whether a failed step ends the login. A wrong code or password may be tried again;
        "no other way to send the code" (a Conflict from resend) leaves the code already sent
        valid; a flood wait or "too many attempts" (429 with Retry-After) and a network error
        mean "retry later", so the login must still be there then. Banned numbers, revoked
        sessions and Telegram's refusals end it."""
        if isinstance(error, RateLimited | TransientProviderError):
            return False
        return error.code not in ("invalid_input", "password_needed", "conflict")

    # --- phone → code → password ------------------------------------------------------------

    async def start_code_login(
        self,
        tenant_id: str,
        phone: str,
        *,
        name: str | None = None,
        api_id: int | None = None,
        api_hash: str | None = None,
    ) -> Integration:
        phone = normalize_phone(phone)
        own: dict[str, str] = {"api_id": str(api_id), "api_hash": api_hash} if api_id and api_hash else {}
        client = await self._client(None, own)
        try:
            sent = await client.send_code(phone)
            credentials = {**own, SESSION: client.session_string(), CODE_HASH: sent.phone_code_hash}
        finally:
            await client.disconnect()
        integration = await self.integrations.create(
            tenant_id,
            kind=IntegrationKind.TELEGRAM_USER,
            name=name or phone,
            config={"phone": phone, "login": self._code_state(sent)},
            credentials=credentials,
        )
        await self._emit(
            integration, "code_sent", code_type=sent.type, next_type=sent.next_type, timeout=sent.timeout
        )
        return integration

    async def relogin(self, tenant_id: str, integration_id: str, *, method: str = "code") -> Integration:
        """Log an existing account integration in again with a new session (after Telegram
        revoked the old one, a failed or abandoned login, an expired code): same integration,
        so its conversations, webhook endpoints and project routing stay. `method`: "code"
        (to the stored phone number) or "qr"."""
        integration = await self.integrations.get(tenant_id, integration_id)
        if integration.kind != IntegrationKind.TELEGRAM_USER:
            raise InvalidInput("this integration is not a Telegram account")
        if integration.status == IntegrationStatus.ACTIVE:
            raise Conflict("this account is logged in and active; log it in again only after it stops")
        await self._stop_qr(integration.id)
        old = await self.integrations.credentials(integration)
        own = {k: v for k, v in old.items() if k in ("api_id", "api_hash")}
        phone = integration.config.get("phone")
        if method == "qr":
            client = await self._client(None, own)
            try:
                qr = await client.qr_login()
            except BaseException:
                await client.disconnect()
                raise
            login = {"state": "qr_pending", "qr_url": qr.url, "qr_expires_at": qr.expires_at.isoformat()}
            integration = await self._restart(integration, login, {**own, SESSION: client.session_string()})
            await self._emit(integration, "qr_pending", qr_url=qr.url, qr_expires_at=qr.expires_at)
            self._qr_tasks[integration.id] = asyncio.create_task(
                self._qr_wait(integration, client, qr, own), name=f"qr-login-{integration.id}"
            )
            return integration
        if not phone:
            raise InvalidInput("this account has no phone number yet: log it in again with method 'qr'")
        client = await self._client(None, own)
        try:
            sent = await client.send_code(phone)
            credentials = {**own, SESSION: client.session_string(), CODE_HASH: sent.phone_code_hash}
        finally:
            await client.disconnect()
        integration = await self._restart(integration, self._code_state(sent), credentials)
        await self._emit(
            integration, "code_sent", code_type=sent.type, next_type=sent.next_type, timeout=sent.timeout
        )
        return integration

    async def _restart(
        self, integration: Integration, login: dict[str, Any], credentials: dict[str, str]
    ) -> Integration:
        """A new login on an existing integration: it waits (pending) until the login ends."""
        integration = await self._save(integration, login, credentials)
        if integration.status != IntegrationStatus.PENDING:
            integration = await self.integrations.set_status(
                integration.tenant_id, integration.id, IntegrationStatus.PENDING, "logging in again"
            )
        return integration

    async def _stop_qr(self, integration_id: str) -> None:
        task = self._qr_tasks.pop(integration_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _login_credentials(self, integration: Integration, expected: tuple[str, ...]) -> dict[str, str]:
        if integration.kind != IntegrationKind.TELEGRAM_USER:
            raise InvalidInput("this integration is not a Telegram account")
        state = integration.config.get("login", {}).get("state")
        if state not in expected:
            raise Conflict(f"the login is at '{state}', not waiting for this step ({' or '.join(expected)})")
        return await self.integrations.credentials(integration)

    async def resend_code(self, tenant_id: str, integration_id: str) -> Integration:
        integration = await self.integrations.get(tenant_id, integration_id)
        credentials = await self._login_credentials(integration, ("code_sent",))
        client = await self._client(integration, credentials)
        try:
            sent = await client.resend_code(integration.config["phone"], credentials[CODE_HASH])
            credentials = {**credentials, SESSION: client.session_string(), CODE_HASH: sent.phone_code_hash}
        except ChatgateError as exc:
            await self._fail_step(integration, exc, fatal=self._fatal(exc))
            raise
        finally:
            await client.disconnect()
        integration = await self._save(integration, self._code_state(sent), credentials)
        await self._emit(
            integration, "code_sent", code_type=sent.type, next_type=sent.next_type, timeout=sent.timeout
        )
        return integration

    async def submit_code(self, tenant_id: str, integration_id: str, code: str) -> Integration:
        integration = await self.integrations.get(tenant_id, integration_id)
        credentials = await self._login_credentials(integration, ("code_sent",))
        client = await self._client(integration, credentials)
        try:
            info = await client.sign_in_code(
                integration.config["phone"], code.strip(), credentials[CODE_HASH]
            )
        except PasswordNeeded as exc:
            credentials = {**credentials, SESSION: client.session_string()}
            await client.disconnect()
            hint = exc.details.get("hint")
            integration = await self._save(
                integration, {"state": "password_needed", "password_hint": hint}, credentials
            )
            await self._emit(integration, "password_needed", password_hint=hint)
            return integration
        except ChatgateError as exc:
            await client.disconnect()
            await self._fail_step(integration, exc, fatal=self._fatal(exc))
            raise
        try:
            return await self._activate(integration, client, info, credentials)
        finally:
            await client.disconnect()

    async def submit_password(self, tenant_id: str, integration_id: str, password: str) -> Integration:
        integration = await self.integrations.get(tenant_id, integration_id)
        credentials = await self._login_credentials(integration, ("password_needed",))
        client = await self._client(integration, credentials)
        try:
            info = await client.sign_in_password(password)
        except ChatgateError as exc:
            await client.disconnect()
            await self._fail_step(integration, exc, fatal=self._fatal(exc))
            raise
        try:
            return await self._activate(integration, client, info, credentials)
        finally:
            await client.disconnect()

    # --- QR ---------------------------------------------------------------------------------

    async def start_qr_login(
        self,
        tenant_id: str,
        *,
        name: str | None = None,
        api_id: int | None = None,
        api_hash: str | None = None,
    ) -> Integration:
        own: dict[str, str] = {"api_id": str(api_id), "api_hash": api_hash} if api_id and api_hash else {}
        client = await self._client(None, own)
        try:
            qr = await client.qr_login()
        except BaseException:
            await client.disconnect()
            raise
        login = {"state": "qr_pending", "qr_url": qr.url, "qr_expires_at": qr.expires_at.isoformat()}
        integration = await self.integrations.create(
            tenant_id,
            kind=IntegrationKind.TELEGRAM_USER,
            name=name or "Telegram account (QR)",
            config={"phone": None, "login": login},
            credentials={**own, SESSION: client.session_string()},
        )
        await self._emit(integration, "qr_pending", qr_url=qr.url, qr_expires_at=qr.expires_at)
        # The wait needs this connected client while the code is on screen: it runs here.
        self._qr_tasks[integration.id] = asyncio.create_task(
            self._qr_wait(integration, client, qr, own), name=f"qr-login-{integration.id}"
        )
        return integration

    async def _qr_wait(
        self, integration: Integration, client: AccountClient, qr: Any, own: dict[str, str]
    ) -> None:
        deadline = self.clock() + timedelta(minutes=self.qr_minutes)
        try:
            while self.clock() < deadline:
                # Refresh a second before expiry, so the code on screen always scans.
                left = (qr.expires_at - self.clock()).total_seconds() - 1.0
                try:
                    info = await qr.wait(timeout=max(0.5, left))
                except QrLoginTimeout:
                    await qr.recreate()
                    login = {
                        "state": "qr_pending",
                        "qr_url": qr.url,
                        "qr_expires_at": qr.expires_at.isoformat(),
                    }
                    integration = await self._save(integration, login)
                    await self._emit(integration, "qr_pending", qr_url=qr.url, qr_expires_at=qr.expires_at)
                    continue
                except PasswordNeeded as exc:
                    hint = exc.details.get("hint")
                    credentials = {**own, SESSION: client.session_string()}
                    integration = await self._save(
                        integration, {"state": "password_needed", "password_hint": hint}, credentials
                    )
                    await self._emit(integration, "password_needed", password_hint=hint)
                    return
                await self._activate(integration, client, info, {**own, SESSION: client.session_string()})
                return
            expired = InvalidInput(
                f"nobody scanned the QR code within {self.qr_minutes:g} minutes; start again"
            )
            await self._fail_step(integration, expired, fatal=True)
        except ChatgateError as exc:
            await self._fail_step(integration, exc, fatal=True)
        except Exception:
            log.exception("QR login of integration %s crashed", integration.id)
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()
            self._qr_tasks.pop(integration.id, None)

    async def wait_qr(self, integration_id: str) -> None:
        """For tests and shutdown: until the QR wait of this integration has ended."""
        task = self._qr_tasks.get(integration_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._qr_tasks.values()):
            task.cancel()
        await asyncio.gather(*self._qr_tasks.values(), return_exceptions=True)

    # --- done -------------------------------------------------------------------------------

    async def _activate(
        self, integration: Integration, client: AccountClient, info: AccountInfo, credentials: dict[str, str]
    ) -> Integration:
        session = client.session_string()
        kept = {k: v for k, v in credentials.items() if k in ("api_id", "api_hash")}
        phone = normalize_phone(info.phone) if info.phone else integration.config.get("phone")
        try:
            async with self.db.transaction() as db_session:
                await db_session.execute(
                    update(Integration)
                    .where(Integration.id == integration.id, Integration.tenant_id == integration.tenant_id)
                    .values(provider_key=str(info.user_id))
                )
        except IntegrityError:
            error = await self._already_connected(integration, info)
            with contextlib.suppress(ChatgateError):
                await client.log_out()  # the new session only; the connected one keeps running
            await self._fail_step(integration, error, fatal=True)
            raise error from None
        config = {
            **integration.config,
            "phone": phone,
            "user_id": info.user_id,
            "username": info.username,
            "first_name": info.first_name,
            "last_name": info.last_name,
            "login": {"state": "active"},
        }
        integration = await self.integrations.update(
            integration.tenant_id,
            integration.id,
            IntegrationChanges(config=config, credentials={**kept, SESSION: session}),
        )
        integration = await self.integrations.set_status(
            integration.tenant_id, integration.id, IntegrationStatus.ACTIVE, None
        )
        await self._emit(integration, "active")
        return integration

    async def _already_connected(self, integration: Integration, info: AccountInfo) -> Conflict:
        async with self.db.sessions() as db_session:
            other = await IntegrationRouting(db_session).by_provider_key(
                IntegrationKind.TELEGRAM_USER, str(info.user_id)
            )
        if other is not None and other.tenant_id == integration.tenant_id:
            return Conflict(
                f"this Telegram account is already connected here (integration {other.id}, "
                f"{other.status}); to log it in again use POST /v1/telegram/accounts/{other.id}/relogin"
            )
        return Conflict("this Telegram account is already connected (here or to another account)")

    async def reconnect(self, integration: Integration) -> Integration:
        """Run the account again. Never opens a second client on a live session (Telegram would
        kill it): the worker that takes the account checks the session itself."""
        if integration.status == IntegrationStatus.NEEDS_REAUTH:
            raise Conflict(
                "Telegram revoked this session: log in again "
                f"(POST /v1/telegram/accounts/{integration.id}/relogin)"
            )
        if (integration.config.get("login") or {}).get("state") != "active":
            raise Conflict("this account has not finished logging in")
        if integration.status != IntegrationStatus.ACTIVE:
            integration = await self.integrations.set_status(
                integration.tenant_id, integration.id, IntegrationStatus.PENDING, None
            )
            integration = await self.integrations.set_status(
                integration.tenant_id, integration.id, IntegrationStatus.ACTIVE, None
            )
        return integration

    async def log_out(self, integration: Integration) -> None:
        """Deleting an account logs its session out at Telegram (best effort), through the live
        client when this process runs it; otherwise after its owner let go of it."""
        live = self.live.get(integration.id) if self.live is not None else None
        if live is not None:
            with contextlib.suppress(ChatgateError):
                await live.log_out()
            return
        credentials = await self.integrations.credentials(integration)
        if not credentials.get(SESSION):
            return
        if self.leases is not None and await self.leases.holder(lease_name(integration.id), self.clock()):
            await self.integrations.set_status(
                integration.tenant_id, integration.id, IntegrationStatus.DISABLED, "being deleted"
            )
            for _ in range(int(self.owner_grace / 0.25)):
                if not await self.leases.holder(lease_name(integration.id), self.clock()):
                    break
                await asyncio.sleep(0.25)
            else:
                log.warning("account %s still runs elsewhere; not logging it out twice", integration.id)
                return
        try:
            client = await self._client(integration, credentials)
            try:
                await client.log_out()
            finally:
                await client.disconnect()
        except ChatgateError as exc:
            log.info("log out of integration %s failed: %s", integration.id, exc.message)
