"""Media: upload files to send; download attachments of received messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from chatgate.api.deps import ContainerDep, Reader, Sender
from chatgate.api.schemas import Out
from chatgate.domain.errors import NotFound

router = APIRouter(prefix="/v1/media", tags=["media"])


class MediaOut(Out):
    id: str
    mime_type: str | None
    file_name: str | None
    size: int | None
    sha256: str | None
    created_at: datetime
    url: str


@router.post(
    "", name="media.upload", response_model=MediaOut, status_code=201, summary="Upload a file to send"
)
async def upload(
    file: Annotated[UploadFile, File(description="The file (multipart/form-data)")],
    principal: Sender,
    container: ContainerDep,
    request: Request,
) -> MediaOut:
    content = await file.read()
    media = await container.media.upload(
        principal.tenant_id, content=content, mime_type=file.content_type, file_name=file.filename
    )
    request.state.audit_target = ("media", media.id)
    return MediaOut.model_validate({**media.__dict__, "url": f"/v1/media/{media.id}"})


def _file(content: bytes, mime_type: str | None, file_name: str | None) -> Response:
    headers = {"Content-Length": str(len(content)), "X-Content-Type-Options": "nosniff"}
    if file_name:
        headers["Content-Disposition"] = f'attachment; filename="{file_name.replace(chr(34), "")}"'
    return Response(content, media_type=mime_type or "application/octet-stream", headers=headers)


@router.get(
    "/{media_id}",
    name="media.get",
    summary="Download a file (uploads, and attachments of received messages)",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        307: {"description": "Fetch it from the sender's URL"},
    },
)
async def download(media_id: str, principal: Reader, container: ContainerDep) -> Response:
    media = await container.media.get(principal.tenant_id, media_id)
    if media.content is not None:
        return _file(media.content, media.mime_type, media.file_name)
    if media.provider_file_id:
        fetched = await container.actions.fetch_media(principal.tenant_id, media)
        return _file(fetched.content, fetched.mime_type, fetched.file_name)
    if media.source_url:
        return RedirectResponse(media.source_url, status_code=307)
    raise NotFound("this file is held by the provider and cannot be fetched through this integration yet")
