"""Auth dependencies: who is calling, may they do this, and are they within their rate limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from chatgate.bootstrap import Container
from chatgate.domain.access import Permission
from chatgate.domain.errors import PermissionDenied, RateLimited, Unauthenticated
from chatgate.domain.principal import Principal
from chatgate.ratelimit.base import Limit
from chatgate.security.api_keys import PREFIX as API_KEY_PREFIX

# Declared as security schemes so the OpenAPI document shows how to authenticate.
_bearer = HTTPBearer(auto_error=False, description="A user access token (JWT) or an API key (cgk_…)")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (cgk_…)")


async def get_container(request: Request) -> Container:  # async: no thread-pool hop per request
    return cast(Container, request.app.state.container)


ContainerDep = Annotated[Container, Depends(get_container)]


async def authenticate(
    request: Request,
    container: ContainerDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    auth = container.auth
    if api_key:
        principal = await auth.authenticate_api_key(api_key)
    elif bearer is not None:
        token = bearer.credentials
        if token.startswith(API_KEY_PREFIX):
            principal = await auth.authenticate_api_key(token)
        else:
            principal = await auth.authenticate_bearer(token)
    else:
        raise Unauthenticated(
            "this endpoint needs an API key (X-API-Key or Bearer cgk_…) or a user access token"
        )
    request.state.principal = principal
    settings = container.settings
    limit = Limit(settings.rate_limit_key_per_second, settings.rate_limit_key_burst)
    decision = await container.rate_limiter.hit(f"key:{principal.rate_key}", limit)
    if not decision.allowed:
        container.metrics.rate_limited_total.labels("key").inc()
        raise RateLimited(
            f"rate limit of {settings.rate_limit_key_per_second:g} requests/s for this credential exceeded",
            retry_after=decision.retry_after,
        )
    return principal


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates and checks one permission; every protected route uses it."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.can(permission):
            raise PermissionDenied(f"this action needs the '{permission}' permission")
        return principal

    check.__name__ = f"require_{permission.value}"
    return check


Reader = Annotated[Principal, Depends(require(Permission.READ))]
Sender = Annotated[Principal, Depends(require(Permission.SEND))]
Manager = Annotated[Principal, Depends(require(Permission.MANAGE))]
Auditor = Annotated[Principal, Depends(require(Permission.AUDIT))]
UserAdmin = Annotated[Principal, Depends(require(Permission.USERS))]
AnyPrincipal = Annotated[Principal, Depends(authenticate)]
