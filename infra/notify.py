"""Wake-ups for readers waiting on a log, without busy polling.

A :class:`Notifier` is a generation counter under a condition variable: writers in this
process bump it after each commit; a :class:`PostgresListener` bumps it when PostgreSQL
delivers a NOTIFY from a writer in any process. Readers remember the generation they
saw before looking at the log and wait for it to change, so a commit between their read
and their wait is never missed. `poll` bounds every wait, which covers writers in other
processes on SQLite (which has no NOTIFY).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

__all__ = ["Notifier", "PostgresListener"]


class Notifier:
    def __init__(self, poll: float) -> None:
        self.poll = poll
        self.generation = 0
        self._condition = threading.Condition()
        self._closed = False

    def poke(self) -> None:
        with self._condition:
            self.generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Wait until the generation moves past `seen` (or a poll period ends)."""
        with self._condition:
            if self.generation == seen and not self._closed:
                self._condition.wait(min(timeout, self.poll))
            return self.generation

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class PostgresListener:
    """LISTENs on the logs' channels on a connection of its own, in a daemon thread."""

    def __init__(
        self, conninfo: dict[str, Any], channels: Sequence[str], notifier: Notifier
    ) -> None:
        self._conninfo = conninfo
        self._channels = list(channels)
        self._notifier = notifier
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="carbonx-pg-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(**self._conninfo, autocommit=True) as conn:
                    for channel in self._channels:
                        conn.execute(SQL("LISTEN {0}").format(Identifier(channel)))
                    # Anything committed while we were (re)connecting: wake readers.
                    self._notifier.poke()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.2, stop_after=1):
                            self._notifier.poke()
            except psycopg.Error:
                # The database went away: readers fall back to their poll period
                # until we are back.
                self._stop.wait(0.5)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
