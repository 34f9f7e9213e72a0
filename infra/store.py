"""The event store: the one API the rest of carbonx uses to reach its logs.

A store holds named logs (``intake`` for commands, ``journal`` for results, more as the
product grows), each append-only, gap-free and hash-chained, plus tracking positions
written atomically with appends. The backend is chosen by URL:

* ``sqlite:///./data/carbonx.db`` (the default; nothing to install), ``sqlite:///:memory:``;
* ``postgresql://user:password@host:port/dbname`` (psycopg 3 with a connection pool).

Tables are created on first open.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from events import chain
from events.chain import GENESIS, ChainReport, unseal
from events.codec import Decoded, Pending, decode
from infra.chain_worker import check_range
from infra.chainscan import WORKER_PAGE, default_workers, merge, plan, verify_in_workers
from infra.checkpoint import Checkpointer
from infra.notify import DatagramBroadcast, Notifier, PostgresListener
from infra.recorders import (
    Appended,
    Claim,
    LogRecorder,
    PostgresLogRecorder,
    Row,
    SQLiteLogRecorder,
)
from infra.sqldb import PostgresDatabase, SqlDatabase, SQLiteDatabase
from infra.writegate import WriteGate

log = logging.getLogger("carbonx.store")

__all__ = [
    "DEFAULT_URL",
    "PROJECTIONS",
    "PROJECTIONS_CHANNEL",
    "Log",
    "Store",
    "StoreNotFound",
    "Tracking",
    "open_store",
]

DEFAULT_URL = "sqlite:///./data/carbonx.db"
#: intake: commands; journal: results; snapshots: engine state for fast restart.
LOG_NAMES = ("intake", "journal", "snapshots")
#: The wake-up topic of the read models' progress (a projector's commits): what
#: read-your-writes waits on. Logs' topics are their names.
PROJECTIONS = "projections"
#: The PostgreSQL channel a projector NOTIFYs in each commit.
PROJECTIONS_CHANNEL = "carbonx_projections"
#: Below this many entries a chain is walked in-process: starting workers costs more.
PARALLEL_FROM = 200_000


class Log:
    """One append-only, gap-free, hash-chained log."""

    def __init__(self, recorder: LogRecorder, notifier: Notifier) -> None:
        self._recorder = recorder
        self._notifier = notifier
        self.name = recorder.log_name

    def append(
        self,
        pending: Iterable[Pending],
        tracking: Tracking | None = None,
        follows: int | None = None,
        claims: Sequence[Claim] = (),
    ) -> Appended | None:
        """Append every entry of `pending`, and `tracking`, and `claims`, in ONE
        transaction.

        All or nothing: if `pending` raises while it is being consumed, or the tracking
        position does not move forward, or (with `follows`) the stored tracking position
        is not exactly `follows` (:class:`infra.recorders.TrackingConflict`), or one of
        the (scope, key) `claims` was claimed before or repeats
        (:class:`infra.recorders.Claimed`), nothing is written. Returns None when
        `pending` was empty.
        """
        appended = self._recorder.append(pending, tracking, follows, claims)
        if appended is not None:
            self._notifier.poke(self.name)
        return appended

    def read(self, after: int = 0, limit: int = 10_000, upto: int | None = None) -> list[Row]:
        """Stored entries after position `after` (up to `upto`), in order."""
        return self._recorder.read(after, limit, upto)

    def events(
        self, after: int = 0, upto: int | None = None, batch: int = 10_000
    ) -> Iterator[Decoded]:
        """Every entry after `after` (up to `upto`), decoded, in order."""
        for rows in self.pages(after, upto, batch):
            for row in rows:
                yield decode(row.body)

    def pages(
        self, after: int = 0, upto: int | None = None, batch: int = 10_000
    ) -> Iterator[list[Row]]:
        """The stored entries after `after` (up to `upto`), a page at a time."""
        while True:
            rows = self.read(after, batch, upto)
            if not rows:
                return
            yield rows
            after = rows[-1].position

    def head(self) -> tuple[int, str]:
        """(last position, its hash); (0, GENESIS) when empty."""
        return self._recorder.head()

    @property
    def position(self) -> int:
        """The last position (0 when empty)."""
        return self._recorder.last_position()

    def tracking(self, reader: str) -> int:
        """The position that `reader` recorded together with its appends to this log."""
        return self._recorder.tracking(reader)

    def record_tracking(self, reader: str, position: int) -> None:
        """Record that `reader` has dealt with this log up to `position` (monotonic).

        For readers whose output lives elsewhere (the Kafka relay): the library's
        upsert refuses to move a position backwards.
        """
        self._recorder.insert_tracking(Tracking(reader, position))

    def wait(self, position: int, timeout: float) -> bool:
        """Block until the log reaches `position` (True) or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        seen = self._notifier.count(self.name)
        while self.head()[0] < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            seen = self._notifier.wait(seen, remaining, self.name)
        return True

    def follow(
        self,
        after: int = 0,
        batch: int = 10_000,
        stop: threading.Event | None = None,
        idle: float = 1.0,
    ) -> Iterator[list[Row]]:
        """Pages of new entries as they are appended, forever (or until `stop` is set).

        Waits without spinning: a poke from an in-process writer or a NOTIFY from
        PostgreSQL wakes it at once; `idle` bounds the wait, for writers in other
        processes on SQLite. Ends when the store is closed.
        """
        while (stop is None or not stop.is_set()) and not self._notifier.closed:
            seen = self._notifier.count(self.name)
            rows = self.read(after, batch)
            if rows:
                after = rows[-1].position
                yield rows
                continue
            self._notifier.wait(seen, idle, self.name)

    def verify(
        self,
        batch: int = 50_000,
        progress: Any = None,
        workers: int | None = None,
        parallel_from: int = PARALLEL_FROM,
    ) -> ChainReport:
        """Walk the whole chain, up to the head at the start; the report names the first
        broken position if any.

        From `parallel_from` entries on, the chain is cut into ranges checked at once by
        `workers` processes (default: one per core; see :mod:`infra.chainscan`), with the
        same report as one walk. On PostgreSQL without the C link check
        (:data:`events.chain.ACCELERATED`), and for shorter logs, every link is first
        checked inside the database instead; only when that finds a break does a walk
        run, to name it exactly. (Measured on 1M entries, two cores: workers with the C
        check ~515-646k entries/s, the database's own sha256 ~470-490k, workers in
        Python ~450k.)
        """
        head = self.position
        workers = default_workers() if workers is None else workers
        job = self._recorder.chain_job()
        parallel = job is not None and workers > 1 and head >= max(parallel_from, 2)
        in_database = getattr(self._recorder, "first_broken_link", None)
        if in_database is not None and not (parallel and chain.ACCELERATED):
            count, broken = in_database(max(workers, 1), head)
            if broken is None:
                last = self._recorder.scan(head - 1, 1, head)
                if progress is not None:
                    progress(count)
                return ChainReport(True, count, head, unseal(last[0][1])[1] if last else GENESIS)
        if parallel:
            assert job is not None
            flags = ("-S",) if job["backend"] == "sqlite" else ()
            job["page"] = min(batch, WORKER_PAGE)
            return verify_in_workers(job, plan(head, workers), progress, flags)
        pages = self._scan(head, batch)
        return merge([(1, head)], [check_range(pages, 1, head, self._next, progress)])

    def _scan(self, upto: int, batch: int) -> Iterator[list[tuple[int, bytes]]]:
        after = 0
        while after < upto:
            rows = self._recorder.scan(after, batch, upto)
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def _next(self, after: int) -> tuple[int, bytes] | None:
        rows = self._recorder.scan(after, 1)
        return rows[0] if rows else None


class Store:
    """The named logs of one database, and the resources they share."""

    def __init__(
        self,
        url: str,
        recorders: dict[str, LogRecorder],
        notifier: Notifier,
        closers: list[Any],
        sql: SqlDatabase,
    ) -> None:
        self.url = url
        #: Plain SQL on the same database: read models, tokens, idempotency records.
        self.sql = sql
        self.backend = urlsplit(url).scheme.split("+")[0]
        self._notifier = notifier
        self._closers = closers
        self.logs = {name: Log(rec, notifier) for name, rec in recorders.items()}

    @property
    def intake(self) -> Log:
        return self.logs["intake"]

    @property
    def journal(self) -> Log:
        return self.logs["journal"]

    @property
    def snapshots(self) -> Log:
        return self.logs["snapshots"]

    def log(self, name: str) -> Log:
        return self.logs[name]

    def poke(self, topic: str | None = None) -> None:
        """Wake the waiters on `topic` (any change when None), in every process: for
        changes other than a log append (``PROJECTIONS``: the read models moved on)."""
        self._notifier.poke(topic)

    def generation(self, topic: str | None = None) -> int:
        """A counter that moves whenever `topic` (a log's name, or ``PROJECTIONS``;
        anything at all when None) may have changed."""
        return self._notifier.count(topic)

    def hint(self, topic: str) -> int | None:
        """The highest hint that came with `topic`'s wake-ups from other processes (on
        PostgreSQL, a NOTIFY's payload), or None: see :meth:`infra.notify.Notifier.hint`."""
        return self._notifier.hint(topic)

    def wait_for_change(self, seen: int, timeout: float, topic: str | None = None) -> int:
        """Wait until :meth:`generation` of `topic` moves past `seen` (or `timeout`);
        the new value."""
        return self._notifier.wait(seen, timeout, topic)

    def ping(self) -> bool:
        """True when the database answers (for /readyz)."""
        try:
            self.journal.head()
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._notifier.close()
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _int(query: dict[str, list[str]], key: str, default: int) -> int:
    values = query.get(key)
    return int(values[0]) if values else default


class StoreNotFound(FileNotFoundError):
    """No store at a SQLite path that was to be opened, not created."""


def open_store(
    url: str | None = None, log_names: Iterable[str] = LOG_NAMES, create: bool = True
) -> Store:
    """Open (creating tables on first use) the store at `url` (default: env, then SQLite).

    Without `create`, a SQLite file that does not exist is :class:`StoreNotFound`: an
    audit of a mistyped path must not make an empty store and report on it.
    (PostgreSQL refuses a database that does not exist by itself.)"""
    url = url or os.environ.get("CARBONX_DATABASE_URL") or DEFAULT_URL
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    query = parse_qs(parts.query)
    names = tuple(log_names)
    if scheme == "sqlite":
        return _open_sqlite(url, parts.path, query, names, create)
    if scheme in ("postgresql", "postgres"):
        return _open_postgres(url, parts, query, names)
    raise ValueError(
        f"unsupported database URL scheme {parts.scheme!r}: use sqlite:/// or postgresql://"
    )


def _open_sqlite(
    url: str, path: str, query: dict[str, list[str]], names: tuple[str, ...], create: bool
) -> Store:
    # sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:
    db_path = path[1:] if path.startswith("/") else path
    if not create and db_path not in ("", ":memory:") and not Path(db_path).is_file():
        raise StoreNotFound(f"no store at {db_path}")
    if db_path in ("", ":memory:"):
        db_name = f"file:carbonx-{id(query)}-{time.monotonic_ns()}?mode=memory&cache=shared"
    else:
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        db_name = db_path
    datastore = SQLiteDatastore(
        db_name,
        lock_timeout=_int(query, "lock_timeout", 30),
        pool_size=_int(query, "pool_size", 5),
        max_overflow=_int(query, "max_overflow", 10),
        originator_id_type="text",
    )
    recorders: dict[str, LogRecorder] = {}
    timeout = float(_int(query, "lock_timeout", 30))
    in_memory = db_name.startswith("file:")
    gate = WriteGate(None if in_memory else f"{db_name}.write-lock", timeout)
    # Two processes opening a fresh file at once would race in the library's table
    # creation (both insert its tracking-table migration marker): take turns.
    with _file_lock(None if db_name.startswith("file:") else f"{db_name}.schema-lock"):
        for name in names:
            recorder = SQLiteLogRecorder(
                datastore,
                log_name=name,
                events_table_name=f"{name}_events",
                gate=gate,
                autocheckpoint=in_memory,
            )
            recorder.create_table()
            recorders[name] = recorder
    sql = SQLiteDatabase(
        db_name, uri=in_memory, timeout=timeout, gate=gate, autocheckpoint=in_memory
    )
    notifier = Notifier(poll=0.02)
    closers: list[Any] = [datastore.close, sql.close, gate.close]
    if not in_memory:  # a file: its WAL is checkpointed off the writers' path
        closers.insert(0, Checkpointer(db_name, timeout=timeout).close)
    if not in_memory:  # a file other processes may open too
        try:
            closers.insert(0, DatagramBroadcast(db_name, notifier).close)
        except OSError:
            log.warning("no cross-process wake-ups for %s: polling instead", db_name)
    return Store(url, recorders, notifier, closers, sql)


def _conninfo(datastore: PostgresDatastore) -> dict[str, Any]:
    """Connection parameters of the datastore's pool, for connections of our own."""
    kwargs: Any = datastore.pool.kwargs
    return {k: kwargs[k] for k in ("dbname", "host", "port", "user", "password")}


@contextlib.contextmanager
def _file_lock(path: str | None) -> Iterator[None]:
    if path is None:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_postgres(
    url: str, parts: Any, query: dict[str, list[str]], names: tuple[str, ...]
) -> Store:
    dbname = unquote(parts.path.lstrip("/")) or "postgres"
    datastore = PostgresDatastore(
        dbname=dbname,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username or os.environ.get("PGUSER", "postgres")),
        password=unquote(parts.password or os.environ.get("PGPASSWORD", "")),
        pool_size=_int(query, "pool_size", 4),
        max_overflow=_int(query, "max_overflow", 8),
        connect_timeout=_int(query, "connect_timeout", 10),
        lock_timeout=_int(query, "lock_timeout", 30),
        originator_id_type="text",
    )
    recorders: dict[str, LogRecorder] = {}
    channels: dict[str, str] = {}
    # CREATE TABLE IF NOT EXISTS races when two processes start on a fresh database
    # (both see no table, one fails on the catalog's unique index): a session advisory
    # lock, held on a connection of its own, lets one create while the other waits.
    conninfo = _conninfo(datastore)
    with psycopg.connect(**conninfo, autocommit=True) as lock_conn:
        lock_conn.execute("SELECT pg_advisory_lock(hashtext('carbonx.schema'))")
        for name in names:
            recorder = PostgresLogRecorder(
                datastore, log_name=name, events_table_name=f"{name}_events"
            )
            recorder.create_table()
            recorders[name] = recorder
            channels[recorder.channel_name] = name
    channels[PROJECTIONS_CHANNEL] = PROJECTIONS
    notifier = Notifier(poll=1.0)
    listener = PostgresListener(conninfo, channels, notifier)
    sql = PostgresDatabase(conninfo, max_size=_int(query, "sql_pool_size", 8))
    return Store(url, recorders, notifier, [listener.close, datastore.close, sql.close], sql)
