"""Wake-ups for readers waiting on a log, without busy polling.

A :class:`Notifier` is a generation counter under a condition variable: writers in this
process bump it after each commit; a :class:`PostgresListener` bumps it when PostgreSQL
delivers a NOTIFY from a writer in any process. Readers remember the generation they
saw before looking at the log and wait for it to change, so a commit between their read
and their wait is never missed.

SQLite has no NOTIFY: there a :class:`DatagramBroadcast` carries every poke to the other
processes using the same database file, as one-byte datagrams on Unix sockets found in
a directory named after the file. `poll` still bounds every wait, in case a wake-up is
lost (a datagram dropped, a process that cannot create its socket).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

__all__ = ["DatagramBroadcast", "Notifier", "PostgresListener", "sweep_stale"]


class Notifier:
    """A generation counter for any change, and one per topic (a log's name, or
    ``projections`` for the read models' progress).

    A reader waits on the topic it follows: the engine on ``intake``, a projector on
    ``journal``, the gateway's outcome watcher on ``projections``. Every commit of any
    log used to wake every reader, each of which then asked the database whether there
    was anything for it: under an HTTP load, two thirds of those reads found nothing.
    A poke without a topic ("something changed") moves every topic.
    """

    def __init__(self, poll: float) -> None:
        self.poll = poll
        self.generation = 0
        self._topics: dict[str, int] = {}
        #: The highest hint announced with each topic's wake-ups (see :meth:`hint`).
        self._hints: dict[str, int] = {}
        self._condition = threading.Condition()
        self._closed = False
        #: Called with the topic after every local poke: tells other processes (see
        #: DatagramBroadcast).
        self.broadcast: Callable[[str | None], None] | None = None

    def poke(self, topic: str | None = None) -> None:
        """Something changed here: wake this process's readers, and other processes'."""
        self.wake(topic)
        if self.broadcast is not None:
            self.broadcast(topic)

    def wake(self, topic: str | None = None, hint: int | None = None) -> None:
        """Wake this process's readers only (a change another process announced), with
        the `hint` it came with, if any."""
        with self._condition:
            if hint is not None and topic is not None and hint > self._hints.get(topic, -1):
                self._hints[topic] = hint
            self.generation += 1
            topics = self._topics
            if topic is None:
                for name in topics:
                    topics[name] += 1
            else:
                topics[topic] = topics.get(topic, 0) + 1
            self._condition.notify_all()

    def hint(self, topic: str) -> int | None:
        """The highest number announced with `topic`'s wake-ups (a NOTIFY's payload), or
        None if none came with one. What it means is the announcer's: for
        ``projections``, every command up to that intake position is in the read models."""
        return self._hints.get(topic)

    def count(self, topic: str | None = None) -> int:
        """The generation of `topic` (of any change when None), to hand to :meth:`wait`."""
        if topic is None:
            return self.generation
        with self._condition:
            return self._topics.setdefault(topic, 0)

    def wait(self, seen: int, timeout: float, topic: str | None = None) -> int:
        """Wait until the generation of `topic` moves past `seen` (or `timeout`, at most
        a poll period, ends); the generation then."""
        deadline = time.monotonic() + min(timeout, self.poll)
        with self._condition:
            while True:
                now = self.generation if topic is None else self._topics.setdefault(topic, 0)
                remaining = deadline - time.monotonic()
                if now != seen or self._closed or remaining <= 0:
                    return now
                self._condition.wait(remaining)

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
        self, conninfo: dict[str, Any], channels: Mapping[str, str], notifier: Notifier
    ) -> None:
        """`channels` maps each channel to LISTEN on to the topic its notices wake."""
        self._conninfo = conninfo
        self._channels = dict(channels)
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
                    self._notifier.wake()
                    topics = self._channels
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=0.2, stop_after=1):
                            self._notifier.wake(topics.get(notice.channel), _hint(notice.payload))
            except psycopg.Error:
                # The database went away: readers fall back to their poll period
                # until we are back.
                self._stop.wait(0.5)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _hint(payload: str) -> int | None:
    """A NOTIFY's payload as a hint: a whole number, or none."""
    return int(payload) if payload.isascii() and payload.isdigit() else None


_sockets = itertools.count()
#: Whether this process has swept the temp dir for stale sockets yet (once is enough).
_swept = False


def sweep_stale(temp: Path) -> int:
    """Remove the wake-up sockets of processes that no longer exist, in every database's
    directory under `temp`, and the directories left empty; how many sockets went.

    A process killed outright (SIGKILL, the OOM killer) never removes its socket. Its
    peers on the same database remove it when they next send, but a database that no
    one opens again (a test's, a benchmark's) would leave its directory behind for good.
    A socket is named after its process id; one whose process may still live (or
    belongs to another user) is left alone.
    """
    removed = 0
    for directory in temp.glob("carbonx-wake-*"):
        try:
            names = os.listdir(directory)
        except OSError:  # another user's, or just removed
            continue
        for name in names:
            pid = name.partition("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(directory / name)
                    removed += 1
        with contextlib.suppress(OSError):  # only when empty
            directory.rmdir()
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class DatagramBroadcast:
    """Wake-ups between the processes sharing one SQLite file.

    Each process binds a Unix datagram socket in a directory derived from the database
    path (in the temp dir: socket paths are limited to ~100 bytes) and, whenever it
    pokes its :class:`Notifier`, sends one byte to every other socket there. A receiver
    thread turns each datagram into a local wake-up. A socket whose process has gone is
    removed by the first sender that finds it dead. Everything here is best effort: if
    it fails, readers still see changes within their poll period.
    """

    #: How often the list of peer sockets is re-read from the directory (seconds).
    REFRESH = 0.5

    def __init__(self, database: str, notifier: Notifier) -> None:
        global _swept
        digest = hashlib.sha256(os.path.abspath(database).encode()).hexdigest()[:16]
        self.directory = Path(tempfile.gettempdir()) / f"carbonx-wake-{digest}"
        if not _swept:
            _swept = True
            sweep_stale(Path(tempfile.gettempdir()))
        self._notifier = notifier
        self._peers: list[str] = []
        self._peers_read = 0.0
        self._lock = threading.Lock()
        self.path = str(self.directory / f"{os.getpid()}-{next(_sockets)}")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._bind()
        except OSError:
            self._socket.close()
            raise
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._closed = False
        self._thread = threading.Thread(target=self._receive, name="carbonx-wake", daemon=True)
        self._thread.start()
        notifier.broadcast = self.send

    def _bind(self) -> None:
        for attempt in range(2):
            self.directory.mkdir(mode=0o700, exist_ok=True)
            try:
                self._socket.bind(self.path)
                return
            except FileNotFoundError:  # the last peer just removed the directory
                if attempt:
                    raise

    def send(self, topic: str | None = None) -> None:
        """Tell every other process on this database that something changed (in `topic`:
        the datagram carries its name; ``!`` is any change)."""
        message = b"!" if topic is None else topic.encode()
        now = time.monotonic()
        with self._lock:
            if now - self._peers_read > self.REFRESH:
                try:
                    names = os.listdir(self.directory)
                except OSError:
                    names = []
                self._peers = [
                    str(self.directory / n) for n in names if str(self.directory / n) != self.path
                ]
                self._peers_read = now
            peers = list(self._peers)
        for peer in peers:
            try:
                self._sender.sendto(message, peer)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):  # its process is gone
                    os.unlink(peer)
                with self._lock:
                    self._peers = [p for p in self._peers if p != peer]
            except OSError:  # its queue is full: it has wake-ups pending anyway
                pass

    def _receive(self) -> None:
        while not self._closed:
            try:
                message = self._socket.recv(64)
            except OSError:
                return
            if not message:  # our own close, or an empty poke: any change
                self._notifier.wake()
            else:
                self._notifier.wake(None if message == b"!" else message.decode(errors="replace"))

    def close(self) -> None:
        self._closed = True
        self._notifier.broadcast = None
        with contextlib.suppress(OSError):  # wakes the receiver, which sees it is closed
            self._sender.sendto(b"", self.path)
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):  # the last one out removes the directory
            self.directory.rmdir()
        self._socket.close()
        self._sender.close()
        self._thread.join(timeout=1)
