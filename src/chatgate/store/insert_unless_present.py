"""An INSERT that skips a row already there, in each database's own words."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert


def insert_unless_present(table: Table, dialect: str, *, key: Sequence[str] | None = None) -> Insert:
    """INSERT into `table` that skips a row whose unique key is taken (on PostgreSQL, `key`'s
    constraint when given, else any): PostgreSQL's ON CONFLICT DO NOTHING and SQLite's OR IGNORE
    leave other errors raised (SQLite's foreign keys still fail); MariaDB's IGNORE turns most
    other errors into warnings too, so use it only where no other error can arise."""
    if dialect == "postgresql":
        return postgresql_insert(table).on_conflict_do_nothing(index_elements=key)
    if dialect in ("mysql", "mariadb"):
        return insert(table).prefix_with("IGNORE")
    return insert(table).prefix_with("OR IGNORE")
