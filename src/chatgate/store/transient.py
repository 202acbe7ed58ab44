"""Model instances for reading, built without the ORM constructor.

The declarative constructor fires an attribute event per column (~30 µs for a message); rows
the hot paths insert through Core, or read back only by id, are built here instead: the same
class and attributes, never added to a session.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import configure_mappers

from chatgate.store.models import Base

M = TypeVar("M", bound=Base)


def transient(model: type[M], values: dict[str, Any]) -> M:
    mapper = model.__mapper__
    if not mapper.configured:
        configure_mappers()
    instance: M = mapper.class_manager.new_instance()
    instance.__dict__.update(values)
    return instance
