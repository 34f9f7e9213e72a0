"""Writers of one SQLite file take turns at a lock that wakes the next one at once.

SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps
1, 2, 5, 10, 15, 20, 25 ... ms between attempts. Under `carbonx serve` the intake
writers of the HTTP workers, the engine's journal and the projector all write the one
file, so a request that meets a busy lock lost up to tens of milliseconds in those
sleeps after the lock was already free: measured, an intake append of a dozen orders
took 8.7 ms on average and 25 ms at p99, nearly all of it waiting.

:class:`WriteGate` is taken around every write transaction of carbonx (read models
and logs) before SQLite's own lock: a thread lock for this process's writers, then an
advisory ``flock`` on a file next to the database for the other processes', polled
every 50 µs doubling to 0.5 ms. SQLite's lock is then free whenever the gate is held,
and its busy handler is left for writers outside carbonx. The gate gives up with
SQLite's own error after the same timeout; a holder that dies releases it with its
file descriptors.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator

__all__ = ["WriteGate"]

#: Polling of a busy gate: first pause, longest pause (seconds).
_FIRST_PAUSE = 0.000_05
_LONGEST_PAUSE = 0.000_5


class WriteGate:
    """Mutual exclusion of write transactions on one SQLite file, across threads and
    processes (`path` is the lock file; None: threads of this process only, for an
    in-memory database no other process can open)."""

    def __init__(self, path: str | None, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._threads = threading.Lock()
        self._fd = None if path is None else os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the gate for the duration of the block."""
        deadline = time.monotonic() + self.timeout
        if not self._threads.acquire(timeout=self.timeout):
            raise sqlite3.OperationalError("database is locked (another writer of this process)")
        try:
            if self._fd is None:
                yield
                return
            self._lock_file(self._fd, deadline)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    @staticmethod
    def _lock_file(fd: int, deadline: float) -> None:
        pause = _FIRST_PAUSE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError(
                        "database is locked (another process writes)"
                    ) from None
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
