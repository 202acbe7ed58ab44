"""HTTP to the Graph API for one phone number: bearer token, JSON, uploads, media downloads.

Every non-2xx answer becomes a typed error through `errors.graph_error`; network failures
are already `TransientProviderError`s (`DeliveryNetworkError`) from `ProviderHttp`. No URL or
token ever reaches an error message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from chatgate.delivery.http import HttpResult
from chatgate.domain.errors import PermanentProviderError, TransientProviderError
from chatgate.providers.base import IntegrationContext
from chatgate.providers.http import FilePart, ProviderHttp
from chatgate.providers.whatsapp_cloud.errors import graph_error


class GraphClient:
    def __init__(self, http: ProviderHttp, graph_base: str, api_version: str, access_token: str) -> None:
        self._http = http
        self._base = f"{graph_base.rstrip('/')}/{api_version.strip('/')}"
        self._headers = {"Authorization": f"Bearer {access_token}"}

    @classmethod
    def for_context(cls, ctx: IntegrationContext, graph_base: str, api_version: str) -> GraphClient:
        token = ctx.credentials.get("access_token")
        if not token:
            raise PermanentProviderError("this WhatsApp integration has no access_token configured")
        return cls(ctx.provider_api(), graph_base, api_version, token)

    def url(self, *segments: str, query: Mapping[str, str] | None = None) -> str:
        path = "/".join(quote(segment, safe="") for segment in segments)
        return f"{self._base}/{path}" + (f"?{urlencode(query)}" if query else "")

    async def raw(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        files: tuple[FilePart, ...] = (),
        max_bytes: int | None = None,
    ) -> HttpResult:
        return await self._http.request(
            method, url, json=json_body, form=form, files=files, headers=self._headers, max_bytes=max_bytes
        )

    async def call(
        self,
        method: str,
        *segments: str,
        query: Mapping[str, str] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        files: tuple[FilePart, ...] = (),
        recipient: str | None = None,
        phone_number_id: str | None = None,
    ) -> dict[str, Any]:
        """The JSON object of a 2xx answer; the mapped error otherwise."""
        result = await self.raw(
            method, self.url(*segments, query=query), json_body=json_body, form=form, files=files
        )
        if not 200 <= result.status < 300:
            raise graph_error(
                result.status,
                result.body,
                result.headers,
                recipient=recipient,
                phone_number_id=phone_number_id,
            )
        try:
            answer = json.loads(result.body)
        except ValueError:
            raise TransientProviderError(
                f"the Graph API answered {result.status} with a body that is not JSON"
            ) from None
        if not isinstance(answer, dict):
            raise TransientProviderError(f"the Graph API answered {result.status} with an unexpected body")
        return answer
