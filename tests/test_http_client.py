"""SafeHttpClient: SSRF refusals, DNS pinning, redirects, caps and network errors.

A fake resolver stands in for DNS; everything else (aiohttp, sockets, a real local server)
is real.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from chatgate.delivery.http import (
    DeliveryNetworkError,
    SafeHttpClient,
    UnsafeUrl,
    address_problem,
    check_url,
)
from chatgate.domain.errors import ConfigurationError, InvalidInput, TransientProviderError

LOCAL = ["127.0.0.1"]


class FakeDns(AbstractResolver):
    """Answers from a fixed table, like a DNS server an attacker controls would."""

    def __init__(self, table: Mapping[str, list[str]]) -> None:
        self.table = dict(table)
        self.queries: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.queries.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return [
            {
                "hostname": host,
                "host": ip,
                "port": port,
                "family": socket.AF_INET6 if ":" in ip else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for ip in self.table[host]
        ]

    async def close(self) -> None:
        pass


@dataclass
class Server:
    base: str
    port: int
    received: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(base="", port=0)

    async def hook(request: web.Request) -> web.Response:
        srv.received.append((request.path, await request.read(), dict(request.headers)))
        return web.Response(status=202, text="accepted", headers={"X-Reply": "yes"})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 200_000)

    async def redirect(request: web.Request) -> web.Response:
        srv.received.append((request.path, await request.read(), dict(request.headers)))
        target = request.query.get("to", "/redirect").replace("{base}", srv.base)  # default: a loop
        status = int(request.query.get("status", "307"))
        return web.Response(status=status, headers={"Location": target})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/big", big)
    app.router.add_post("/redirect", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.port = runner.addresses[0][1]
    srv.base = f"http://127.0.0.1:{srv.port}"
    try:
        yield srv
    finally:
        await runner.cleanup()


@pytest.fixture
async def local_client() -> AsyncIterator[SafeHttpClient]:
    client = SafeHttpClient(allow_hosts=LOCAL, allow_http=True, timeout=5)
    yield client
    await client.aclose()


# --- refused by default, each with its reason ---

REFUSED = [
    ("http://127.0.0.1/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[::1]/", "loopback"),
    ("http://10.0.0.1/", "private"),
    ("https://172.16.5.4/", "private"),
    ("https://192.168.1.1/", "private"),
    ("https://169.254.1.1/", "link-local"),
    ("https://[fe80::1]/", "link-local"),
    ("https://[fd00:ec2::254]/", "unique-local"),
    ("https://100.64.0.1/", "carrier-grade NAT"),
    ("https://224.0.0.251/", "multicast"),
    ("https://[ff02::1]/", "multicast"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://[::]/", "unspecified"),
    ("https://240.0.0.1/", "reserved"),
    ("https://192.0.2.10/", "non-public"),
    ("https://[::ffff:127.0.0.1]/", r"loopback address \(127\.0\.0\.1\) inside an IPv6"),
    ("https://[::ffff:169.254.169.254]/", "metadata"),
    ("https://[64:ff9b::a00:1]/", r"private address \(10\.0\.0\.1\)"),
    ("https://2130706433/", "ambiguous numeric"),
    ("https://0x7f.1/", "ambiguous numeric"),
    ("https://localhost/", "loopback name"),
    ("ftp://example.com/", "scheme"),
    ("https:///nohost", "no host"),
    ("http://example.com/hook", "plain http is not allowed"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_check_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(UnsafeUrl, match=reason) as info:
        check_url(url)
    assert isinstance(info.value, InvalidInput)
    assert info.value.code == "unsafe_url"


@pytest.mark.parametrize(("url", "reason"), REFUSED[:4])
async def test_post_refuses_before_connecting(url: str, reason: str) -> None:
    async with SafeHttpClient(allow_http=True) as client:
        with pytest.raises(UnsafeUrl, match=reason):
            await client.post(url, body=b"{}", headers={})


def test_check_url_accepts_public_and_allowed() -> None:
    assert check_url("https://hooks.example.com/x?y=1") == "https://hooks.example.com/x?y=1"
    assert check_url("https://8.8.8.8/") == "https://8.8.8.8/"
    assert check_url("https://[2606:4700::1111]/") == "https://[2606:4700::1111]/"
    assert check_url("http://127.0.0.1:8080/", LOCAL, allow_http=True) == "http://127.0.0.1:8080/"
    assert check_url("https://10.1.2.3/", ["10.0.0.0/8"]) == "https://10.1.2.3/"
    assert check_url("https://localhost/", ["localhost"]) == "https://localhost/"
    with pytest.raises(UnsafeUrl, match="plain http"):
        check_url("http://127.0.0.1/", LOCAL)


def test_address_problem_public_is_none() -> None:
    import ipaddress

    for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]:
        assert address_problem(ipaddress.ip_address(ip)) is None, ip


def test_bad_allow_hosts_entry() -> None:
    with pytest.raises(ConfigurationError):
        SafeHttpClient(allow_hosts=["10.0.0.0/33"])
    with pytest.raises(ConfigurationError):
        SafeHttpClient(max_redirects=4)


# --- DNS answers are checked, and the checked answer is the one used ---


async def test_name_resolving_to_private_address_is_refused() -> None:
    dns = FakeDns({"internal.example": ["10.0.0.1"]})
    async with SafeHttpClient(resolver=dns) as client:
        with pytest.raises(
            UnsafeUrl, match=r"'internal\.example': it resolves to 10\.0\.0\.1, which is a private"
        ):
            await client.post("https://internal.example/hook", body=b"{}", headers={})
    assert dns.queries == ["internal.example"]


async def test_mixed_answer_is_refused_as_a_whole() -> None:
    dns = FakeDns({"mixed.example": ["93.184.216.34", "169.254.169.254"]})
    async with SafeHttpClient(resolver=dns) as client:
        with pytest.raises(UnsafeUrl, match="metadata"):
            await client.post("https://mixed.example/", body=b"", headers={})


async def test_connection_is_pinned_to_the_resolved_address(server: Server) -> None:
    # The name only exists in our fake DNS, so reaching the server proves aiohttp connected
    # to the very address our resolver checked and returned.
    dns = FakeDns({"hooks.test": ["127.0.0.1"]})
    async with SafeHttpClient(allow_hosts=LOCAL, allow_http=True, resolver=dns) as client:
        result = await client.post(f"http://hooks.test:{server.port}/hook", body=b"pinned", headers={})
    assert result.status == 202
    assert server.received[0][1] == b"pinned"
    assert server.received[0][2]["Host"] == f"hooks.test:{server.port}"


async def test_dns_failure_is_a_network_error() -> None:
    async with SafeHttpClient(resolver=FakeDns({})) as client:
        with pytest.raises(DeliveryNetworkError, match=r"DNS lookup for nowhere\.example failed"):
            await client.post("https://nowhere.example/", body=b"", headers={})


# --- real requests to a local server ---


async def test_post_reaches_allowed_local_server(server: Server, local_client: SafeHttpClient) -> None:
    body = b'{"type":"message.received"}'
    result = await local_client.post(
        f"{server.base}/hook",
        body=body,
        headers={"Content-Type": "application/json", "webhook-id": "msg_1"},
    )
    assert result.status == 202
    assert result.body == b"accepted"
    assert not result.truncated
    assert result.headers["x-reply"] == "yes"  # case-insensitive
    assert 0 <= result.elapsed < 5
    path, got_body, got_headers = server.received[0]
    assert (path, got_body) == ("/hook", body)
    assert got_headers["Content-Type"] == "application/json"
    assert got_headers["webhook-id"] == "msg_1"


async def test_http_refused_without_allow_http(server: Server) -> None:
    async with SafeHttpClient(allow_hosts=LOCAL) as client:
        with pytest.raises(UnsafeUrl, match="plain http"):
            await client.post(f"{server.base}/hook", body=b"", headers={})
    assert server.received == []


async def test_response_body_truncated_at_cap(server: Server) -> None:
    async with SafeHttpClient(allow_hosts=LOCAL, allow_http=True, max_response_bytes=1000) as client:
        result = await client.post(f"{server.base}/big", body=b"", headers={})
        assert result.status == 200
        assert result.body == b"x" * 1000
        assert result.truncated
        # The dropped connection does not break the next request.
        again = await client.post(f"{server.base}/hook", body=b"again", headers={})
        assert again.status == 202


async def test_redirect_is_not_followed_by_default(server: Server, local_client: SafeHttpClient) -> None:
    result = await local_client.post(f"{server.base}/redirect?to={{base}}/hook", body=b"once", headers={})
    assert result.status == 307
    assert result.headers["Location"] == f"{server.base}/hook"
    assert [r[0] for r in server.received] == ["/redirect"]


async def test_redirect_to_private_address_is_refused(server: Server) -> None:
    async with SafeHttpClient(allow_hosts=LOCAL, allow_http=True, max_redirects=3) as client:
        with pytest.raises(UnsafeUrl, match=r"10\.0\.0\.1: it is a private address"):
            await client.post(f"{server.base}/redirect?to=http://10.0.0.1/x", body=b"", headers={})
        with pytest.raises(UnsafeUrl, match="metadata"):
            await client.post(
                f"{server.base}/redirect?to=http://169.254.169.254/latest", body=b"", headers={}
            )
    assert [r[0] for r in server.received] == ["/redirect", "/redirect"]


async def test_redirect_to_name_resolving_private_is_refused(server: Server) -> None:
    dns = FakeDns({"evil.example": ["192.168.0.10"]})
    async with SafeHttpClient(allow_hosts=LOCAL, allow_http=True, max_redirects=3, resolver=dns) as client:
        with pytest.raises(UnsafeUrl, match=r"'evil\.example': it resolves to 192\.168\.0\.10"):
            await client.post(f"{server.base}/redirect?to=http://evil.example/x", body=b"", headers={})


async def test_optional_redirects_keep_body_and_stop_at_limit(server: Server) -> None:
    async with SafeHttpClient(allow_hosts=LOCAL, allow_http=True, max_redirects=3) as client:
        result = await client.post(
            f"{server.base}/redirect?to={{base}}/hook", body=b"kept", headers={"Authorization": "x"}
        )
        assert result.status == 202
        assert result.url == f"{server.base}/hook"
        assert server.received[-1][:2] == ("/hook", b"kept")
        # Same origin, so credentials are kept.
        assert server.received[-1][2]["Authorization"] == "x"

        # A 302 would turn the POST into a GET, so it is returned, not followed.
        found = await client.post(f"{server.base}/redirect?status=302&to={{base}}/hook", body=b"", headers={})
        assert found.status == 302

        # A redirect loop ends after max_redirects hops with the last 3xx.
        server.received.clear()
        loop = await client.post(f"{server.base}/redirect", body=b"", headers={})
        assert loop.status == 307
        assert len(server.received) == 4


# --- network failures are transient errors with clear messages ---


async def test_server_that_never_answers_times_out() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()  # read the request and never reply

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with SafeHttpClient(allow_hosts=LOCAL, allow_http=True, timeout=0.5) as client:
            started = time.monotonic()
            with pytest.raises(DeliveryNetworkError, match=r"timed out after 0\.5 s") as info:
                await client.post(f"http://127.0.0.1:{port}/", body=b"{}", headers={})
            assert time.monotonic() - started < 3
            assert isinstance(info.value, TransientProviderError)
    finally:
        for writer in writers:
            writer.close()
        srv.close()
        await srv.wait_closed()


async def test_idle_connections_are_let_go_before_the_receiver_drops_them() -> None:
    """A receiver that drops connections idle for 0.4 s: a request sent on one it is dropping gets
    no answer. The client lets idle connections go after 0.2 s, so the second POST, 0.6 s later,
    opens a fresh connection instead of failing."""
    connections = 0
    unanswered = 0

    async def receiver(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections, unanswered
        connections += 1
        answered_at: float | None = None
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                if answered_at is not None and time.monotonic() - answered_at > 0.4:
                    unanswered += 1
                    return  # closing: the request it just read gets no answer
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                answered_at = time.monotonic()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(receiver, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/hook"
    try:
        async with SafeHttpClient(
            allow_hosts=LOCAL, allow_http=True, timeout=5, keepalive_seconds=0.2
        ) as client:
            assert (await client.post(url, body=b"{}", headers={})).status == 200
            assert (await client.post(url, body=b"{}", headers={})).status == 200  # reused at once
            assert connections == 1
            await asyncio.sleep(0.6)
            assert (await client.post(url, body=b"{}", headers={})).status == 200
            assert (connections, unanswered) == (2, 0)
    finally:
        srv.close()
        await srv.wait_closed()


async def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again at once: nothing listens there
    async with SafeHttpClient(allow_hosts=LOCAL, allow_http=True, timeout=5) as client:
        with pytest.raises(DeliveryNetworkError, match=rf"could not connect to 127\.0\.0\.1:{port}"):
            await client.post(f"http://127.0.0.1:{port}/", body=b"{}", headers={})


async def test_closed_client_refuses_use() -> None:
    client = SafeHttpClient()
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.post("https://example.com/", body=b"", headers={})
