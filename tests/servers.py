"""Throwaway real servers for tests: PostgreSQL, MariaDB, Redis and RabbitMQ.

Loaded as a pytest plugin from tests/conftest.py. Each fixture is session-scoped and lazy: a
server starts only when a test asks for it, in a fresh temporary directory on a free
127.0.0.1 port, and is stopped (and its directory removed) at the end of the session, also
when the session fails or is interrupted (fixture finalizer + atexit). Processes left over
by a session that died hard (SIGKILL, OOM) are found by their directory and killed the next
time a server is started.

Servers are started from the Debian 12 packages (postgresql, mariadb-server, redis-server,
rabbitmq-server) and run as their service users, so the tests must run as root.

Environment:

* ``CHATGATE_TEST_SERVERS`` -- comma list of the servers that may be started (default
  ``postgres,mariadb,redis,rabbitmq``); tests needing another one are skipped.
* ``CI=true`` -- a missing binary or a non-root run fails the tests instead of skipping them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, NoReturn, TypeVar

import pytest

ALL_SERVERS = ("postgres", "mariadb", "redis", "rabbitmq")
SELECT_ENV = "CHATGATE_TEST_SERVERS"
DIR_PREFIX = "chatgate-test-"
MARKER_ENV = "CHATGATE_TEST_SERVER_DIR"  # set on every process we start; used to find strays
OWNER_FILE = "owner"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the real scripts, not the /usr/sbin `su` wrappers
INSTALL_HINT = (
    "install with: apt-get install -y --no-install-recommends "
    "postgresql mariadb-server redis-server rabbitmq-server (or run ./scripts/test as root)"
)
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class TestServerError(RuntimeError):
    """A server failed to start or a command against it failed; the message carries its log tail."""

    __test__ = False  # not a test class, despite the name


# --------------------------------------------------------------------------- helpers


def _selected() -> set[str]:
    raw = os.environ.get(SELECT_ENV)
    if raw is None:
        return set(ALL_SERVERS)
    return {part.strip().lower() for part in raw.split(",") if part.strip()}


def _unavailable(reason: str) -> NoReturn:
    """Skip locally; in CI (CI=true) a server that cannot run is an error."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} [CI=true: test servers are required]", pytrace=False)
    pytest.skip(reason)


def _which(cmd: str) -> str | None:
    return shutil.which(cmd, path=f"{os.environ.get('PATH', '')}{os.pathsep}{SYSTEM_PATH}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _proc_start_time(pid: int) -> str | None:
    """Start time of `pid` (clock ticks since boot), to tell a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces; it is enclosed in parentheses
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_tag() -> str:
    return f"{os.getpid()} {_proc_start_time(os.getpid())}"


def _owner_alive(tag: str) -> bool:
    try:
        pid_s, start = tag.split()
        return _proc_start_time(int(pid_s)) == start
    except ValueError:
        return False


def _kill_marked(dirs: Sequence[Path]) -> None:
    """SIGKILL every process started for one of `dirs`.

    A process is ours when its working directory is inside one of `dirs` (all servers run
    there; redis and postgres rewrite their command line and environment for `ps`), or its
    environment carries our marker, or its command line names one of the directories.
    """
    if not dirs:
        return
    prefixes = [str(d) for d in dirs]
    markers = [f"{MARKER_ENV}={d}".encode() for d in dirs]
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cwd = os.readlink(entry / "cwd").removesuffix(" (deleted)")
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        ours = (
            any(cwd == p or cwd.startswith(p + "/") for p in prefixes)
            or any(m in environ for m in markers)
            or any(p + "/" in cmdline for p in prefixes)
        )
        if ours:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


_reaped = False


def _reap_stale() -> None:
    """Kill servers (and remove directories) left behind by test sessions that died hard."""
    global _reaped
    if _reaped:
        return
    _reaped = True
    stale: list[Path] = []
    for d in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        if not d.is_dir():
            continue
        try:
            tag = (d / OWNER_FILE).read_text()
        except OSError:
            # created but never tagged: only stale if it is not brand new
            with contextlib.suppress(OSError):
                if time.time() - d.stat().st_mtime > 300:
                    stale.append(d)
            continue
        if not _owner_alive(tag):
            stale.append(d)
    _kill_marked(stale)
    for d in stale:
        shutil.rmtree(d, ignore_errors=True)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _wait_exit_noreap(pid: int, timeout: float) -> bool:
    """Wait for child `pid` to exit without reaping it (so its pid/pgid cannot be reused yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


# --------------------------------------------------------------------------- base class

_LIVE: list[_Server] = []


class _Server:
    kind: ClassVar[str]
    service_user: ClassVar[str]
    stop_signal: ClassVar[int] = signal.SIGTERM
    start_timeout: ClassVar[float] = 30.0

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.startup_seconds: float | None = None  # first start
        self.last_start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        pw = pwd.getpwnam(self.service_user)
        self._uid, self._gid = pw.pw_uid, pw.pw_gid
        self.dir = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{self.kind}-"))
        (self.dir / OWNER_FILE).write_text(_owner_tag())
        os.chown(self.dir, self._uid, self._gid)
        _LIVE.append(self)

    # -- to implement
    @classmethod
    def binaries(cls) -> dict[str, str | None]:
        """Label -> path (None when missing)."""
        raise NotImplementedError

    def _launch(self) -> None:
        raise NotImplementedError

    # -- process plumbing
    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.kind}.log"

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": SYSTEM_PATH,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.dir),
            MARKER_ENV: str(self.dir),
        }
        if extra:
            env.update(extra)
        return env

    def _popen(self, argv: Sequence[str], *, as_service_user: bool = True) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=self._env(self._extra_env()),
                start_new_session=True,
                user=self._uid if as_service_user else None,
                group=self._gid if as_service_user else None,
                extra_groups=[] if as_service_user else None,
            )

    def _run(
        self, argv: Sequence[str], *, as_service_user: bool = True, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                cwd=self.dir,
                env=self._env(self._extra_env()),
                timeout=timeout,
                user=self._uid if as_service_user else None,
                group=self._gid if as_service_user else None,
                extra_groups=[] if as_service_user else None,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TestServerError(self._failure(f"{argv[0]} timed out after {timeout}s")) from exc
        if check and result.returncode != 0:
            raise TestServerError(
                self._failure(
                    f"`{' '.join(argv)}` exited with {result.returncode}:\n{result.stdout}{result.stderr}"
                )
            )
        return result

    def _extra_env(self) -> dict[str, str]:
        return {}

    def _log_files(self) -> list[Path]:
        return [self.log_path]

    def _failure(self, what: str) -> str:
        head = f"{self.kind} test server (port {self.port}, dir {self.dir}): {what}"
        tails = [f"--- tail of {path} ---\n{_tail(path)}" for path in self._log_files() if path.exists()]
        return "\n".join([head, *tails])

    def _wait_until(self, check: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        limit = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = 0.05
        while True:
            self._check_alive(what)
            if check():
                return
            self._check_alive(what)
            if time.monotonic() >= deadline:
                raise TestServerError(self._failure(f"{what} not ready after {limit:.0f}s"))
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _check_alive(self, what: str) -> None:
        if self._proc is not None and (rc := self._proc.poll()) is not None:
            raise TestServerError(self._failure(f"server exited with code {rc} while waiting for {what}"))

    def _probe(self, argv: Sequence[str], timeout: float = 10) -> bool:
        try:
            result = self._run(argv, timeout=timeout, check=False)
        except TestServerError:
            return False
        return result.returncode == 0

    # -- lifecycle
    def start(self) -> None:
        """Start the server (no-op when running) and wait until it answers."""
        if self._closed:
            raise RuntimeError(f"{self.kind} test server is closed")
        if self._proc is not None and self._proc.poll() is None:
            return
        t0 = time.monotonic()
        try:
            self._launch()
        except BaseException:
            self.stop(timeout=5)
            raise
        took = time.monotonic() - t0
        self.last_start_seconds = took
        if self.startup_seconds is None:
            self.startup_seconds = took

    def stop(self, timeout: float = 30) -> None:
        """Stop the server cleanly (SIGKILL after `timeout`); data directory is kept."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            _wait_exit_noreap(proc.pid, timeout)
            # the leader is a zombie (or still alive) here, so its process group id is still ours
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port with the same data directory."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop everything started for this server and remove its directory."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
            self._close_extra()
        finally:
            _kill_marked([self.dir])
            shutil.rmtree(self.dir, ignore_errors=True)
            with contextlib.suppress(ValueError):
                _LIVE.remove(self)

    def _close_extra(self) -> None:
        pass


@atexit.register
def _close_all() -> None:
    for server in reversed(_LIVE.copy()):  # close() removes from _LIVE
        with contextlib.suppress(Exception):
            server.close()


# --------------------------------------------------------------------------- servers


class PostgresServer(_Server):
    kind = "postgres"
    service_user = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown
    user = "postgres"
    # Throwaway test data: durability off makes the suite much faster. The benchmarks set
    # this to True to measure with production settings.
    durable = False
    # Extra server settings ("name=value", each passed as `-c`): the benchmarks' what-ifs.
    settings: tuple[str, ...] = ()

    @classmethod
    def binaries(cls) -> dict[str, str | None]:
        return {
            name: str(PG_BIN / name) if (PG_BIN / name).exists() else None
            for name in ("initdb", "postgres", "pg_isready", "psql")
        }

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/postgres"

    def dsn(self, database: str = "postgres") -> str:
        """libpq/asyncpg DSN (no SQLAlchemy driver suffix)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def _launch(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-A",
                    "trust",
                    "-U",
                    self.user,
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    *([] if self.durable else ["--no-sync"]),
                    "--no-instructions",
                ],
                timeout=120,
            )
        self._proc = self._popen(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                f"unix_socket_directories={self.dir}",
                "-c",
                "max_connections=200",
                "-c",
                f"fsync={'on' if self.durable else 'off'}",
                "-c",
                f"synchronous_commit={'on' if self.durable else 'off'}",
                "-c",
                f"full_page_writes={'on' if self.durable else 'off'}",
                *(arg for setting in self.settings for arg in ("-c", setting)),
            ]
        )
        isready = [str(PG_BIN / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port), "-U", self.user]
        self._wait_until(lambda: self._probe(isready, timeout=5), "pg_isready")

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run(
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-c",
                sql,
            ]
        )
        return result.stdout

    def create_database(self, name: str) -> str:
        """Create an empty database `name` (dropping any old one) and return its SQLAlchemy URL."""
        if not _DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{name}"

    def drop_database(self, name: str) -> None:
        if not _DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class MariaDBServer(_Server):
    kind = "mariadb"
    service_user = "mysql"
    start_timeout = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.user = "chatgate"
        self.password = secrets.token_hex(12)

    @classmethod
    def binaries(cls) -> dict[str, str | None]:
        return {name: _which(name) for name in ("mariadbd", "mariadb-install-db", "mariadb-admin", "mariadb")}

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def socket_path(self) -> Path:
        return self.dir / "mysqld.sock"

    @property
    def admin_url(self) -> str:
        return f"mysql+asyncmy://{self.user}:{self.password}@{self.host}:{self.port}/mysql?charset=utf8mb4"

    def _log_files(self) -> list[Path]:
        return [self.log_path, self.dir / "mariadb.err"]

    def _bin(self, name: str) -> str:
        path = self.binaries()[name]
        assert path is not None
        return path

    def _launch(self) -> None:
        fresh = not (self.data_dir / "mysql").exists()
        if fresh:
            self._run(
                [
                    self._bin("mariadb-install-db"),
                    "--no-defaults",
                    f"--datadir={self.data_dir}",
                    "--user=mysql",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ],
                as_service_user=False,
                timeout=120,
            )
        self._proc = self._popen(
            [
                self._bin("mariadbd"),
                "--no-defaults",
                f"--datadir={self.data_dir}",
                "--user=mysql",
                f"--bind-address={self.host}",
                f"--port={self.port}",
                f"--socket={self.socket_path}",
                f"--pid-file={self.dir / 'mariadbd.pid'}",
                f"--log-error={self.dir / 'mariadb.err'}",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                "--max-connections=300",
                # throwaway data: durability off, much faster tests
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--innodb-buffer-pool-size=64M",
            ],
            as_service_user=False,  # mariadbd drops to --user=mysql itself
        )
        ping = [self._bin("mariadb-admin"), "--no-defaults", f"--socket={self.socket_path}", "-uroot", "ping"]
        self._wait_until(lambda: self._probe(ping, timeout=5), "mariadb-admin ping")
        if fresh:
            self.sql(
                f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}';"
                f" GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'127.0.0.1' WITH GRANT OPTION;"
            )

    def sql(self, sql: str) -> str:
        """Run SQL as root through the unix socket; returns tab-separated output."""
        result = self._run(
            [
                self._bin("mariadb"),
                "--no-defaults",
                f"--socket={self.socket_path}",
                "-uroot",
                "--batch",
                "--skip-column-names",
                "-e",
                sql,
            ],
            as_service_user=False,
        )
        return result.stdout

    def create_database(self, name: str) -> str:
        """Create an empty utf8mb4 database `name` (dropping any old one); return its SQLAlchemy URL."""
        if not _DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        self.sql(
            f"DROP DATABASE IF EXISTS `{name}`;"
            f" CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
        )
        return f"mysql+asyncmy://{self.user}:{self.password}@{self.host}:{self.port}/{name}?charset=utf8mb4"

    def drop_database(self, name: str) -> None:
        if not _DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        self.sql(f"DROP DATABASE IF EXISTS `{name}`;")


class RedisServer(_Server):
    kind = "redis"
    service_user = "redis"

    @classmethod
    def binaries(cls) -> dict[str, str | None]:
        return {name: _which(name) for name in ("redis-server", "redis-cli")}

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _launch(self) -> None:
        server = self.binaries()["redis-server"]
        assert server is not None
        self._proc = self._popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                "",  # stdout, i.e. our log file
            ]
        )
        self._wait_until(lambda: self.cli("ping", check=False, timeout=3).strip() == "PONG", "redis-cli ping")

    def cli(self, *args: str, check: bool = True, timeout: float = 10) -> str:
        """Run redis-cli against this server; returns its stdout."""
        cli = self.binaries()["redis-cli"]
        assert cli is not None
        try:
            result = self._run(
                [cli, "-h", self.host, "-p", str(self.port), *args], timeout=timeout, check=check
            )
        except TestServerError:
            if check:
                raise
            return ""
        return result.stdout

    def flushall(self) -> None:
        out = self.cli("flushall").strip()
        if out != "OK":
            raise RuntimeError(f"redis FLUSHALL answered {out!r}")


class RabbitMQServer(_Server):
    kind = "rabbitmq"
    service_user = "rabbitmq"
    start_timeout = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.dist_port = _free_port()
        self.epmd_port = _free_port()
        self.node = f"chatgate{self.port}@localhost"
        self._epmd: subprocess.Popen[bytes] | None = None
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            "loopback_users.guest = true\ndisk_free_limit.absolute = 10MB\n"
        )
        cookie = self.dir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        for path in (cookie, self.dir / "enabled_plugins", self.dir / "rabbitmq.conf"):
            os.chown(path, self._uid, self._gid)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    @classmethod
    def binaries(cls) -> dict[str, str | None]:
        found: dict[str, str | None] = {
            name: str(RABBIT_BIN / name) if (RABBIT_BIN / name).exists() else None
            for name in ("rabbitmq-server", "rabbitmqctl", "rabbitmq-diagnostics")
        }
        found["epmd"] = _which("epmd")
        return found

    def _extra_env(self) -> dict[str, str]:
        d = self.dir
        return {
            "ERL_EPMD_PORT": str(self.epmd_port),  # our own epmd: nothing shared with other nodes
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
        }

    def _log_files(self) -> list[Path]:
        return [self.log_path, *sorted((self.dir / "log").glob("*.log"))]

    def _bin(self, name: str) -> str:
        path = self.binaries()[name]
        assert path is not None
        return path

    def _amqp_answers(self) -> bool:
        """True when the AMQP listener answers the 0-9-1 header with a Connection.Start frame."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                head = s.recv(11)
        except OSError:
            return False
        # frame type 1 (method), channel 0, then class 10 (connection) method 10 (start)
        return len(head) >= 11 and head[0] == 1 and struct.unpack(">HH", head[7:11]) == (10, 10)

    def _launch(self) -> None:
        if self._epmd is None or self._epmd.poll() is not None:
            self._epmd = self._popen([self._bin("epmd"), "-port", str(self.epmd_port)])
        self._proc = self._popen([self._bin("rabbitmq-server")])
        self._wait_until(self._amqp_answers, "AMQP listener")
        ping = [self._bin("rabbitmq-diagnostics"), "-q", "-n", self.node, "ping"]
        self._wait_until(lambda: self._probe(ping, timeout=30), "rabbitmq-diagnostics ping")

    def ctl(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 60) -> str:
        """Run a RabbitMQ CLI tool (rabbitmqctl, rabbitmq-diagnostics) against this node."""
        return self._run([self._bin(tool), "-n", self.node, *args], timeout=timeout).stdout

    def _close_extra(self) -> None:
        epmd, self._epmd = self._epmd, None
        if epmd is not None:
            epmd.terminate()
            try:
                epmd.wait(5)
            except subprocess.TimeoutExpired:
                epmd.kill()
                epmd.wait()


# --------------------------------------------------------------------------- fixtures

S = TypeVar("S", bound=_Server)


def _provide(cls: type[S]) -> Iterator[S]:
    if cls.kind not in _selected():
        pytest.skip(f"{cls.kind} not in {SELECT_ENV}={os.environ.get(SELECT_ENV, '')!r}")
    missing = [name for name, path in cls.binaries().items() if path is None]
    if missing:
        _unavailable(f"{cls.kind} test server: missing {', '.join(missing)}; {INSTALL_HINT}")
    if os.geteuid() != 0:
        _unavailable(f"{cls.kind} test server needs root (it runs as user {cls.service_user!r})")
    try:
        pwd.getpwnam(cls.service_user)
    except KeyError:
        _unavailable(f"{cls.kind} test server: no system user {cls.service_user!r}; {INSTALL_HINT}")
    _reap_stale()
    error = ""
    for _attempt in range(3):
        server = cls()
        try:
            server.start()
        except TestServerError as exc:
            server.close()
            error = str(exc)
            if not any(s in error.lower() for s in ("address already in use", "eaddrinuse")):
                break
            continue  # lost a race for the "free" port with another process: new port, new dir
        except BaseException:
            server.close()
            raise
        _TIMINGS.append((cls.kind, server.startup_seconds))
        try:
            yield server
        finally:
            server.close()
        return
    _TIMINGS.append((cls.kind, None))
    pytest.fail(error, pytrace=False)


_TIMINGS: list[tuple[str, float | None]] = []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from _provide(PostgresServer)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    yield from _provide(MariaDBServer)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from _provide(RedisServer)


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[RabbitMQServer]:
    yield from _provide(RabbitMQServer)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TIMINGS:
        return
    shown = ", ".join(
        f"{kind} {secs:.1f}s" if secs is not None else f"{kind} failed" for kind, secs in _TIMINGS
    )
    terminalreporter.write_line(f"test servers started: {shown}")
