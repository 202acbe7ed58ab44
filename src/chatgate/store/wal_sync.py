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
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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


class WalSyncer:
    """Groups sync requests: one fdatasync at a time on a dedicated thread; requests made while
    one runs share the next. `sync` returns once every commit made before the call is durable."""

    def __init__(self, database_path: str, *, sync_file: Callable[[str], None] = sync_wal) -> None:
        self.database_path = database_path
        self._sync_file = sync_file
        self._executor: ThreadPoolExecutor | None = None
        self._next: asyncio.Future[None] | None = None  # the callers waiting for the next round
        self._running = False
        self._directory_synced = False
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
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatgate-wal-sync")
        self._running = True
        done = asyncio.get_running_loop().run_in_executor(self._executor, self._sync_once)
        done.add_done_callback(lambda future: self._round_done(future, waiting))

    def _sync_once(self) -> None:
        self._sync_file(self.database_path)
        if not self._directory_synced:  # the WAL file's creation, once per process
            sync_directory(self.database_path)
            self._directory_synced = True

    def _round_done(self, future: asyncio.Future[None], waiting: asyncio.Future[None]) -> None:
        self._running = False
        self.rounds += 1
        error = None if future.cancelled() else future.exception()
        if not waiting.done():
            if future.cancelled() or error is not None:
                log.error("syncing the SQLite WAL failed: %r", error)
                waiting.set_exception(ServiceUnavailable("the database could not be synced to disk; retry"))
            else:
                waiting.set_result(None)
        if self._next is not None:
            self._start_round()

    def close(self) -> None:
        """Stop the thread after the round in flight (if any)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
