"""Model instances built without the ORM constructor or the ORM's loading.

The declarative constructor fires an attribute event per column (~30 µs for a message); rows
the hot paths insert through Core, or read back only by id, are built here instead: the same
class and attributes, never added to a session (`transient`). Rows the hot paths read through
Core and may change become the session's own objects (`persistent`, or `adopted` once a change
is due: attaching cost ~20 µs a row), as if the ORM had loaded them: their changes are flushed
with the session's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, TypeVar, cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import configure_mappers, make_transient_to_detached

from chatgate.store.models import Base

M = TypeVar("M", bound=Base)


def transient(model: type[M], values: dict[str, Any]) -> M:
    mapper = model.__mapper__
    if not mapper.configured:
        configure_mappers()
    instance: M = mapper.class_manager.new_instance()
    instance.__dict__.update(values)
    return instance


@cache
def table_columns(model: type[Base]) -> tuple[str, ...]:
    """The model's column keys in its table's order: the order of `select(*table.columns)`."""
    return tuple(column.key for column in cast(Table, model.__table__).columns)


def from_rows(model: type[M], rows: Iterable[Sequence[Any]]) -> list[M]:
    """`transient` objects for rows of all the model's columns, in its table's order."""
    columns = table_columns(model)
    return [transient(model, dict(zip(columns, row, strict=True))) for row in rows]


def persistent(session: AsyncSession, model: type[M], rows: Iterable[Sequence[Any]]) -> list[M]:
    """Rows of all the model's columns (in its table's order) as the session's objects. An object
    the session already holds is used as it is, as the ORM's loading does."""
    return [adopted(session, instance) for instance in from_rows(model, rows)]


def adopted(session: AsyncSession, instance: M) -> M:
    """The session's own object for a row built by `transient` (primary key included), to
    change: the one the session already holds for that identity, else `instance`, attached."""
    mapper = type(instance).__mapper__
    key = mapper.identity_key_from_primary_key(
        tuple(instance.__dict__[str(column.key)] for column in mapper.primary_key)
    )
    sync = session.sync_session
    held = sync.identity_map.get(key)
    if held is not None:
        return held  # type: ignore[no-any-return]
    make_transient_to_detached(instance)
    sync.add(instance)
    return instance
