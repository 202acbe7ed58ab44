"""The tenant-scoped repository base."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.errors import NotFound
from chatgate.store.models import Base
from chatgate.store.pagination import DEFAULT_LIMIT, MAX_LIMIT, KeyOf, Page, decode_cursor, page_of

M = TypeVar("M", bound=Base)


class TenantScoped:
    """Every query issued through a subclass carries `tenant_id = :tenant`."""

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        if not tenant_id:
            raise ValueError("a tenant-scoped repository needs a tenant id")
        self.session = session
        self.tenant_id = tenant_id

    def _select(self, model: type[M]) -> Select[M]:
        column: Any = model.tenant_id  # type: ignore[attr-defined]
        return select(model).where(column == self.tenant_id)

    async def _get(self, model: type[M], object_id: str | int, what: str) -> M:
        id_column: Any = model.id  # type: ignore[attr-defined]
        row = (
            await self.session.execute(self._select(model).where(id_column == object_id))
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"{what} '{object_id}' does not exist")
        return row

    async def _page(self, query: Select[M], model: type[M], cursor: str | None, limit: int) -> Page[M]:
        limit = max(1, min(limit or DEFAULT_LIMIT, MAX_LIMIT))
        id_column: Any = model.id  # type: ignore[attr-defined]
        after = decode_cursor(cursor)
        if after is not None:
            query = query.where(id_column < after)
        rows = list((await self.session.execute(query.order_by(id_column.desc()).limit(limit + 1))).scalars())
        return page_of(rows, limit, KeyOf[M]("id"))
