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

An append may also *claim* (scope, key) pairs, such as an enterprise's client order
ids: a table of their own, ``<log>_claims``, keyed by the pair, written in the append's
transaction. A pair claimed before fails the whole append (:class:`Claimed`), so a
key is taken once however many processes append at the same moment: the database's
unique key decides, where a look at a read model first would race.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteProcessRecorder
from psycopg.errors import DivisionByZero, UniqueViolation
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Identifier, Literal

from events.chain import GENESIS, seal_chain, unseal
from events.codec import Pending
from infra.checkpoint import NO_AUTOCHECKPOINT
from infra.sqldb import pair_arrays
from infra.writegate import WriteGate

__all__ = [
    "Appended",
    "Claim",
    "Claimed",
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


#: A (scope, key) pair an append takes for good, e.g. (enterprise id, client order id).
Claim = tuple[str, str]


class Claimed(IntegrityError):
    """Pairs an append claimed were claimed before (or twice in it): nothing was written."""

    def __init__(self, pairs: Sequence[Claim]) -> None:
        if not pairs:
            raise ValueError("Claimed needs the pairs that were taken")
        # As tuples whatever the driver's rows are, so that callers can compare them.
        self.pairs = sorted({(scope, key) for scope, key in pairs})
        scope, key = self.pairs[0]
        more = f" and {len(self.pairs) - 1} more" if len(self.pairs) > 1 else ""
        super().__init__(f"{key!r} was already claimed in {scope!r}{more}")


class LogRecorder(Protocol):
    """The role every backend plays for one log table."""

    log_name: str

    def create_table(self) -> None: ...

    def append(
        self,
        pending: Iterable[Pending],
        tracking: Tracking | None,
        follows: int | None = None,
        claims: Sequence[Claim] = (),
    ) -> Appended | None:
        """Write all of `pending` (and `tracking`, and `claims`) in one transaction, or
        nothing.

        With `follows`, the stored tracking position must equal it (compare-and-set).
        With `claims`, none of the pairs may have been claimed before, nor repeat
        (:class:`Claimed`).
        """

    def read(self, after: int, limit: int, upto: int | None = None) -> list[Row]:
        """Entries with after < position (<= upto), in order, at most `limit`."""

    def scan(self, after: int, limit: int, upto: int | None = None) -> list[tuple[int, bytes]]:
        """(position, stored payload) of the entries :meth:`read` would return: the
        chain verifier's read, without the topic and the row objects."""

    def chain_job(self) -> dict[str, Any] | None:
        """Where a worker process finds this log (see :mod:`infra.chain_worker`), or
        None when no other process can open it (an in-memory database)."""

    def head(self) -> tuple[int, str]:
        """(last position, its hash), or (0, GENESIS) for an empty log."""

    def last_position(self) -> int:
        """The last position (0 for an empty log), without reading its entry: the
        verifier needs it even when that entry's seal was destroyed."""

    def tracking(self, reader: str) -> int:
        """The tracking position recorded for `reader` (0 when none)."""

    def insert_tracking(self, tracking: Tracking) -> None:
        """Record a tracking position on its own (the library's monotonic upsert)."""


def _head_from(row: tuple[Any, ...] | None) -> tuple[int, str]:
    if row is None:
        return 0, GENESIS
    return int(row[0]), unseal(bytes(row[1]))[1]


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_I4 = struct.Struct(">i").pack
_I4_I8 = struct.Struct(">iq").pack
_topic_fields: dict[str, bytes] = {}


def _copy_chained(
    write: Callable[[bytes | bytearray], None],
    lead: bytes,
    pending: Iterable[Pending],
    position: int,
    digest: str,
    chunk: int = 65_536,
) -> tuple[int, str]:
    """Number, hash-chain and seal `pending` straight into binary COPY data.

    Sealed by :func:`events.chain.seal_chain` (C, without the GIL, where built), then
    framed: the database parses one chunk while Python frames the next. Rows are (log
    name, position, topic, payload, position). Returns (entries written, new head
    hash).
    """
    first = position
    items = pending if isinstance(pending, list) else list(pending)
    payloads, previous = seal_chain(items, position, digest.encode())
    buffer = bytearray(_COPY_HEADER)
    for (name, _, _), payload in zip(items, payloads, strict=True):
        position += 1
        topic = _topic_fields.get(name)
        if topic is None:
            encoded = name.encode()
            topic = _topic_fields[name] = _I4(len(encoded)) + encoded
        number = _I4_I8(8, position)
        buffer += lead
        buffer += number
        buffer += topic
        buffer += _I4(len(payload))
        buffer += payload
        buffer += number
        if len(buffer) >= chunk:
            write(buffer)
            buffer = bytearray()
    buffer += _COPY_TRAILER
    write(buffer)
    return position - first, previous.decode()


def _sql(template: str, *parts: Composable) -> bytes:
    """`template` with `parts` composed in, rendered to bytes once.

    Why: psycopg renders a composed query anew on every execute (~8% of the engine
    process's CPU under HTTP load), and caches its parsing only for plain bytes or str.
    """
    return SQL(template).format(*parts).as_bytes(None)


def _rendered(query: Any) -> Any:
    """A composed query as bytes (see :func:`_sql`); a plain one as it is."""
    return query.as_bytes(None) if isinstance(query, Composable) else query


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
        self._copy = _sql(
            "COPY {0} (originator_id, originator_version, topic, state, notification_id) "
            "FROM STDIN (FORMAT BINARY)",
            table,
        )
        self._head = _sql(
            "SELECT notification_id, state FROM {0} ORDER BY notification_id DESC LIMIT 1", table
        )
        # What an append reads under the table lock, in one statement: the head, and
        # the tracking position a compare-and-set append must follow.
        self._head_and_tracking = _sql(
            "SELECT h.notification_id, h.state, "
            "(SELECT max(notification_id) FROM {1} WHERE application_name = %s) "
            "FROM (SELECT 1) AS one LEFT JOIN LATERAL "
            "(SELECT notification_id, state FROM {0} ORDER BY notification_id DESC LIMIT 1) "
            "AS h ON true",
            table,
            Identifier(datastore.schema, tracking_table_name),
        )
        self._notify = _sql("NOTIFY {0}", Identifier(self.channel_name))
        claims = Identifier(datastore.schema, f"{log_name}_claims")
        self._create_claims = _sql(
            "CREATE TABLE IF NOT EXISTS {0} (scope text NOT NULL, key text NOT NULL, "
            "PRIMARY KEY (scope, key))",
            claims,
        )
        # A plain insert: a pair taken before fails it, and with it the append. Which
        # pairs were taken is looked up only then (~2.5 µs a pair cheaper than ON
        # CONFLICT DO NOTHING, whose speculative insertion every append would pay).
        self._claim = _sql(
            "INSERT INTO {0} (scope, key) SELECT * FROM unnest(%s::text[], %s::text[])", claims
        )
        self._claimed = _sql(
            "SELECT scope, key FROM {0} JOIN unnest(%s::text[], %s::text[]) AS w(scope, key) "
            "USING (scope, key)",
            claims,
        )
        self._last = _sql("SELECT max(notification_id) FROM {0}", table)
        self._read = _sql(
            "SELECT notification_id, topic, state FROM {0} "
            "WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s",
            table,
        )
        self._scan = _sql(
            "SELECT notification_id, state FROM {0} "
            "WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s",
            table,
        )
        self._table_name = ".".join(
            '"' + part.replace('"', '""') + '"' for part in (datastore.schema, events_table_name)
        )
        # Every link of the chain checked inside PostgreSQL: each entry's stored hash
        # must be sha256(previous entry's stored hash ‖ its canonical body), and the
        # positions must run 1, 2, 3 … without a gap. Links are independent given the
        # stored hashes, so this equals walking the chain, at the database's speed. One
        # comparison per entry covers seal, hash and closing brace (the 75-byte tail
        # sealing would have written), as events.chain.check_links does. Per row the
        # cost is PostgreSQL's own sha256 (~60%) and the window (~25%); measured
        # choices around them: the frame is one row (lag ignores the frame, but the
        # default RANGE frame makes the window look for each row's peers: ~15% of the
        # query's CPU), the hex digest turns into bytea with textsend (the same ASCII
        # bytes, without convert_to's encoding look-up), and the genesis hash is a
        # literal.
        #
        # Where the C link check is built (events/_speedups.c), Log.verify checks long
        # logs in chain workers instead, which costs less in total (~1.2 µs server and
        # ~1.5 µs client per row: ~515-646k entries/s on two cores); this query remains
        # the path without it, and for logs too short for workers. The measurements
        # below compare it with a pure-Python client.
        #
        # Where the ~4.1 µs of server CPU per entry goes (PostgreSQL 15 with OpenSSL
        # 3.0, 1M entries): index scan and window ~0.3 µs, sha256() ~2.0 µs (mostly
        # OpenSSL 3.0's per-call context set-up and algorithm fetch, not hashing), lag
        # of the previous row's stored hash ~0.9 µs, building the input and comparing
        # the hex ~0.9 µs. Two connections keep two cores ~98% busy, so the rate is two
        # cores over 4.1 µs. Measured and rejected: hashing in the client costs more
        # in total (server-side cursor 1.2 µs server + 0.8 µs client per row, then
        # check_links 2.6 µs; binary COPY 0.75 µs server but 1.9 µs client just to
        # iterate; rows aggregated into arrays 2.4 µs server), so a client worker on
        # one core beside one backend loses; JIT, shared_buffers larger than the
        # table, more and shrinking chunks per connection, and other spellings of the
        # seal check changed nothing measurable; a TID-range scan in physical order
        # saved ~3%, but an engine-built table is not stored in position order.
        self._verify = _sql(
            "SELECT count(*), count(*) FILTER (WHERE pos >= %(first)s),"
            "       min(pos) FILTER (WHERE pos >= %(first)s AND NOT whole)"
            " FROM (SELECT notification_id AS pos,"
            "         length(state) > 75 AND substring(state FROM length(state) - 74) ="
            "           '\\x2c2268617368223a22'::bytea || textsend(encode(sha256("
            "             lag(substring(state FROM length(state) - 65 FOR 64), 1, {1}) OVER w"
            "             || substring(state FROM 1 FOR greatest(length(state) - 75, 0))"
            "             || '\\x7d'::bytea), 'hex')) || '\\x227d'::bytea AS whole"
            "       FROM {0} WHERE notification_id >= %(start)s AND notification_id <= %(stop)s"
            "       WINDOW w AS (ORDER BY notification_id ROWS BETWEEN CURRENT ROW AND CURRENT ROW)"
            "      ) links",
            table,
            Literal(GENESIS.encode()),
        )
        # Positions are unique, so a full count means no gap (checked per row above, it
        # cost ~7% more); only when the count falls short is the first hole looked for.
        self._first_gap = _sql(
            "SELECT min(prev + 1) FILTER (WHERE pos <> prev + 1), max(pos)"
            " FROM (SELECT notification_id AS pos,"
            "         lag(notification_id, 1, %(start)s - 1)"
            "           OVER (ORDER BY notification_id) AS prev"
            "       FROM {0} WHERE notification_id >= %(start)s AND notification_id <= %(stop)s"
            "      ) holes",
            table,
        )
        # The library's own statements of an append, rendered once as well.
        self.lock_table_statements = [_rendered(s) for s in self.lock_table_statements]
        insert_tracking = _rendered(self.insert_tracking_statement)
        self.insert_tracking_statement = insert_tracking
        # The library's monotonic tracking upsert returns no row when the position would
        # not move forward; here that fails the statement instead (1 / 0 rows), so that
        # COMMIT can follow it in the same pipeline: after an error the rest of a
        # pipeline is skipped and nothing commits. One round trip fewer an append.
        self._track: bytes = (
            b"WITH moved AS (" + insert_tracking + b") SELECT 1 / count(*)::int FROM moved"
        )
        name = log_name.encode()
        # Binary COPY tuple lead: 5 fields, then originator_id (the log name).
        self._lead = b"\x00\x05" + _I4(len(name)) + name

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(self._create_claims)

    def append(
        self,
        pending: Iterable[Pending],
        tracking: Tracking | None,
        follows: int | None = None,
        claims: Sequence[Claim] = (),
    ) -> Appended | None:
        """One transaction in three round trips (plus the COPY's), where statement by
        statement took ten: BEGIN, the library's lock statements, the reads under the
        lock and the claims go as one pipeline; then the COPY; then NOTIFY, the
        tracking upsert and COMMIT as one pipeline, the upsert failing unless it moved
        the position. (An append of 100 entries with tracking on a loopback server took
        ~1.7 ms statement by statement and ~1.4 ms in four round trips; three were not
        timed on their own.)"""
        items = list(pending)
        reader = tracking.application_name if tracking is not None else ""
        with self.datastore.get_connection() as conn:
            read = conn.cursor(row_factory=tuple_row)
            pairs = pair_arrays(claims) if claims else None
            try:
                try:
                    with conn.pipeline():
                        conn.execute("BEGIN")
                        for statement in self.lock_table_statements:
                            conn.execute(statement, prepare=True)
                        read.execute(self._head_and_tracking, (reader,), prepare=True)
                        if claims:
                            conn.execute(self._claim, pairs, prepare=True)
                except UniqueViolation as error:  # only the claims are unique here
                    conn.execute("ROLLBACK")
                    read.execute(self._claimed, pairs)
                    raise _claimed(read.fetchall(), claims) from error
                row = read.fetchone()
                assert row is not None  # one row, whatever the tables hold
                position, digest = _head_from(row[:2] if row[0] is not None else None)
                if tracking is not None and follows is not None and (row[2] or 0) != follows:
                    raise _behind(reader, row[2] or 0, follows)
                count, head = 0, digest
                if items:
                    with read.copy(self._copy) as copy:
                        count, head = _copy_chained(copy.write, self._lead, items, position, digest)
                try:
                    with conn.pipeline():
                        if items:
                            conn.execute(self._notify)
                        if tracking is not None:
                            params = {
                                "application_name": reader,
                                "notification_id": tracking.notification_id,
                            }
                            conn.execute(self._track, params, prepare=True)
                        conn.execute("COMMIT")
                except DivisionByZero as error:  # only the tracking guard divides
                    assert tracking is not None
                    raise _not_forward(tracking) from error
            except BaseException:
                # Not after a refused claim, which rolled back already: a second
                # ROLLBACK would warn in the server's log, and make psycopg drop its
                # prepared statements once more.
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    with contextlib.suppress(Exception):
                        conn.execute("ROLLBACK")
                raise
        if not count:
            return None
        return Appended(position + 1, position + count, head)

    def read(self, after: int, limit: int, upto: int | None = None) -> list[Row]:
        stop = upto if upto is not None else 2**63 - 1
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as c:
            # Binary results: bytea arrives as bytes instead of hex text that the server
            # encodes and the client decodes (a page of 5,000 intake rows: 3.3 -> 1.8 µs
            # a row, journal rows 4.0 -> 2.1 µs, less server CPU besides).
            c.execute(self._read, (after, stop, limit), prepare=True, binary=True)
            return [Row(p, t, s) for p, t, s in c.fetchall()]

    def head(self) -> tuple[int, str]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as c:
            c.execute(self._head, prepare=True)
            return _head_from(c.fetchone())

    def last_position(self) -> int:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as c:
            c.execute(self._last, prepare=True)
            row = c.fetchone()
            return int(row[0]) if row is not None and row[0] is not None else 0

    def scan(self, after: int, limit: int, upto: int | None = None) -> list[tuple[int, bytes]]:
        stop = upto if upto is not None else 2**63 - 1
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as c:
            c.execute(self._scan, (after, stop, limit), prepare=True, binary=True)
            return c.fetchall()

    def chain_job(self) -> dict[str, Any] | None:
        kwargs: Any = self.datastore.pool.kwargs
        conninfo = {k: kwargs[k] for k in ("dbname", "host", "port", "user", "password")}
        return {"backend": "postgresql", "conninfo": conninfo, "table": self._table_name}

    def tracking(self, reader: str) -> int:
        return self.max_tracking_id(reader) or 0

    def first_broken_link(self, parts: int = 2, upto: int | None = None) -> tuple[int, int | None]:
        """(entries, first position whose link or position is wrong, or None), computed
        in the database. Links are independent given the stored hashes, so the log is
        split into `parts` ranges checked at once on their own connections (each range
        starts one entry early, for the hash its first link needs). The first position
        is the one a walk would name: a bad entry, or the first missing position, also
        at the end of a range or (the entry before it) at its start. Up to `upto`, by
        default the last position."""
        last = self.last_position() if upto is None else upto
        size = max(1, -(-last // parts))
        ranges = [(first, min(first + size - 1, last)) for first in range(1, last + 1, size)]

        def check(first: int, stop: int) -> tuple[int, int | None]:
            with (
                self.datastore.get_connection() as conn,
                conn.cursor(row_factory=tuple_row) as c,
            ):
                start = max(first - 1, 1)
                args = {"start": start, "stop": stop, "first": first}
                c.execute(self._verify, args)
                row = c.fetchone()
                assert row is not None
                total, count, bad = row
                gap = None
                if total != stop - start + 1:
                    c.execute(self._first_gap, args)
                    holes = c.fetchone()
                    assert holes is not None
                    gap, top = holes
                    end = top if top is not None else start - 1
                    if end < stop:  # entries missing at the end of the range
                        gap = end + 1 if gap is None else min(gap, end + 1)
            found = [p for p in (bad, gap) if p is not None]
            return int(count), (int(min(found)) if found else None)

        if not ranges:
            return 0, None
        with ThreadPoolExecutor(len(ranges)) as pool:
            results = list(pool.map(lambda r: check(*r), ranges))
        count = sum(n for n, _ in results)
        broken = [b for _, b in results if b is not None]
        return count, (min(broken) if broken else None)


def _insert_tracking_or_conflict(
    recorder: Any, cursor: Any, tracking: Tracking, follows: int | None
) -> None:
    """Record `tracking`; with `follows`, only if the stored position is exactly that.

    The library's upsert refuses a position that does not move forward. That alone
    would accept a stale writer whose batch ends beyond the stored position but starts
    before it (it re-covers commands someone else already journaled); `follows` makes
    the record a compare-and-set: the batch must start right where the last one ended.
    Writers of a log are serialised (table lock, or BEGIN IMMEDIATE), so the read
    below sees every committed batch.
    """
    if follows is not None:
        stored = recorder._max_tracking_id(tracking.application_name, cursor) or 0
        if stored != follows:
            raise _behind(tracking.application_name, stored, follows)
    try:
        recorder._insert_tracking(cursor, tracking)
    except IntegrityError as error:
        raise _not_forward(tracking) from error


def _behind(reader: str, stored: int, follows: int) -> TrackingConflict:
    return TrackingConflict(
        f"tracking for {reader!r} is at {stored}, but this batch follows {follows}"
    )


def _not_forward(tracking: Tracking) -> TrackingConflict:
    return TrackingConflict(
        f"tracking for {tracking.application_name!r} must move past the stored "
        f"position; got {tracking.notification_id}"
    )


def _claimed(taken: list[Any], claims: Sequence[Claim]) -> IntegrityError:
    """:class:`Claimed` with the pairs `taken` before and those repeated in `claims`."""
    repeated = [pair for pair, times in Counter(claims).items() if times > 1]
    if not taken and not repeated:  # the database refused, yet nothing is taken
        return IntegrityError("the claims were refused, but none is taken")
    return Claimed(taken + repeated)


_ROWS_PER_INSERT = 50
#: Pairs looked up per statement once a claim was refused (two variables each).
_CLAIMS_PER_SELECT = 400


def _values(rows: int) -> str:
    return ",".join(
        f"(?1,?{3 * i + 2},?{3 * i + 3},?{3 * i + 4},?{3 * i + 2})" for i in range(rows)
    )


def _chain_flat(pending: Iterable[Pending], position: int, digest: str) -> tuple[list[Any], str]:
    """Number, chain and seal `pending` as flat (position, topic, payload) triples."""
    items = pending if isinstance(pending, list) else list(pending)
    payloads, previous = seal_chain(items, position, digest.encode())
    flat: list[Any] = [None] * (3 * len(items))
    flat[0::3] = range(position + 1, position + 1 + len(items))
    flat[1::3] = [name for name, _, _ in items]
    flat[2::3] = payloads
    return flat, previous.decode()


class SQLiteLogRecorder(SQLiteProcessRecorder):
    """An SQLite log table written with ``executemany`` inside ``BEGIN IMMEDIATE``.

    IMMEDIATE takes the database's write lock before the head is read, so two processes
    appending to one file cannot both read the same head and fork the chain. With a
    `gate`, appends take turns at it first (see :mod:`infra.writegate`).
    """

    def __init__(
        self,
        datastore: SQLiteDatastore,
        *,
        log_name: str,
        events_table_name: str,
        gate: WriteGate | None = None,
        autocheckpoint: bool = True,
    ) -> None:
        """Without `autocheckpoint`, appends leave WAL checkpoints to the store's
        :class:`infra.checkpoint.Checkpointer`."""
        super().__init__(datastore, events_table_name=events_table_name)
        self.log_name = log_name
        self._autocheckpoint = autocheckpoint
        self._gate = gate if gate is not None else WriteGate(None, datastore.pool.lock_timeout or 5)
        insert = (
            f"INSERT INTO {events_table_name} "
            "(originator_id, originator_version, topic, state, rowid) VALUES "
        )
        # Multi-row VALUES: ?1 is the log name, then (position, topic, payload) per row,
        # the position bound twice (version and rowid). ~1.5x executemany of single rows.
        self._insert_many = insert + _values(_ROWS_PER_INSERT)
        self._insert_one = insert + _values(1)
        self._head = f"SELECT rowid, state FROM {events_table_name} ORDER BY rowid DESC LIMIT 1"
        self._last = f"SELECT max(rowid) FROM {events_table_name}"
        self._read = (
            f"SELECT rowid, topic, state FROM {events_table_name} "
            "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        self._scan = (
            f"SELECT rowid, state FROM {events_table_name} "
            "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        # For worker processes (chain_job): absolute as of opening, so that they find
        # the file whatever directory this process has moved to since.
        self._database = os.path.abspath(datastore.pool.db_name)
        self._claims = f"{log_name}_claims"
        self._insert_claim = f"INSERT INTO {self._claims} (scope, key) VALUES (?, ?)"

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self._claims} (scope TEXT NOT NULL, "
                "key TEXT NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID"
            )

    def append(
        self,
        pending: Iterable[Pending],
        tracking: Tracking | None,
        follows: int | None = None,
        claims: Sequence[Claim] = (),
    ) -> Appended | None:
        # The gate also serialises this process's writers (the memory-mode pool shares
        # one connection between them).
        with self._gate.held(), self.datastore.get_connection(commit=True) as conn:
            raw = conn._sqlite_conn
            if not self._autocheckpoint:  # pooled connections: cheaper to repeat than track
                raw.execute(NO_AUTOCHECKPOINT)
            raw.execute("BEGIN IMMEDIATE")
            try:
                if claims:
                    self._claim(raw, claims)
                position, digest = _head_from(raw.execute(self._head).fetchone())
                flat, head = _chain_flat(pending, position, digest)
                count = len(flat) // 3
                if count:
                    self._insert_flat(raw, flat)
                if tracking is not None:
                    cursor = SQLiteCursor(raw.cursor())
                    _insert_tracking_or_conflict(self, cursor, tracking, follows)
                raw.commit()
            except BaseException:
                raw.rollback()
                raise
        if not count:
            return None
        return Appended(position + 1, position + count, head)

    def _claim(self, raw: sqlite3.Connection, claims: Sequence[Claim]) -> None:
        """Take `claims` under the write lock (BEGIN IMMEDIATE), or raise :class:`Claimed`
        with those taken before or given twice."""
        try:
            raw.executemany(self._insert_claim, claims)
        except sqlite3.IntegrityError as error:
            raw.rollback()  # the pairs inserted before the failing one are not taken
            taken: list[Any] = []
            for start in range(0, len(claims), _CLAIMS_PER_SELECT):
                chunk = claims[start : start + _CLAIMS_PER_SELECT]
                rows = raw.execute(
                    f"SELECT scope, key FROM {self._claims} WHERE (scope, key) IN "
                    f"(VALUES {','.join(['(?, ?)'] * len(chunk))})",
                    [value for pair in chunk for value in pair],
                )
                taken += rows.fetchall()
            raise _claimed(taken, claims) from error

    def _insert_flat(self, raw: sqlite3.Connection, flat: list[Any]) -> None:
        """Insert (position, topic, payload) triples, `_ROWS_PER_INSERT` rows a statement."""
        log = (self.log_name,)
        step = 3 * _ROWS_PER_INSERT
        full = len(flat) // step * step
        if full:
            raw.executemany(
                self._insert_many, [log + tuple(flat[i : i + step]) for i in range(0, full, step)]
            )
        for i in range(full, len(flat), 3):
            raw.execute(self._insert_one, log + tuple(flat[i : i + 3]))

    def read(self, after: int, limit: int, upto: int | None = None) -> list[Row]:
        stop = upto if upto is not None else 2**63 - 1
        with self.datastore.get_connection(commit=False) as conn:
            cursor = conn._sqlite_conn.cursor()
            # Plain tuples, not the library's sqlite3.Row: a page of 5,000 intake rows
            # was read at ~3.4 µs a row through sqlite3.Row, ~1.7 µs without it.
            cursor.row_factory = None
            rows = cursor.execute(self._read, (after, stop, limit)).fetchall()
            return list(map(Row._make, rows))

    def head(self) -> tuple[int, str]:
        with self.datastore.get_connection(commit=False) as conn:
            return _head_from(conn._sqlite_conn.execute(self._head).fetchone())

    def last_position(self) -> int:
        with self.datastore.get_connection(commit=False) as conn:
            row = conn._sqlite_conn.execute(self._last).fetchone()
            return int(row[0]) if row is not None and row[0] is not None else 0

    def scan(self, after: int, limit: int, upto: int | None = None) -> list[tuple[int, bytes]]:
        stop = upto if upto is not None else 2**63 - 1
        with self.datastore.get_connection(commit=False) as conn:
            cursor = conn._sqlite_conn.cursor()
            cursor.row_factory = None  # plain tuples, not the library's sqlite3.Row
            return cursor.execute(self._scan, (after, stop, limit)).fetchall()

    def chain_job(self) -> dict[str, Any] | None:
        pool = self.datastore.pool
        if pool.is_sqlite_memory_mode:
            return None
        return {
            "backend": "sqlite",
            "database": self._database,
            "uri": True,  # as the library opens it
            "timeout": pool.lock_timeout or 5,
            "table": self.events_table_name,
        }

    def tracking(self, reader: str) -> int:
        return self.max_tracking_id(reader) or 0
