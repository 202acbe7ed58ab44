"""Migrations run up, down and up again on every database, and match the models exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import String, inspect, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import create_async_engine

from chatgate.store import migrate
from chatgate.store.models import Base
from tests.conftest import BACKENDS, database_url_for


@pytest.fixture(params=BACKENDS)
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return await database_url_for(request.param, request, tmp_path)


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    assert await migrate.current_revision(fresh_url) is None
    await migrate.upgrade(fresh_url)
    assert await migrate.current_revision(fresh_url) == migrate.head_revision()
    assert set(Base.metadata.tables) <= await _tables(fresh_url)
    await migrate.downgrade(fresh_url, "base")
    assert await migrate.current_revision(fresh_url) is None
    assert not (set(Base.metadata.tables) & await _tables(fresh_url))
    await migrate.upgrade(fresh_url)
    assert await migrate.current_revision(fresh_url) == migrate.head_revision()


async def test_models_and_migrations_agree(fresh_url: str) -> None:
    """A model change without a migration fails here (on the dialect where it matters)."""
    await migrate.upgrade(fresh_url)
    engine = create_async_engine(fresh_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == [], f"models differ from migrations: {diff}"


def _model_collations() -> dict[tuple[str, str], str | None]:
    """Each string column's collation on PostgreSQL, as the models declare it (None: the database's)."""
    dialect = postgresql.dialect()
    return {
        (table.name, column.name): getattr(column.type.dialect_impl(dialect), "collation", None)
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type.dialect_impl(dialect), String)
    }


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_collations_match_the_models(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Alembic's comparison leaves collations out: a `COLLATE` declared in the models without its
    migration, or the reverse, fails here. Ids and external keys compare as bytes ("C")."""
    url = await database_url_for(backend, request, tmp_path)
    await migrate.upgrade(url)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT c.relname, a.attname, NULLIF(co.collname, 'default')"
                        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                        " JOIN pg_namespace n ON n.oid = c.relnamespace"
                        " JOIN pg_collation co ON co.oid = a.attcollation"
                        " WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0"
                        " AND NOT a.attisdropped AND a.attcollation <> 0"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    in_database = {
        (table, column): collation for table, column, collation in rows if table != "alembic_version"
    }
    expected = _model_collations()
    assert in_database == expected
    assert expected[("raw_events", "provider_event_id")] == "C"
    assert expected[("raw_events", "kind")] is None


async def test_upgrade_is_idempotent(fresh_url: str) -> None:
    await migrate.upgrade(fresh_url)
    await migrate.upgrade(fresh_url)
    assert await migrate.current_revision(fresh_url) == migrate.head_revision()


async def test_concurrent_migrations_do_not_race(fresh_url: str, tmp_path: Path) -> None:
    """Four processes starting at once on an empty database (the scaled deployment's first boot)."""
    import asyncio
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    env |= {"CHATGATE_DATABASE_URL": fresh_url, "CHATGATE_DATA_DIR": str(tmp_path)}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chatgate",
            "migrate",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    results = [await asyncio.wait_for(p.communicate(), timeout=120) for p in processes]
    failures = [
        err.decode()[-500:] for (_, err), p in zip(results, processes, strict=True) if p.returncode != 0
    ]
    assert not failures, failures
    assert await migrate.current_revision(fresh_url) == migrate.head_revision()
