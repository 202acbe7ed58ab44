"""SSRF-safe outbound HTTP client for webhook delivery, built on aiohttp.

Every target host is resolved by `SafeResolver`, an aiohttp resolver that refuses private,
loopback, link-local and other non-public addresses. Because aiohttp connects to exactly the
addresses its resolver returns, the address we check is the address we use (no DNS rebinding
window). aiohttp skips the resolver for literal IPs, so those are checked by `check_url`
before every request instead.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from chatgate.domain.errors import ConfigurationError, InvalidInput, TransientProviderError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 3
_REDIRECTS_KEEPING_BODY = frozenset({307, 308})  # 301/302/303 would turn the POST into a GET
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_READ_CHUNK = 16_384


class UnsafeUrl(InvalidInput):
    """The URL points somewhere we will not send data (bad scheme, non-public address...)."""

    code = "unsafe_url"


class DeliveryNetworkError(TransientProviderError):
    """The request did not complete: DNS failure, refused connection, reset, timeout."""

    code = "delivery_network_error"


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: int
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    body: bytes  # at most max_response_bytes
    elapsed: float  # seconds, all redirect hops included
    truncated: bool = False
    url: str = ""  # the URL that produced this response (after any followed redirects)


def _net(cidr: str) -> IPNetwork:
    return ipaddress.ip_network(cidr)


# Order matters: the first match names the reason, so specific ranges come first.
_V4_RULES: tuple[tuple[IPNetwork, str], ...] = (
    (_net("169.254.169.254/32"), "the cloud metadata address (link-local)"),
    (_net("0.0.0.0/8"), "an unspecified ('this network') address"),
    (_net("127.0.0.0/8"), "a loopback address"),
    (_net("10.0.0.0/8"), "a private address"),
    (_net("172.16.0.0/12"), "a private address"),
    (_net("192.168.0.0/16"), "a private address"),
    (_net("169.254.0.0/16"), "a link-local address"),
    (_net("100.64.0.0/10"), "a carrier-grade NAT (shared) address"),
    (_net("224.0.0.0/4"), "a multicast address"),
    (_net("240.0.0.0/4"), "a reserved address"),
)
_V6_RULES: tuple[tuple[IPNetwork, str], ...] = (
    (_net("::/128"), "an unspecified address"),
    (_net("::1/128"), "a loopback address"),
    (_net("::/8"), "a reserved address"),  # incl. deprecated IPv4-compatible ::a.b.c.d
    (_net("fe80::/10"), "a link-local address"),
    (_net("fec0::/10"), "a site-local address"),
    (_net("fc00::/7"), "a unique-local address"),
    (_net("ff00::/8"), "a multicast address"),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Legacy numeric spellings (2130706433, 0x7f.1, 127.1) that libc maps onto an address.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address really reaches (mapped, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def address_problem(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None if it is."""
    rules = _V4_RULES
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = address_problem(embedded)
            return None if inner is None else f"{inner} ({embedded}) inside an IPv6 address"
        rules = _V6_RULES
    for net, reason in rules:
        if ip in net:
            return reason
    if not ip.is_global:
        return "a non-public special-purpose address"
    return None


def _normalize_host(host: str) -> str:
    return host.rstrip(".").lower()


class HostPolicy:
    """Parsed `allow_hosts`: exact hostnames, and IPs or CIDRs that bypass the address checks."""

    def __init__(self, allow_hosts: Sequence[str] = ()) -> None:
        names: set[str] = set()
        nets: list[IPNetwork] = []
        for raw in allow_hosts:
            entry = raw.strip().strip("[]")
            if not entry:
                continue
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if "/" in entry or ":" in entry:
                    raise ConfigurationError(f"allow_hosts entry {raw!r} is not a valid IP or CIDR") from None
                names.add(_normalize_host(entry))
        self._names = frozenset(names)
        self._nets = tuple(nets)

    def allows_host(self, host: str) -> bool:
        return _normalize_host(host) in self._names

    def allows_ip(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(c in net for c in candidates for net in self._nets)

    def check_ip(self, host: str, ip: IPAddress) -> None:
        if self.allows_ip(ip):
            return
        problem = address_problem(ip)
        if problem is None:
            return
        if _normalize_host(host) == _normalize_host(str(ip)):
            raise UnsafeUrl(f"refusing {ip}: it is {problem}", details={"host": host, "reason": problem})
        raise UnsafeUrl(
            f"refusing host {host!r}: it resolves to {ip}, which is {problem}",
            details={"host": host, "reason": problem},
        )


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _check(url: str | URL, policy: HostPolicy, allow_http: bool) -> URL:
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError):
        raise UnsafeUrl("not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeUrl(f"URL scheme must be https{' or http' if allow_http else ''}, got {parsed.scheme!r}")
    host = parsed.host
    if not parsed.is_absolute() or not host:
        raise UnsafeUrl("URL has no host")
    if not policy.allows_host(host):
        ip = _literal_ip(host)
        if ip is not None:
            policy.check_ip(host, ip)
        elif _NUMERIC_HOST.match(host):
            raise UnsafeUrl(f"refusing host {host!r}: ambiguous numeric address, write it as a dotted quad")
        elif _normalize_host(host) == "localhost" or _normalize_host(host).endswith(".localhost"):
            raise UnsafeUrl(f"refusing host {host!r}: it is a loopback name")
    if parsed.scheme == "http" and not allow_http:
        raise UnsafeUrl("plain http is not allowed, use https")
    return parsed


def check_url(url: str, allow_hosts: Sequence[str] = (), allow_http: bool = False) -> str:
    """Validate a webhook URL at configuration time, without DNS; return it normalised.

    Catches bad schemes and literal non-public IPs early; names are checked again, after
    resolution, on every request.
    """
    return str(_check(url, HostPolicy(allow_hosts), allow_http))


class SafeResolver(AbstractResolver):
    """Resolves with `inner` (system DNS by default) and refuses any non-public answer.

    If any address of a name is unsafe the whole name is refused, so a mixed answer cannot
    sneak an internal address into aiohttp's happy-eyeballs fallback list.
    """

    def __init__(self, policy: HostPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner
        self._owns_inner = inner is None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            # ThreadedResolver needs a running loop, so it is made on first use.
            self._inner = aiohttp.ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        if not self._policy.allows_host(host):
            for result in results:
                ip = _literal_ip(result["host"])
                if ip is None:
                    raise UnsafeUrl(f"refusing host {host!r}: resolver returned a non-IP {result['host']!r}")
                self._policy.check_ip(host, ip)
        return results

    async def close(self) -> None:
        if self._owns_inner and self._inner is not None:
            await self._inner.close()


class SafeHttpClient:
    """POSTs to user-supplied URLs without letting them reach internal addresses."""

    def __init__(
        self,
        *,
        allow_hosts: Sequence[str] = (),
        allow_http: bool = False,
        timeout: float = 15.0,
        max_response_bytes: int = 64_000,
        resolver: AbstractResolver | None = None,
        connector_limit: int = 200,
        max_redirects: int = 0,
        keepalive_seconds: float = 4.0,
    ) -> None:
        """`resolver` replaces system DNS (tests); its answers are still filtered.

        `keepalive_seconds` is how long an idle connection is kept for reuse. It is shorter than
        the 5 s many servers (uvicorn, Node, Go's defaults) allow: a POST sent on a connection
        the receiver is closing fails without an answer, and would cost a retry and its backoff.

        `max_redirects` (0 to 3) follows only 307/308, the redirects that keep the POST body;
        every hop is checked like the first URL.
        """
        if not 0 <= max_redirects <= MAX_REDIRECTS:
            raise ConfigurationError(f"max_redirects must be between 0 and {MAX_REDIRECTS}")
        if timeout <= 0 or max_response_bytes < 0 or keepalive_seconds <= 0:
            raise ConfigurationError(
                "timeout and keepalive_seconds must be positive and max_response_bytes non-negative"
            )
        self._policy = HostPolicy(allow_hosts)
        self._allow_http = allow_http
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._resolver = SafeResolver(self._policy, resolver)
        self._connector_limit = connector_limit
        self._max_redirects = max_redirects
        self._keepalive = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def check_url(self, url: str) -> str:
        """`check_url` with this client's policy."""
        return str(_check(url, self._policy, self._allow_http))

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("SafeHttpClient is closed")
        if self._session is None:
            # Made lazily: aiohttp wants a running event loop.
            connector = aiohttp.TCPConnector(
                limit=self._connector_limit, resolver=self._resolver, keepalive_timeout=self._keepalive
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                trust_env=False,  # an env proxy would do the resolving and bypass our checks
            )
        return self._session

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> HttpResult:
        target = _check(url, self._policy, self._allow_http)
        send_headers = dict(headers)
        started = time.perf_counter()
        for hop in range(self._max_redirects + 1):
            result = await self._send(target, body, send_headers, started)
            location = result.headers.get("Location")
            if result.status not in _REDIRECTS_KEEPING_BODY or not location or hop == self._max_redirects:
                return result
            try:
                next_url = target.join(URL(location))
            except (ValueError, TypeError):
                raise UnsafeUrl("redirect Location is not a valid URL") from None
            next_url = _check(next_url, self._policy, self._allow_http)
            if next_url.origin() != target.origin():
                send_headers = {k: v for k, v in send_headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
            target = next_url
        raise AssertionError("unreachable")  # the loop always returns on its last hop

    async def _send(self, url: URL, body: bytes, headers: dict[str, str], started: float) -> HttpResult:
        where = f"{url.host}:{url.port}"
        try:
            async with self._get_session().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                data, truncated = await self._read_capped(resp)
                if truncated:
                    resp.close()  # drop the connection rather than drain an oversized body
                return HttpResult(
                    status=resp.status,
                    headers=resp.headers,
                    body=data,
                    elapsed=time.perf_counter() - started,
                    truncated=truncated,
                    url=str(url),
                )
        except TimeoutError:
            raise DeliveryNetworkError(
                f"request to {where} timed out after {self._timeout:g} s", details={"host": url.host}
            ) from None
        except aiohttp.ClientConnectorDNSError as exc:
            raise DeliveryNetworkError(
                f"DNS lookup for {url.host} failed: {exc.os_error}", details={"host": url.host}
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise DeliveryNetworkError(
                f"could not connect to {where}: {exc.os_error.strerror or exc.os_error}",
                details={"host": url.host},
            ) from exc
        except aiohttp.ClientError as exc:
            raise DeliveryNetworkError(
                f"request to {where} failed: {type(exc).__name__}: {exc}", details={"host": url.host}
            ) from exc

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        remaining = self._max_bytes
        while remaining > 0:
            chunk = await resp.content.read(min(remaining, _READ_CHUNK))
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks), not resp.content.at_eof()

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._resolver.close()

    async def __aenter__(self) -> SafeHttpClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
