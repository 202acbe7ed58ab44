"""Moving SQLite's WAL into the database file off the event loop's thread.

SQLite's automatic checkpoint runs inside whichever commit finds the WAL past 1,000 pages, and
on the inline engine (`sqlite_inline.py`) that commit runs on the event loop's thread: in the
end-to-end bench at 500 events/s, about three commits a second took 4-6 ms instead of well
under one, and the loop, every request and delivery with it, stopped for all of it.

So the server's connections and the ingest writer's turn it off (`wal_autocheckpoint=0`), and
the server checkpoints every half second, when the WAL has been written since, on a worker
thread with a connection of its own (`sqlite3` lets go of the GIL meanwhile). It holds the
process's write gate while it does (`Database.checkpoint_periodically`): with no commit
appended meanwhile, the checkpoint copies the whole WAL, and the next commit starts the WAL
over from its beginning. Without the gate, commits arriving all the time kept it from ever
catching up, and the WAL grew by megabytes a second. Writers wait for the gate as coroutines;
readers, requests and deliveries go on.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 0.5  # seconds; at the e2e bench's writes, about 1,000 WAL pages


class WalCheckpointer:
    """The checkpoints of one database file. `written` is cheap (one `stat`, for the loop);
    `checkpoint` blocks (for a worker thread, while the caller holds the write gate)."""

    def __init__(
        self, database_path: str, *, connect: Callable[[str], sqlite3.Connection] | None = None
    ) -> None:
        self.database_path = database_path
        self._connect = connect or checkpoint_connection
        self._connection: sqlite3.Connection | None = None
        self._seen: tuple[int, int] | None = None  # the WAL's (mtime, size) when last checkpointed
        self.checkpoints = 0  # checkpoints run so far (tests and benchmarks read it)

    def _wal_state(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.database_path + "-wal")
        except FileNotFoundError:
            return None  # no WAL yet (or any more: the last connection closed and removed it)
        # A write in the same clock tick as the last one before a checkpoint, to a WAL started
        # over at the same size, looks unwritten: its pages wait for the next write (durable
        # meanwhile, in the WAL).
        return stat.st_mtime_ns, stat.st_size

    def written(self) -> bool:
        """Whether the WAL was written since the last checkpoint."""
        state = self._wal_state()
        return state is not None and state != self._seen

    def checkpoint(self) -> tuple[int, int, int] | None:
        """One PASSIVE checkpoint: SQLite's (busy, WAL frames, frames checkpointed), or None
        when it failed (logged; the WAL only grows until the next one succeeds)."""
        self._seen = self._wal_state()
        try:
            if self._connection is None:
                self._connection = self._connect(self.database_path)
            busy, frames, copied = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("checkpointing the SQLite WAL failed: %s", exc)
            self._seen = None
            self.close()  # the next one starts from a new connection
            return None
        self.checkpoints += 1
        return int(busy), int(frames), int(copied)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def checkpoint_connection(path: str) -> sqlite3.Connection:
    # Used by one worker thread at a time (the write gate orders the calls), not always the same.
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


__all__ = ["CHECKPOINT_INTERVAL", "WalCheckpointer", "checkpoint_connection"]
