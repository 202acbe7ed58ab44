"""Column types that behave the same on SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments INTEGER PRIMARY KEY; elsewhere we want 64 bits.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


# SQLAlchemy's SQLite DATETIME storage format (what its own bind processor writes).
_SQLITE_FORMAT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (MariaDB has no time zones), returns aware UTC, microsecond precision."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        # SQLite stores the text itself; one step instead of two processors per value, and the
        # last value's text kept: a batch binds the same `now` to many rows and columns.
        last: list[tuple[datetime | None, str | None]] = [(None, None)]

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            seen = last[0]  # one read: another thread may replace it, never half of it
            if seen[0] is value:
                return seen[1]
            naive = self.process_bind_param(value, dialect)
            assert naive is not None
            text = _SQLITE_FORMAT % (
                naive.year,
                naive.month,
                naive.day,
                naive.hour,
                naive.minute,
                naive.second,
                naive.microsecond,
            )
            last[0] = (value, text)
            return text

        return process

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
