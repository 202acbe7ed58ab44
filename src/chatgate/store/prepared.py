"""Hot-path statements compiled once, and on the inline SQLite engine run on sqlite3's cursor.

SQLAlchemy spends 55 to 80 µs of Python on every statement it executes here (the session, the
execution context, parameter processing, the result object), against 5 to 20 µs for `sqlite3`
running the same SQL: an inbound batch's twenty statements cost more around SQLite than in it.
On the inline engine (`sqlite_inline.py`) a `Prepared` statement skips all that: its SQL,
parameter order and type conversions are worked out once per dialect, and each execution binds,
runs and converts rows itself, on the session's own connection and transaction. On other
databases it is `session.execute`, unchanged.

What it supports is what the hot paths need, checked when a statement is first compiled:
Core `SELECT`/`INSERT`/`UPDATE`/`DELETE` (with `RETURNING`) with named `bindparam`s, expanding
`IN` lists, and Python-side column defaults (`default=` / `onupdate=` values and argument-less
callables). Rows come back as tuples, in the statement's column order.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Column, CompoundSelect, Delete, Insert, Select, Update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.schema import ColumnDefault

from chatgate.store import sqlite_inline

_CONNECTION_KEY = "chatgate.prepared.connection"
_POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_(\w+)\]")
Processor = Callable[[Any], Any] | None
Statement = Select[Any] | CompoundSelect[Any] | Insert | Update | Delete


class UnpreparableStatement(TypeError):
    """A statement uses something `Prepared` does not handle (a bug of ours, found in tests)."""


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    processor: Processor
    expanding: bool
    default: Callable[[], Any] | None  # a column default, for a parameter the caller may omit
    constant: bool  # a literal in the statement: its value is `value`
    value: Any

    def value_in(self, values: Mapping[str, Any]) -> Any:
        if self.name in values:
            return values[self.name]
        if self.default is not None:
            return self.default()
        if self.constant:
            return self.value
        raise KeyError(f"no value for bound parameter {self.name!r}")


class _SqlitePlan:
    """One statement's SQL and conversions on the inline SQLite dialect."""

    def __init__(self, statement: Statement, dialect: Dialect, keys: Sequence[str] | None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        if compiled.positiontup is None:
            raise UnpreparableStatement("expected a positional (qmark) SQLite compilation")
        if compiled.escaped_bind_names:
            raise UnpreparableStatement(f"bind names that need escaping: {compiled.escaped_bind_names}")
        defaults = {c.key: c for c in (*compiled.insert_prefetch, *compiled.update_prefetch)}
        self.params = tuple(
            self._param(name, compiled.binds[name], dialect, defaults, compiled.insert_prefetch)
            for name in compiled.positiontup
        )
        self.expands = any(p.expanding for p in self.params)
        # Every value from the caller's mapping (an INSERT's rows, most UPDATEs' sets): bound by
        # one itemgetter call, converting only the columns whose type has a processor.
        self._all_given = bool(self.params) and not any(
            p.expanding or p.constant or p.default is not None for p in self.params
        )
        names = [p.name for p in self.params]
        self._take: Callable[[Mapping[str, Any]], Any] = (
            itemgetter(*names) if len(names) > 1 else lambda values: tuple(values[n] for n in names)
        )
        self._converted = tuple(
            (i, p.processor) for i, p in enumerate(self.params) if p.processor is not None
        )
        self.sql = compiled.string
        if self.sql.count("__[POSTCOMPILE_") != len(_POSTCOMPILE.findall(self.sql)):
            raise UnpreparableStatement(f"an IN list rendered with a bind expression: {self.sql[:200]}")
        self._expanded: dict[tuple[int, ...], str] = {}
        result_processors = (
            entry[3].dialect_impl(dialect).result_processor(dialect, None)
            for entry in compiled._result_columns
        )
        self._row_converters = tuple(
            (index, process) for index, process in enumerate(result_processors) if process is not None
        )

    @staticmethod
    def _param(
        name: str,
        bind: BindParameter[Any],
        dialect: Dialect,
        defaults: dict[str, Column[Any]],
        insert_prefetch: Sequence[Column[Any]],
    ) -> _Param:
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        default = None
        if name in defaults:
            column = defaults[name]
            generator = column.default if column in insert_prefetch else column.onupdate
            default = _default_maker(column, generator)
        constant = not bind.required and bind.callable is None and default is None
        return _Param(name, processor, bind.expanding, default, constant, bind.value)

    def sql_for(self, values: Mapping[str, Any]) -> str:
        """The SQL, its IN lists expanded to as many placeholders as the values have items (an
        empty list stays empty: SQLite's `x IN ()` is false and `x NOT IN ()` true, the
        answers SQLAlchemy's empty-set rendering gives)."""
        if not self.expands:
            return self.sql
        sizes = {p.name: len(p.value_in(values)) for p in self.params if p.expanding}
        lengths = tuple(sizes.values())
        sql = self._expanded.get(lengths)
        if sql is None:
            sql = _POSTCOMPILE.sub(lambda m: ", ".join("?" * sizes[m.group(1)]), self.sql)
            self._expanded[lengths] = sql
        return sql

    def bind(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters, as a tuple (the shape SQLAlchemy gives cursor listeners)."""
        if self._all_given:
            try:
                taken = list(self._take(values))
            except KeyError as missing:
                raise KeyError(f"no value for bound parameter {missing.args[0]!r}") from None
            for index, process in self._converted:
                taken[index] = process(taken[index])
            return tuple(taken)
        bound: list[Any] = []
        for param in self.params:
            value = param.value_in(values)
            convert = param.processor
            if param.expanding:
                bound.extend(value if convert is None else [convert(v) for v in value])
            else:
                bound.append(value if convert is None else convert(value))
        return tuple(bound)

    def convert(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Rows with each column converted by its type's result processor, if it has one."""
        if not self._row_converters:
            return rows
        converted: list[tuple[Any, ...]] = []
        for row in rows:
            values = list(row)
            for index, process in self._row_converters:
                values[index] = process(values[index])
            converted.append(tuple(values))
        return converted


def _default_maker(column: Column[Any], generator: Any) -> Callable[[], Any]:
    if isinstance(generator, ColumnDefault):
        if generator.is_scalar:
            value = generator.arg
            return lambda: value
        # SQLAlchemy wraps an argument-less callable as `wrapper(context)` (with `__wrapped__`);
        # one that takes the execution context itself has no context to take here.
        if generator.is_callable and hasattr(generator.arg, "__wrapped__"):
            function = generator.arg
            return lambda: function(None)
    raise UnpreparableStatement(f"column {column} has a default Prepared cannot compute: {generator!r}")


class Prepared:
    """A Core statement run through `rows`, `run` or `run_many` in an `AsyncSession`, or their
    `_on` forms on a sync `Connection` (inside `run_sync`); see the module docstring."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._plans: dict[tuple[int, tuple[str, ...] | None], _SqlitePlan] = {}

    async def rows(self, session: AsyncSession, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows a SELECT (or a statement with RETURNING) gives, as tuples."""
        inline = await _Inline.of(session)
        if inline is None:
            return [tuple(row) for row in await session.execute(self.statement, values)]
        return self._rows(inline, values)

    async def run(self, session: AsyncSession, values: Mapping[str, Any]) -> int:
        """Execute once; the number of rows it matched."""
        inline = await _Inline.of(session)
        if inline is None:
            return int(getattr(await session.execute(self.statement, values), "rowcount", 0))
        return self._run(inline, values)

    async def run_many(self, session: AsyncSession, many: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per parameter set (executemany). Every set has the same keys."""
        if not many:
            return
        inline = await _Inline.of(session)
        if inline is None:
            await session.execute(self.statement, list(many))
            return
        self._run_many(inline, many)

    def rows_on(self, connection: Connection, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """`rows` on a sync connection."""
        inline = _Inline.on(connection)
        if inline is None:
            return [tuple(row) for row in connection.execute(self.statement, values)]
        return self._rows(inline, values)

    def run_on(self, connection: Connection, values: Mapping[str, Any]) -> int:
        """`run` on a sync connection."""
        inline = _Inline.on(connection)
        if inline is None:
            return int(getattr(connection.execute(self.statement, values), "rowcount", 0))
        return self._run(inline, values)

    def run_many_on(self, connection: Connection, many: Sequence[Mapping[str, Any]]) -> None:
        """`run_many` on a sync connection."""
        if not many:
            return
        inline = _Inline.on(connection)
        if inline is None:
            connection.execute(self.statement, list(many))
            return
        self._run_many(inline, many)

    def _rows(self, inline: _Inline, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        plan = self._plan(inline, values)
        return plan.convert(inline.execute(plan.sql_for(values), plan.bind(values), many=False).fetchall())

    def _run(self, inline: _Inline, values: Mapping[str, Any]) -> int:
        plan = self._plan(inline, values)
        return int(inline.execute(plan.sql_for(values), plan.bind(values), many=False).rowcount)

    def _run_many(self, inline: _Inline, many: Sequence[Mapping[str, Any]]) -> None:
        plan = self._plan(inline, many[0])
        if plan.expands:
            raise UnpreparableStatement("expanding IN lists cannot be executed many")
        inline.execute(plan.sql, [plan.bind(values) for values in many], many=True)

    def _plan(self, inline: _Inline, values: Mapping[str, Any]) -> _SqlitePlan:
        # An INSERT's columns are the keys given (as with SQLAlchemy's executemany).
        keys = tuple(values) if isinstance(self.statement, Insert) else None
        cache_key = (id(inline.dialect), keys)
        plan = self._plans.get(cache_key)
        if plan is None:
            plan = self._plans[cache_key] = _SqlitePlan(self.statement, inline.dialect, keys)
        return plan


@dataclass(frozen=True, slots=True)
class _Inline:
    """A connection on the inline SQLite engine, with its sqlite3 connection."""

    connection: Connection
    raw: sqlite3.Connection
    dialect: sqlite_inline.SQLiteDialect_chatgate_inline
    transaction: SessionTransaction | None = None  # the session's, when kept with a session

    @staticmethod
    def on(connection: Connection) -> _Inline | None:
        dialect = connection.dialect
        if not isinstance(dialect, sqlite_inline.SQLiteDialect_chatgate_inline):
            return None
        raw = connection.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        return _Inline(connection, raw, dialect)

    @staticmethod
    async def of(session: AsyncSession) -> _Inline | None:
        """None on other engines. Asking the session for its connection costs a greenlet hop
        (~30 µs); it is the same one for the whole transaction, so it is kept with the session."""
        bind = session.bind
        if bind is None or not isinstance(bind.dialect, sqlite_inline.SQLiteDialect_chatgate_inline):
            return None
        transaction = session.sync_session.get_transaction()
        cached: _Inline | None = session.info.get(_CONNECTION_KEY)
        if (
            cached is not None
            and cached.transaction is transaction
            and transaction is not None
            and transaction.is_active
        ):
            return cached
        connection = (await session.connection()).sync_connection
        assert connection is not None
        found = _Inline.on(connection)
        assert found is not None
        inline = _Inline(found.connection, found.raw, found.dialect, session.sync_session.get_transaction())
        session.info[_CONNECTION_KEY] = inline
        return inline

    def execute(self, sql: str, parameters: Any, *, many: bool) -> sqlite3.Cursor:
        self.dialect.check_gated(sql)
        cursor = self.raw.cursor()
        # Cursor listeners (statement counters, query-plan tests) see these statements too;
        # the context argument is None, as SQLAlchemy gives for its own direct cursor calls.
        dispatch = self.connection.dispatch
        if dispatch.before_cursor_execute:
            dispatch.before_cursor_execute(self.connection, cursor, sql, parameters, None, many)
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        if dispatch.after_cursor_execute:
            dispatch.after_cursor_execute(self.connection, cursor, sql, parameters, None, many)
        return cursor
