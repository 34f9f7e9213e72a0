"""WAL checkpoints of an SQLite store, off the writers' path.

In WAL mode SQLite copies the log back into the database file (a checkpoint, with the
fsync that makes it durable) whenever a commit leaves the WAL over 1,000 pages, and the
writer whose commit crossed the line pays for it. Under an HTTP load that was the
projector (2-3 ms of a 100-order step was its commit) and with it every request waiting
to read its own write. Here the store's writers switch automatic checkpoints off
(:data:`NO_AUTOCHECKPOINT`) and a :class:`Checkpointer` thread of the store runs
PASSIVE checkpoints every few hundred milliseconds instead: they never wait for a reader
or a writer, and the sqlite3 module releases the GIL while one runs.

Several processes on one file each run theirs; SQLite lets one checkpoint at a time
and the others skip that round. A process without a store (the sqlite3 shell) keeps
SQLite's automatic checkpoints, and the last connection to close a database checkpoints
it whole.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading

__all__ = ["NO_AUTOCHECKPOINT", "Checkpointer"]

log = logging.getLogger("carbonx.store")

#: What a store's writing connections run once: their commits no longer checkpoint.
NO_AUTOCHECKPOINT = "PRAGMA wal_autocheckpoint = 0"


class Checkpointer:
    """A daemon thread running ``PRAGMA wal_checkpoint(PASSIVE)`` on `database` every
    `interval` seconds, on a connection of its own."""

    def __init__(self, database: str, interval: float = 0.25, timeout: float = 30.0) -> None:
        self.database = database
        self.interval = interval
        self._timeout = timeout
        self._stop = threading.Event()
        self.checkpoints = 0
        self._thread = threading.Thread(target=self._run, name="carbonx-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        while not self._stop.wait(self.interval):
            try:
                if conn is None:
                    conn = sqlite3.connect(
                        self.database, timeout=self._timeout, check_same_thread=False
                    )
                    conn.execute(NO_AUTOCHECKPOINT)
                busy, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if not busy and frames > 0:
                    self.checkpoints += 1
            except sqlite3.Error:
                # The file went away or is locked beyond the timeout: try again next
                # round on a fresh connection; meanwhile the WAL only grows.
                log.exception("WAL checkpoint of %s failed", self.database)
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
                conn = None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
