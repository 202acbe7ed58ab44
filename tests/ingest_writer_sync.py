"""The ingest writer process with a WAL sync a test controls, through files in a directory.

The test side (`WriterSync`) holds, releases or fails the writer's next syncs and counts them;
the writer side runs as `python tests/ingest_writer_sync.py DATABASE_FILE CONTROL_DIR`, the
command `SqliteIngestStore` is given instead of the real writer's.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from chatgate.services.ingest_sqlite_writer import ignore_stop_signals, serve
from chatgate.store.wal_sync import sync_wal


class ControlledSync:
    """The writer's sync_file: records each call, waits while `hold` exists, fails while `fail`
    exists (with its text as the reason), else syncs for real."""

    def __init__(self, control: Path) -> None:
        self.control = control

    def __call__(self, path: str) -> None:
        with (self.control / "calls").open("a") as calls:
            calls.write("sync\n")
        deadline = time.monotonic() + 10
        while (self.control / "hold").exists():
            if time.monotonic() > deadline:
                raise OSError("the test never released the sync")
            time.sleep(0.002)
        fail = self.control / "fail"
        if fail.exists():
            raise OSError(5, fail.read_text())
        sync_wal(path)


class WriterSync:
    """The test's side: what the writer started by `command` does at its syncs."""

    def __init__(self, control: Path) -> None:
        control.mkdir(parents=True, exist_ok=True)
        self.control = control

    def command(self, database: str) -> list[str]:
        return [sys.executable, __file__, database, str(self.control)]

    @property
    def calls(self) -> int:
        calls = self.control / "calls"
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    def hold(self) -> None:
        (self.control / "hold").touch()

    def release(self) -> None:
        (self.control / "hold").unlink(missing_ok=True)

    def fail(self, reason: str | None) -> None:
        if reason is None:
            (self.control / "fail").unlink(missing_ok=True)
        else:
            (self.control / "fail").write_text(reason)

    async def started(self, calls: int = 1) -> None:
        """Wait until the writer has begun its `calls`-th sync."""
        deadline = time.monotonic() + 10
        while self.calls < calls:
            assert time.monotonic() < deadline, "the writer never synced"
            await asyncio.sleep(0.005)


if __name__ == "__main__":
    database, control = sys.argv[1:]
    ignore_stop_signals()
    serve(database, sync_file=ControlledSync(Path(control)))
