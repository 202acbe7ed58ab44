"""A column term SQLite's planner must not pick an index for.

Without statistics SQLite guesses which index serves a query, and for a list of ids or keys
it often prefers a broader index on another term of the WHERE clause (the tenant, a status),
then reads every row that index matches: work in proportion to the table, per statement.
`+column` is SQLite's documented way to keep a term away from indexes while still checking
it; other databases get the column itself (their planners choose the key given here).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement


class _Unindexed(FunctionElement[str]):
    inherit_cache = True
    type = String()


@compiles(_Unindexed)
def _column_itself(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_Unindexed, "sqlite")
def _column_unary_plus(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)


def unindexed(column: ColumnElement[str] | InstrumentedAttribute[str]) -> ColumnElement[str]:
    """`column`, checked but never used to choose an index (a text column)."""
    return _Unindexed(column)
