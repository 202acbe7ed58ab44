"""Durable SQLite commits without the event loop waiting for the disk.

With `synchronous=FULL`, SQLite fsyncs the WAL inside every COMMIT, and on the inline engine
(`sqlite_inline.py`) the event loop's thread sat in that fsync: 0.25 ms or more per commit here,
a few hundred times a second, while no request could be read and no other transaction could
start. Instead the connections commit with `synchronous=NORMAL` (the commit only writes the
WAL frames to the OS), and whoever needs the commit durable awaits `WalSyncer.sync()`: an
fdatasync of the WAL file on a thread of its own, shared by every commit made before it began.
This is what FULL does, moved off the loop and grouped: the WAL is appended in commit order, so
one sync makes every earlier commit durable (a checkpoint first syncs the WAL and then the
database file itself, in NORMAL as in FULL).

`Database.transaction()` and the ingest batch await it after their commit, before their caller
learns of the commit; so a provider's 200, an API's 201 or 202, a webhook delivery or a job
dispatched after a commit all follow the sync (the ingest batch dispatches its inbound jobs at
its commit: the worker's own later commit, synced before anything leaves the gateway, covers
it). Readers on other connections may see a commit
up to one sync (about 0.3 ms here) before it is on disk: only a power cut inside that window
could take back what they saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable

from chatgate.domain.errors import ServiceUnavailable

log = logging.getLogger(__name__)


def sync_wal(database_path: str) -> None:
    """fdatasync the database's WAL file (the file itself when there is no WAL yet)."""
    wal = database_path + "-wal"
    try:
        fd = os.open(wal, os.O_RDONLY)
    except FileNotFoundError:
        fd = os.open(database_path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def sync_directory(path: str) -> None:
    """fsync the directory holding `path`, so a newly created file's entry is durable too."""
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WalFileSync:
    """One durable point: fdatasync the WAL (every commit before it is then on disk), and the
    first time also the directory, so the WAL file's own creation is durable."""

    def __init__(self, database_path: str, sync_file: Callable[[str], None] = sync_wal) -> None:
        self.database_path = database_path
        self._sync_file = sync_file
        self._directory_synced = False

    def __call__(self) -> None:
        self._sync_file(self.database_path)
        if not self._directory_synced:
            sync_directory(self.database_path)
            self._directory_synced = True


class WalSyncer:
    """Groups sync requests: one fdatasync at a time on a dedicated thread; requests made while
    one runs share the next. `sync` returns once every commit made before the call is durable."""

    def __init__(self, database_path: str, *, sync_file: Callable[[str], None] = sync_wal) -> None:
        self.database_path = database_path
        self._sync_once = WalFileSync(database_path, sync_file)
        self._thread: threading.Thread | None = None
        # Rounds asked of the thread: the loop to answer on and the callers' future (None: stop).
        # A queue and `call_soon_threadsafe`, not `run_in_executor`: 24 µs of the loop's CPU per
        # round instead of 60, a few hundred rounds a second.
        self._requests: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None]
        self._requests = queue.SimpleQueue()
        self._next: asyncio.Future[None] | None = None  # the callers waiting for the next round
        self._running = False
        self.rounds = 0  # syncs made so far (tests and benchmarks read it)

    async def sync(self) -> None:
        """Wait until every commit made before this call is on disk; ServiceUnavailable if the
        disk refused (the commit happened, but its durability is unknown: the caller retries)."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        waiting = self._next
        if not self._running:
            self._start_round()
        # Shielded: one caller giving up must not cancel the round the others wait for.
        await asyncio.shield(waiting)

    def _start_round(self) -> None:
        waiting, self._next = self._next, None
        if waiting is None:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="chatgate-wal-sync", daemon=True)
            self._thread.start()
        self._running = True
        self._requests.put((asyncio.get_running_loop(), waiting))

    def _serve(self) -> None:
        """The sync thread: one round per request, its outcome handed back to the loop."""
        while (request := self._requests.get()) is not None:
            loop, waiting = request
            error: BaseException | None = None
            try:
                self._sync_once()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting callers (503)
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(self._round_done, error, waiting)

    def _round_done(self, error: BaseException | None, waiting: asyncio.Future[None]) -> None:
        self._running = False
        self.rounds += 1
        if not waiting.done():
            if error is not None:
                log.error("syncing the SQLite WAL failed: %r", error)
                waiting.set_exception(ServiceUnavailable("the database could not be synced to disk; retry"))
            else:
                waiting.set_result(None)
        if self._next is not None:
            self._start_round()

    def close(self) -> None:
        """Stop the thread after the round in flight (if any)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._requests.put(None)
            thread.join()
