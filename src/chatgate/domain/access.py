"""Roles, API-key scopes and the permissions they grant."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    AGENT = "agent"
    VIEWER = "viewer"


class Scope(StrEnum):
    """What an API key may do. Keys are for servers, so they get scopes, not roles."""

    READ = "read"
    SEND = "send"
    MANAGE = "manage"


class Permission(StrEnum):
    READ = "read"  # see integrations, conversations, messages
    SEND = "send"  # send messages
    MANAGE = "manage"  # connect integrations, endpoints, API keys
    AUDIT = "audit"  # read the audit log
    USERS = "users"  # manage users of the tenant


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.AGENT: frozenset({Permission.READ, Permission.SEND}),
    Role.ADMIN: frozenset(
        {Permission.READ, Permission.SEND, Permission.MANAGE, Permission.AUDIT, Permission.USERS}
    ),
    Role.OWNER: frozenset(Permission),
}

SCOPE_PERMISSIONS: dict[Scope, frozenset[Permission]] = {
    Scope.READ: frozenset({Permission.READ}),
    Scope.SEND: frozenset({Permission.SEND}),
    # A manage key administers integrations and reads the audit trail; it cannot manage people.
    Scope.MANAGE: frozenset({Permission.MANAGE, Permission.AUDIT}),
}

ROLE_RANK = {Role.VIEWER: 0, Role.AGENT: 1, Role.ADMIN: 2, Role.OWNER: 3}


def permissions_for_scopes(scopes: frozenset[Scope]) -> frozenset[Permission]:
    granted: set[Permission] = set()
    for scope in scopes:
        granted |= SCOPE_PERMISSIONS[scope]
    return frozenset(granted)
