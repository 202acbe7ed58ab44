"""HTTP to provider APIs (Telegram, Graph, Twilio): operator-configured, trusted base URLs.

Unlike `SafeHttpClient` (tenant URLs, SSRF-checked), these hosts are set by the operator, so
a sandbox on 127.0.0.1 is allowed. What this client guarantees instead is that no URL ever
reaches an error message: Telegram puts the bot token in the path, so errors name the host only.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from chatgate.delivery.http import DeliveryNetworkError, HttpResult
from chatgate.domain.errors import PayloadTooLarge

_READ_CHUNK = 65_536


@dataclass(frozen=True)
class FilePart:
    """One file of a multipart upload."""

    field: str
    content: bytes
    file_name: str
    mime_type: str = "application/octet-stream"


class ProviderHttp:
    def __init__(
        self,
        *,
        timeout: float = 30.0,
        max_response_bytes: int = 4_000_000,
        connector_limit: int = 500,
    ) -> None:
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._connector_limit = connector_limit
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:  # lazily: aiohttp wants a running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connector_limit),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        form: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        files: Sequence[FilePart] = (),
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        time_limit: float | None = None,
        max_bytes: int | None = None,
    ) -> HttpResult:
        """One request; the whole answer body (capped). Network failures → DeliveryNetworkError
        naming the host only; a body past the cap → PayloadTooLarge."""
        target = URL(url, encoded=False)
        where = f"{target.host}:{target.port}"
        data: Any = None
        if files:
            multipart = aiohttp.FormData()
            for key, value in form.items() if isinstance(form, Mapping) else form or ():
                multipart.add_field(key, value)
            for part in files:
                multipart.add_field(
                    part.field, part.content, filename=part.file_name, content_type=part.mime_type
                )
            data = multipart
        elif form is not None:
            data = list(form.items()) if isinstance(form, Mapping) else list(form)
        started = time.perf_counter()
        limit = self._max_bytes if max_bytes is None else max_bytes
        try:
            async with self._get_session().request(
                method,
                target,
                json=json,
                data=data,
                headers=_with_basic_auth(headers, auth),
                allow_redirects=True,
                timeout=aiohttp.ClientTimeout(total=time_limit or self._timeout),
            ) as resp:
                body = await self._read_capped(resp, limit)
                return HttpResult(
                    status=resp.status,
                    headers=resp.headers,
                    body=body,
                    elapsed=time.perf_counter() - started,
                    url="",  # deliberately empty: provider URLs may carry credentials
                )
        except TimeoutError:
            raise DeliveryNetworkError(
                f"the provider API at {where} did not answer within {time_limit or self._timeout:g} s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise DeliveryNetworkError(
                f"could not connect to the provider API at {where}: {exc.os_error.strerror or 'error'}"
            ) from None
        except aiohttp.ClientError as exc:
            # The exception text can embed the URL; only its type is safe to show.
            raise DeliveryNetworkError(
                f"request to the provider API at {where} failed ({type(exc).__name__})"
            ) from None

    async def _read_capped(self, resp: aiohttp.ClientResponse, limit: int) -> bytes:
        declared = resp.content_length
        if declared is not None and declared > limit:
            resp.close()
            raise PayloadTooLarge(f"the provider's answer is {declared} bytes, over the {limit}-byte limit")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = await resp.content.read(_READ_CHUNK)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > limit:
                resp.close()
                raise PayloadTooLarge(f"the provider's answer is over the {limit}-byte limit")
            chunks.append(chunk)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _with_basic_auth(headers: Mapping[str, str] | None, auth: tuple[str, str] | None) -> dict[str, str]:
    """The request headers plus RFC 7617 Basic credentials (aiohttp deprecates its `auth=`;
    it still drops an Authorization header when a redirect leaves the origin)."""
    merged = dict(headers or {})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        merged["Authorization"] = f"Basic {token}"
    return merged
