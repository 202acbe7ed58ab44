"""Alembic environment: runs migrations on the async engine named in the config."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from chatgate.store.models import Base

config = context.config
target_metadata = Base.metadata


_LOCK_ID = 7_204_515_001  # any constant: all chatgate processes agree on it


def _lock(connection: Connection) -> None:
    """Several processes starting together on an empty database would race to create the
    same tables; a database-wide lock makes them migrate one after the other."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({_LOCK_ID})")
    elif connection.dialect.name in ("mysql", "mariadb"):
        connection.exec_driver_sql("SELECT GET_LOCK('chatgate_migrations', 300)")


def _unlock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_LOCK_ID})")
    elif connection.dialect.name in ("mysql", "mariadb"):
        connection.exec_driver_sql("SELECT RELEASE_LOCK('chatgate_migrations')")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_lock)
            try:
                await connection.run_sync(_run)
                await connection.commit()
            finally:
                await connection.run_sync(_unlock)
                await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
