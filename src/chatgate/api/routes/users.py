"""Users of the caller's tenant (owners and admins manage them)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import EmailStr, Field

from chatgate.api.deps import ContainerDep, UserAdmin
from chatgate.api.schemas import Out, PageLimit, PageOut, StrictBody
from chatgate.domain.access import Role

router = APIRouter(prefix="/v1/users", tags=["users"])


class UserOut(Out):
    id: str
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class UserCreate(StrictBody):
    email: EmailStr
    name: str = Field("", max_length=200)
    password: str = Field(min_length=10, max_length=1024)
    role: Role = Role.VIEWER


class UserPatch(StrictBody):
    name: str | None = Field(None, max_length=200)
    role: Role | None = None
    is_active: bool | None = None
    password: str | None = Field(None, min_length=10, max_length=1024)


@router.get("", name="users.list", response_model=PageOut[UserOut])
async def list_users(
    principal: UserAdmin,
    container: ContainerDep,
    cursor: str | None = None,
    limit: PageLimit = 50,
) -> PageOut[UserOut]:
    page = await container.access.list_users(principal.tenant_id, cursor=cursor, limit=limit)
    return PageOut(data=[UserOut.model_validate(u) for u in page.items], next_cursor=page.next_cursor)


@router.post("", name="users.create", response_model=UserOut, status_code=201)
async def create_user(
    body: UserCreate, principal: UserAdmin, container: ContainerDep, request: Request
) -> UserOut:
    user = await container.access.create_user(
        principal, email=body.email, name=body.name, password=body.password, role=body.role
    )
    request.state.audit_target = ("user", user.id)
    return UserOut.model_validate(user)


@router.get("/{user_id}", name="users.get", response_model=UserOut)
async def get_user(user_id: str, principal: UserAdmin, container: ContainerDep) -> UserOut:
    return UserOut.model_validate(await container.access.get_user(principal.tenant_id, user_id))


@router.patch("/{user_id}", name="users.update", response_model=UserOut)
async def update_user(
    user_id: str, body: UserPatch, principal: UserAdmin, container: ContainerDep
) -> UserOut:
    user = await container.access.update_user(
        principal, user_id, name=body.name, role=body.role, is_active=body.is_active, password=body.password
    )
    return UserOut.model_validate(user)


@router.delete("/{user_id}", name="users.delete", status_code=204)
async def delete_user(user_id: str, principal: UserAdmin, container: ContainerDep) -> Response:
    await container.access.delete_user(principal, user_id)
    return Response(status_code=204)
