"""Who is calling: a user, an API key, or a user of an external user service."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from chatgate.domain.access import Permission, Role, Scope


class ActorType(StrEnum):
    USER = "user"
    API_KEY = "api_key"
    EXTERNAL = "external"
    ANONYMOUS = "anonymous"
    SYSTEM = "system"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    actor_type: ActorType
    actor_id: str
    permissions: frozenset[Permission]
    role: Role | None = None
    scopes: frozenset[Scope] = field(default_factory=frozenset)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def rate_key(self) -> str:
        return f"{self.actor_type}:{self.actor_id}"
