"""Seed 002's projects: an external application's organization id bound to one tenant, and that
tenant's choice of how Telegram sends go out (as a user account, a bot, or an external provider)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from chatgate.domain.clock import Clock
from chatgate.domain.errors import Conflict, InvalidInput, NotFound
from chatgate.domain.integrations import IntegrationKind
from chatgate.store.db import Database
from chatgate.store.models import Integration, Project
from chatgate.store.repositories.integrations import IntegrationRepository

SEND_KINDS = (IntegrationKind.TELEGRAM_USER, IntegrationKind.TELEGRAM_BOT, IntegrationKind.WEBHOOK)


def phone_digits(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    if not 7 <= len(digits) <= 15:
        raise InvalidInput(f"'{phone}' is not a phone number (7 to 15 digits, + optional)")
    return digits


class ProjectService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def bind(self, tenant_id: str, project_id: str) -> Project:
        """The project, bound to this tenant on first use; another tenant's project is a 409."""
        project_id = project_id.strip()
        if not project_id or len(project_id) > 191:
            raise InvalidInput("project_id must have 1 to 191 characters")
        async with self.db.sessions() as session:
            found = await session.get(Project, project_id)
        if found is not None:
            if found.tenant_id != tenant_id:
                raise Conflict("this project_id belongs to another account")
            return found
        now = self.clock()
        try:
            async with self.db.transaction() as session:
                project = Project(project_id=project_id, tenant_id=tenant_id, created_at=now, updated_at=now)
                session.add(project)
        except IntegrityError:
            return await self.bind(tenant_id, project_id)  # created concurrently: check its owner
        return project

    async def get(self, tenant_id: str, project_id: str) -> Project:
        async with self.db.sessions() as session:
            found = await session.get(Project, project_id)
        if found is None or found.tenant_id != tenant_id:
            raise NotFound(
                f"project '{project_id}' is not connected; call /integration/lovable/connect first"
            )
        return found

    async def route_sends(self, tenant_id: str, project_id: str, integration_id: str | None) -> Project:
        if integration_id is not None:
            async with self.db.sessions() as session:
                integration = await IntegrationRepository(session, tenant_id).get(integration_id)
            if integration.kind not in SEND_KINDS:
                raise InvalidInput(
                    "Telegram sends can go through a telegram_user account, a telegram_bot, "
                    f"or a webhook integration (an external provider), not {integration.kind}"
                )
        project = await self.get(tenant_id, project_id)
        async with self.db.transaction() as session:
            stored = await session.get(Project, project.project_id)
            assert stored is not None
            stored.telegram_send_integration_id = integration_id
            stored.updated_at = self.clock()
        return stored

    async def account_by_phone(self, tenant_id: str, phone: str) -> Integration | None:
        digits = phone_digits(phone)
        async with self.db.sessions() as session:
            rows = await session.execute(
                select(Integration).where(
                    Integration.tenant_id == tenant_id,
                    Integration.kind == IntegrationKind.TELEGRAM_USER.value,
                )
            )
            for integration in rows.scalars():
                if phone_digits(str(integration.config.get("phone") or "0000000")) == digits:
                    return integration
        return None
