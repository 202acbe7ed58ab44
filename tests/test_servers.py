"""The throwaway servers from tests/servers.py really answer, with the URLs they hand out."""

from __future__ import annotations

import socket
import struct
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.servers import MariaDBServer, PostgresServer, RabbitMQServer, RedisServer


async def _select_one(url: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT 1"))).scalar_one()
    finally:
        await engine.dispose()


async def test_postgres_answers(postgres_server: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres_server.dsn())
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
    url = postgres_server.create_database("cg_servers_check")
    assert url == f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_server.port}/cg_servers_check"
    assert await _select_one(url) == 1


async def test_mariadb_answers(mariadb_server: MariaDBServer) -> None:
    url = mariadb_server.create_database("cg_servers_check")
    assert url.startswith(f"mysql+asyncmy://{mariadb_server.user}:")
    assert url.endswith(f"@127.0.0.1:{mariadb_server.port}/cg_servers_check?charset=utf8mb4")
    assert await _select_one(url) == 1
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            charset = (await conn.execute(text("SELECT @@character_set_database"))).scalar_one()
    finally:
        await engine.dispose()
    assert charset == "utf8mb4"


async def test_redis_answers(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await client.ping() is True
        await client.set("cg:servers:check", "1")
        redis_server.flushall()
        assert await client.get("cg:servers:check") is None
    finally:
        await client.aclose()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def _read_method(sock: socket.socket) -> tuple[int, int]:
    kind, _channel, size = struct.unpack(">BHI", _recv_exact(sock, 7))
    payload = _recv_exact(sock, size + 1)
    assert kind == 1, f"expected a method frame, got frame type {kind}"
    assert payload[-1] == 0xCE
    class_id, method_id = struct.unpack(">HH", payload[:4])
    return class_id, method_id


def _amqp_login(host: str, port: int, user: str, password: str) -> tuple[int, int]:
    """Minimal AMQP 0-9-1 handshake up to the server's reply to Connection.StartOk."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        assert _read_method(sock) == (10, 10)  # connection.start
        response = f"\0{user}\0{password}".encode()
        args = (
            struct.pack(">I", 0)  # client-properties: empty table
            + bytes([5])
            + b"PLAIN"
            + struct.pack(">I", len(response))
            + response
            + bytes([5])
            + b"en_US"
        )
        payload = struct.pack(">HH", 10, 11) + args  # connection.start-ok
        sock.sendall(struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce")
        return _read_method(sock)


def test_rabbitmq_guest_can_log_in_from_localhost(rabbitmq_server: RabbitMQServer) -> None:
    url = urlsplit(rabbitmq_server.url)
    assert (url.scheme, url.username, url.password, url.port) == (
        "amqp",
        "guest",
        "guest",
        rabbitmq_server.port,
    )
    assert url.hostname is not None
    assert _amqp_login(url.hostname, rabbitmq_server.port, "guest", "guest") == (10, 30)  # connection.tune
    assert "guest" in rabbitmq_server.ctl("list_users", "-q")


@pytest.mark.slow
def test_rabbitmq_restart_keeps_port_and_data(rabbitmq_server: RabbitMQServer) -> None:
    rabbitmq_server.ctl("add_vhost", "cg-restart-check")
    port = rabbitmq_server.port
    rabbitmq_server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    rabbitmq_server.start()
    assert rabbitmq_server.port == port
    assert _amqp_login("127.0.0.1", port, "guest", "guest") == (10, 30)
    assert "cg-restart-check" in rabbitmq_server.ctl("list_vhosts", "-q")
    rabbitmq_server.ctl("delete_vhost", "cg-restart-check")
