"""Columns that hold sealed secrets, listed once so key rotation finds every one of them.

Adding a sealed column elsewhere = one more `SealedColumn(...)` in `SEALED_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.store.models import Base, Integration, WebhookEndpoint


@dataclass(frozen=True)
class SealedColumn:
    model: type[Base]
    column: str
    aad: Callable[[str, str], bytes]  # (tenant_id, row_id) -> associated data

    @property
    def name(self) -> str:
        return f"{self.model.__tablename__}.{self.column}"

    async def batch(self, session: AsyncSession, after_id: str, size: int) -> list[tuple[str, str, str]]:
        model: Any = self.model
        column = getattr(model, self.column)
        query = (
            select(model.id, model.tenant_id, column)
            .where(model.id > after_id, column.is_not(None))
            .order_by(model.id)
            .limit(size)
        )
        return [(r[0], r[1], r[2]) for r in (await session.execute(query)).all()]

    async def replace(self, session: AsyncSession, row_id: str, old: str, new: str) -> bool:
        """Swap the ciphertext only if nobody changed it meanwhile (compare-and-set)."""
        model: Any = self.model
        column = getattr(model, self.column)
        result = await session.execute(
            update(model).where(model.id == row_id, column == old).values({self.column: new})
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def all_values(self, session: AsyncSession) -> list[str]:
        column = getattr(self.model, self.column)
        return list((await session.execute(select(column).where(column.is_not(None)))).scalars())


def integration_credentials_aad(tenant_id: str, integration_id: str) -> bytes:
    """Binds integration credentials to their row and tenant."""
    return f"integrations:{tenant_id}:{integration_id}:credentials".encode()


def endpoint_secret_aad(column: str) -> Callable[[str, str], bytes]:
    def aad(tenant_id: str, endpoint_id: str) -> bytes:
        return f"webhook_endpoints:{tenant_id}:{endpoint_id}:{column}".encode()

    return aad


SEALED_COLUMNS: list[SealedColumn] = [
    SealedColumn(Integration, "credentials_sealed", integration_credentials_aad),
    *(
        SealedColumn(WebhookEndpoint, column, endpoint_secret_aad(column))
        for column in ("secret_sealed", "previous_secret_sealed", "format_secret_sealed")
    ),
]
