"""Log recorders: the `eventsourcing` library's process recorders, taught to write a
gap-free, hash-chained log in large batches.

Why subclasses and not the library's own ``insert_events``:

* Positions must be gap-free and known before an entry is hashed (the canonical bytes
  contain the position). The library draws PostgreSQL notification ids from a sequence,
  which leaves gaps when a transaction rolls back. Here the writer takes the library's
  own table lock, reads the head (last position and hash), and assigns positions itself;
  SQLite's rowid is used the same way.
* Throughput comes from batching: on PostgreSQL the batch goes in with binary ``COPY``
  into the very same table (same columns, same indexes) instead of ``unnest`` of a
  composite array, several times faster.

Everything else is the library's: the table and index definitions, the single-row
tracking table and its monotonic upsert (which refuses to move a tracking position
backwards: that is what makes a replayed batch fail instead of being applied twice),
the datastores and their connection pools. A stored row is
``(originator_id=log name, originator_version=position, topic=event type,
state=sealed payload, notification_id=position)``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteProcessRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from events.chain import GENESIS, link, seal, unseal
from events.codec import Pending

__all__ = [
    "Appended",
    "LogRecorder",
    "PostgresLogRecorder",
    "Row",
    "SQLiteLogRecorder",
    "TrackingConflict",
]


class Row(NamedTuple):
    """One stored log entry as it comes out of the table."""

    position: int
    type_name: str
    payload: bytes  # canonical body with its hash sealed in (events.chain)

    @property
    def body(self) -> bytes:
        return unseal(self.payload)[0]

    @property
    def hash(self) -> str:
        return unseal(self.payload)[1]


@dataclass(frozen=True, slots=True)
class Appended:
    """What one atomic append wrote: positions first..last, and the new head hash."""

    first: int
    last: int
    head_hash: str

    @property
    def count(self) -> int:
        return self.last - self.first + 1


class TrackingConflict(IntegrityError):
    """The tracking position given with a batch is not ahead of the stored one.

    This is the exactly-once guard: a batch computed from input that was already
    consumed is refused whole, so nothing is applied twice.
    """


class LogRecorder(Protocol):
    """The role every backend plays for one log table."""

    log_name: str

    def create_table(self) -> None: ...

    def append(self, pending: Iterable[Pending], tracking: Tracking | None) -> Appended | None:
        """Write all of `pending` (and `tracking`) in one transaction, or nothing."""

    def read(self, after: int, limit: int, upto: int | None = None) -> list[Row]:
        """Entries with after < position (<= upto), in order, at most `limit`."""

    def head(self) -> tuple[int, str]:
        """(last position, its hash), or (0, GENESIS) for an empty log."""

    def tracking(self, reader: str) -> int:
        """The tracking position recorded for `reader` (0 when none)."""


def _head_from(row: tuple[Any, ...] | None) -> tuple[int, str]:
    if row is None:
        return 0, GENESIS
    return int(row[0]), unseal(bytes(row[1]))[1]


def _chain_rows(
    log_name: str, pending: Iterable[Pending], position: int, digest: str
) -> tuple[list[tuple[str, int, str, bytes, int]], str]:
    rows = []
    for item in pending:
        position += 1
        body = item.body(position)
        digest = link(digest, body)
        rows.append((log_name, position, item.type_name, seal(body, digest), position))
    return rows, digest


class PostgresLogRecorder(PostgresProcessRecorder):
    """A PostgreSQL log table written with binary COPY under the library's table lock."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        log_name: str,
        events_table_name: str,
        tracking_table_name: str = "carbonx_tracking",
    ) -> None:
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
        )
        self.log_name = log_name
        table = SQL("{0}.{1}").format(Identifier(datastore.schema), Identifier(events_table_name))
        self._copy = SQL(
            "COPY {0} (originator_id, originator_version, topic, state, notification_id) "
            "FROM STDIN (FORMAT BINARY)"
        ).format(table)
        self._head = SQL(
            "SELECT notification_id, state FROM {0} ORDER BY notification_id DESC LIMIT 1"
        ).format(table)
        self._read = SQL(
            "SELECT notification_id, topic, state FROM {0} "
            "WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(table)
        self._types = ["text", "int8", "text", "bytea", "int8"]

    def append(self, pending: Iterable[Pending], tracking: Tracking | None) -> Appended | None:
        with self.datastore.transaction(commit=True) as curs:
            self._lock_table(curs)
            curs.execute(self._head, prepare=True)
            position, digest = _head_from(_as_tuple(curs.fetchone()))
            rows, head = _chain_rows(self.log_name, pending, position, digest)
            if rows:
                with curs.copy(self._copy) as copy:
                    copy.set_types(self._types)
                    for row in rows:
                        copy.write_row(row)
                self._notify_channel(curs)
            if tracking is not None:
                _insert_tracking_or_conflict(self, curs, tracking)
        if not rows:
            return None
        return Appended(position + 1, position + len(rows), head)

    def read(self, after: int, limit: int, upto: int | None = None) -> list[Row]:
        stop = upto if upto is not None else 2**63 - 1
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as c:
            c.execute(self._read, (after, stop, limit), prepare=True)
            return [Row(p, t, bytes(s)) for p, t, s in c.fetchall()]

    def head(self) -> tuple[int, str]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as c:
            c.execute(self._head, prepare=True)
            return _head_from(c.fetchone())

    def tracking(self, reader: str) -> int:
        return self.max_tracking_id(reader) or 0


def _as_tuple(row: Any) -> tuple[Any, ...] | None:
    if row is None:
        return None
    if isinstance(row, dict):
        return tuple(row.values())
    return tuple(row)


def _insert_tracking_or_conflict(recorder: Any, cursor: Any, tracking: Tracking) -> None:
    try:
        recorder._insert_tracking(cursor, tracking)
    except IntegrityError as error:
        raise TrackingConflict(
            f"tracking for {tracking.application_name!r} must move past the stored "
            f"position; got {tracking.notification_id}"
        ) from error


class SQLiteLogRecorder(SQLiteProcessRecorder):
    """An SQLite log table written with ``executemany`` inside ``BEGIN IMMEDIATE``.

    IMMEDIATE takes the database's write lock before the head is read, so two processes
    appending to one file cannot both read the same head and fork the chain.
    """

    def __init__(
        self, datastore: SQLiteDatastore, *, log_name: str, events_table_name: str
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.log_name = log_name
        self._insert = (
            f"INSERT INTO {events_table_name} "
            "(originator_id, originator_version, topic, state, rowid) VALUES (?,?,?,?,?)"
        )
        self._head = f"SELECT rowid, state FROM {events_table_name} ORDER BY rowid DESC LIMIT 1"
        self._read = (
            f"SELECT rowid, topic, state FROM {events_table_name} "
            "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        # The library's pool already serialises writers in this process; this lock
        # also covers the memory-mode pool, which shares one connection.
        self._write_lock = threading.Lock()

    def append(self, pending: Iterable[Pending], tracking: Tracking | None) -> Appended | None:
        with self._write_lock, self.datastore.get_connection(commit=True) as conn:
            raw = conn._sqlite_conn
            raw.execute("BEGIN IMMEDIATE")
            try:
                position, digest = _head_from(raw.execute(self._head).fetchone())
                rows, head = _chain_rows(self.log_name, pending, position, digest)
                raw.executemany(self._insert, rows)
                if tracking is not None:
                    cursor = SQLiteCursor(raw.cursor())
                    _insert_tracking_or_conflict(self, cursor, tracking)
            except BaseException:
                raw.rollback()
                raise
            raw.commit()
        if not rows:
            return None
        return Appended(position + 1, position + len(rows), head)

    def read(self, after: int, limit: int, upto: int | None = None) -> list[Row]:
        stop = upto if upto is not None else 2**63 - 1
        with self.datastore.get_connection(commit=False) as conn:
            cursor = conn._sqlite_conn.execute(self._read, (after, stop, limit))
            return [Row(p, t, s) for p, t, s in cursor.fetchall()]

    def head(self) -> tuple[int, str]:
        with self.datastore.get_connection(commit=False) as conn:
            return _head_from(conn._sqlite_conn.execute(self._head).fetchone())

    def tracking(self, reader: str) -> int:
        return self.max_tracking_id(reader) or 0
