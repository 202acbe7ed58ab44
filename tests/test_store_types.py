"""UTCDateTime's own SQLite bind step writes exactly what SQLAlchemy's DATETIME would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from chatgate.store.types import UTCDateTime

VALUES = [
    datetime(2026, 11, 21, 19, 30, 5, 123456, tzinfo=UTC),
    datetime(2026, 11, 21, 19, 30, 5, tzinfo=UTC),  # no microseconds: still six digits
    datetime(603, 3, 25, 12, 18, 32, 111571, tzinfo=UTC),  # a year below 1000 keeps four digits
    datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=3))),  # stored as UTC: the day before
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


def sqlalchemy_text(value: datetime) -> str:
    dialect = sqlite_dialect()
    process = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return str(process(value.astimezone(UTC).replace(tzinfo=None)))


def test_the_sqlite_text_matches_sqlalchemys_datetime_storage() -> None:
    dialect = sqlite_dialect()
    process = UTCDateTime().bind_processor(dialect)
    for value in VALUES:
        assert process(value) == sqlalchemy_text(value)
        assert process(value) == sqlalchemy_text(value)  # the remembered text, same answer
    assert process(VALUES[3]) == "2025-12-31 21:30:00.000000"
    assert process(None) is None


def test_a_new_value_is_not_answered_from_the_last_one() -> None:
    process = UTCDateTime().bind_processor(sqlite_dialect())
    first = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    later = first + timedelta(microseconds=1)
    assert process(first) == "2026-11-21 10:00:00.000000"
    assert process(later) == "2026-11-21 10:00:00.000001"
    assert process(first) == "2026-11-21 10:00:00.000000"


def test_naive_datetimes_are_refused() -> None:
    process = UTCDateTime().bind_processor(sqlite_dialect())
    with pytest.raises(ValueError, match="naive"):
        process(datetime(2026, 11, 21, 10, 0))
