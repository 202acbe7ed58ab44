"""User login, token refresh, and who-am-I."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, EmailStr, Field

from chatgate.api.deps import AnyPrincipal, ContainerDep
from chatgate.api.schemas import StrictBody

router = APIRouter(prefix="/v1", tags=["auth"])


class LoginBody(StrictBody):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)
    tenant: str | None = Field(None, description="Tenant slug, needed only if the e-mail exists in several")


class RefreshBody(StrictBody):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    tenant_id: str
    user_id: str
    role: str


class MeOut(BaseModel):
    tenant_id: str
    actor_type: str
    actor_id: str
    role: str | None
    scopes: list[str]
    permissions: list[str]


@router.post(
    "/auth/login", name="auth.login", response_model=TokensOut, summary="Log in with e-mail and password"
)
async def login(body: LoginBody, container: ContainerDep, request: Request) -> TokensOut:
    request.state.audit_actor = body.email
    pair = await container.auth.login(body.email, body.password, body.tenant)
    request.state.audit_tenant_id = pair.tenant_id
    request.state.audit_actor = pair.user_id
    return TokensOut(**pair.__dict__)


@router.post(
    "/auth/refresh",
    name="auth.refresh",
    response_model=TokensOut,
    summary="Trade a refresh token for new tokens",
)
async def refresh(body: RefreshBody, container: ContainerDep, request: Request) -> TokensOut:
    pair = await container.auth.refresh(body.refresh_token)
    request.state.audit_tenant_id = pair.tenant_id
    request.state.audit_actor = pair.user_id
    return TokensOut(**pair.__dict__)


@router.get("/me", name="me.get", response_model=MeOut, summary="The caller's identity and permissions")
async def me(principal: AnyPrincipal) -> MeOut:
    return MeOut(
        tenant_id=principal.tenant_id,
        actor_type=principal.actor_type.value,
        actor_id=principal.actor_id,
        role=principal.role.value if principal.role else None,
        scopes=sorted(s.value for s in principal.scopes),
        permissions=sorted(p.value for p in principal.permissions),
    )
