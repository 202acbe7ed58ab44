"""Declarative base, naming convention and shared column types."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, MetaData, String
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase

from chatgate.store.types import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def key_string(length: int) -> String:
    """A string of opaque identifiers, compared byte by byte on PostgreSQL (`COLLATE "C"`).

    Under the database's locale every index comparison of an id would go through the locale's
    collation, which buys nothing for ids (their byte order is already their ULID order) and
    costs PostgreSQL's CPU on every insert and lookup: the ingest stored 6-12 % more webhooks per
    second with its ids compared as bytes (docs/performance.md). Equality is the same either way.
    """
    return String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


ID = key_string(40)  # our own ids (`raw_01j…`)
EXTERNAL_KEY = key_string(191)  # keys a provider or a client gives us: event ids, addresses, chat ids


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        list[dict[str, Any]]: JSON(),
        list[Any]: JSON(),
    }
