"""Plain SQL access to the store's database, for read models and API state.

The logs go through the event-sourcing recorders; everything else that lives in the
same database (projection tables a BI tool can query, API tokens, idempotency records)
goes through a :class:`SqlDatabase`: one small interface with a SQLite and a PostgreSQL
implementation, so that callers write one SQL text (``%s`` placeholders, portable
``INSERT … ON CONFLICT``) and never branch on the backend.

Why not the recorders' own connections: read models are written in transactions of
their own (rows plus the projection's tracking position, atomically) and read by many
HTTP threads at once; a dedicated pool keeps them off the engine's write path.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from psycopg import pq
from psycopg_pool import ConnectionPool

from infra.checkpoint import NO_AUTOCHECKPOINT
from infra.writegate import WriteGate

__all__ = [
    "Cursor",
    "PostgresDatabase",
    "Reader",
    "SQLiteDatabase",
    "SqlDatabase",
    "WritePlan",
    "array_literal",
    "pair_arrays",
]

#: Values bound per multi-row statement on SQLite (well under its variable limit).
_SQLITE_VALUES = 800
#: From this many rows on, PostgreSQL upserts and deletes go through a COPY'd scratch table.
_PG_STAGE_FROM = 64
#: A PostgreSQL write plan whose largest call has at most this many rows is replayed as
#: few statements over arrays (see :meth:`_PostgresCursor.write_all`); bigger ones (a
#: rebuild's batches) COPY, which costs the server less per row.
_PG_COMBINE_UPTO = 10_000


def _on_conflict(columns: Sequence[str], key: Sequence[str]) -> str:
    """`` ON CONFLICT (key) DO …`` for an upsert of `columns` (built once per pair: a
    live projector upserts a dozen tables per small batch)."""
    pair = (tuple(columns), tuple(key))  # (tuple() of a tuple is that tuple, no copy)
    found = _conflicts.get(pair)
    if found is None:
        found = _conflicts[pair] = _conflict_clause(columns, key)
    return found


_conflicts: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}


def _conflict_clause(columns: Sequence[str], key: Sequence[str]) -> str:
    updates = ", ".join(f"{n} = excluded.{n}" for n in columns if n not in key)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    return f" ON CONFLICT ({', '.join(key)}) {action}"


class Cursor(Protocol):
    """What a transaction hands out: execute, executemany, bulk insert, fetch."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Append many rows at once (COPY on PostgreSQL)."""

    def upsert_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Insert many rows, updating those whose `key` is already there; of two rows with
        one key, the later wins (as with one upsert statement per row)."""

    def delete_rows(self, table: str, key: Sequence[str], keys: Sequence[Sequence[Any]]) -> None:
        """Delete the rows with these `key` values (absent ones are no error)."""

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...


class Reader(Protocol):
    """What a read-only snapshot transaction hands out (:meth:`SqlDatabase.snapshot`)."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement, as of the transaction's snapshot."""


class WritePlan(Cursor, Protocol):
    """A cursor that only writes, and only later: what is asked of it is prepared now
    (statements and parameters built) and run by :meth:`replay` inside a transaction.

    Why: a projector's batch builds its rows in Python, and on SQLite every writer (the
    engine's journal, the other rebuild workers) waits while a transaction is open.
    Building outside and replaying inside keeps the write lock for the database's own
    work only.
    """

    def replay(self, cursor: Cursor) -> None:
        """Run everything recorded, in order, on `cursor` (a transaction's)."""

    def pipelinable(self) -> bool:
        """Whether :meth:`replay` may run in a :meth:`SqlDatabase.pipelined` block
        (PostgreSQL: not when a call has rows enough to go by COPY)."""


class SqlDatabase(Protocol):
    dialect: str

    def plan(self) -> WritePlan:
        """An empty :class:`WritePlan` for this database."""

    def fast_drop(self) -> contextlib.AbstractContextManager[None]:
        """Around dropping read-model tables (in this thread): do not zero their pages."""

    def transaction(self) -> contextlib.AbstractContextManager[Cursor]:
        """A write transaction: committed when the block ends, rolled back on error."""

    def pipelined(self) -> contextlib.AbstractContextManager[Cursor]:
        """A write transaction whose statements are sent together and answered together
        (PostgreSQL: one round trip for the whole block). Write, never read: an error
        surfaces when the block ends, and nothing of the block is then committed."""

    def query(
        self, sql: str, params: Sequence[Any] = (), *, replan: bool = False
    ) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement.

        `replan`: PostgreSQL plans the statement for these parameters and the tables as
        they are now, every time, instead of reusing a plan it cached (a statement run
        often is prepared, and its generic plan is kept until the table's statistics
        change). For a statement whose best plan depends on the tables having grown: a
        plan cached while they were nearly empty may pick an index that fits only
        partly, and go on scanning ever more rows with it.
        """

    def queries(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        """Rows of several read-only statements, in order (PostgreSQL: one round trip)."""

    def snapshot(self) -> contextlib.AbstractContextManager[Reader]:
        """A read-only transaction: every query in the block sees the database as it was
        at the block's first read, whatever commits meanwhile (an export's rows and the
        tracking position they are stamped with must agree)."""

    def close(self) -> None: ...


# ---------------------------------------------------------------------------- SQLite


class _Statements(Protocol):
    """The part of a DB-API cursor that :class:`_SQLiteCursor` writes through."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...


class _SQLiteCursor:
    def __init__(self, cursor: _Statements) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql.replace("%s", "?"), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(sql.replace("%s", "?"), rows)

    def insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self._many_values(f"INSERT INTO {table} ({','.join(columns)}) VALUES ", "", columns, rows)

    def upsert_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        # SQLite applies a multi-row upsert row by row: a key repeated later updates.
        head = f"INSERT INTO {table} ({','.join(columns)}) VALUES "
        self._many_values(head, _on_conflict(columns, key), columns, rows)

    def delete_rows(self, table: str, key: Sequence[str], keys: Sequence[Sequence[Any]]) -> None:
        if keys:
            where = " AND ".join(f"{name} = ?" for name in key)
            self._cursor.executemany(f"DELETE FROM {table} WHERE {where}", keys)

    def _many_values(
        self, head: str, tail: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Many rows per statement: binding is what costs, and one multi-row VALUES
        statement per ~800 values inserts ~1.7x faster than one statement per row."""
        if not rows:
            return
        width = len(columns)
        per = max(1, _SQLITE_VALUES // width)
        one = "(" + ",".join("?" * width) + ")"
        full = len(rows) - len(rows) % per
        if full:
            sql = head + ",".join([one] * per) + tail
            chain = itertools.chain.from_iterable
            self._cursor.executemany(
                sql, [tuple(chain(rows[i : i + per])) for i in range(0, full, per)]
            )
        if full < len(rows):
            self._cursor.executemany(head + one + tail, rows[full:])

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._cursor.fetchall()
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._cursor.fetchone()
        return row


class _SQLiteReader:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql.replace("%s", "?"), tuple(params)).fetchall()


class _Recorded:
    """Stands in for a sqlite3 cursor: keeps each statement and its parameters."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, str, Any]] = []  # (many?, sql, params)

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> None:
        self.calls.append((False, sql, params))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> None:
        self.calls.append((True, sql, params if isinstance(params, list) else list(params)))

    def fetchall(self) -> list[Any]:
        raise TypeError("a write plan has nothing to fetch")

    def fetchone(self) -> Any:
        raise TypeError("a write plan has nothing to fetch")


class _SQLitePlan(_SQLiteCursor):
    """SQLite's :class:`WritePlan`: the very statements and parameter lists a cursor
    would run (multi-row VALUES flattened and all), so replaying is sqlite3 alone."""

    def __init__(self) -> None:
        self._recorded = _Recorded()
        super().__init__(self._recorded)

    def replay(self, cursor: Cursor) -> None:
        assert isinstance(cursor, _SQLiteCursor), cursor
        target = cursor._cursor
        for many, sql, params in self._recorded.calls:
            if many:
                target.executemany(sql, params)
            else:
                target.execute(sql, params)
        self._recorded.calls = []

    def pipelinable(self) -> bool:
        return True


class SQLiteDatabase:
    """One connection per thread to the store's SQLite file (WAL: readers never block
    the writer); writes take ``BEGIN IMMEDIATE`` so that two writers queue instead of
    failing half way."""

    dialect = "sqlite"

    def __init__(
        self,
        name: str,
        uri: bool,
        timeout: float,
        gate: WriteGate | None = None,
        autocheckpoint: bool = True,
    ) -> None:
        """Without `autocheckpoint`, commits leave WAL checkpoints to the store's
        :class:`infra.checkpoint.Checkpointer`."""
        self._autocheckpoint = autocheckpoint
        self._name = name
        self._uri = uri
        self._timeout = timeout
        self._gate = gate if gate is not None else WriteGate(None, timeout)
        self._local = threading.local()
        # Every connection opened, by the thread it belongs to, so that close() closes
        # them all and a thread's connection is closed once that thread has ended (the
        # HTTP gateway's worker threads come and go: each new one opens a connection).
        self._all: dict[threading.Thread, sqlite3.Connection] = {}
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._name,
                uri=self._uri,
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            if not self._uri:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                if not self._autocheckpoint:
                    conn.execute(NO_AUTOCHECKPOINT)
            self._local.conn = conn
            with self._lock:
                for thread, other in list(self._all.items()):
                    if not thread.is_alive():
                        del self._all[thread]
                        with contextlib.suppress(sqlite3.Error):
                            other.close()
                self._all[threading.current_thread()] = conn
        return conn

    def plan(self) -> WritePlan:
        return _SQLitePlan()

    @contextlib.contextmanager
    def fast_drop(self) -> Iterator[None]:
        """``secure_delete = FAST`` meanwhile (Debian's SQLite defaults to ON): a dropped
        table's pages are then freed, not each overwritten with zeros and written out.
        That write was most of a rebuild's drop (5.5 s of read models for 1M entries,
        0.3 s without). Zeroing them hid nothing: a read model is derived from the
        journal, which the same file keeps; FAST still clears what costs no extra I/O.
        """
        conn = self._connection()
        (before,) = conn.execute("PRAGMA secure_delete").fetchone()
        conn.execute("PRAGMA secure_delete = FAST")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA secure_delete = {int(before)}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Cursor]:
        conn = self._connection()
        with self._gate.held():
            cursor = conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteCursor(cursor)
            except BaseException:
                conn.rollback()
                raise
            else:
                conn.commit()

    def pipelined(self) -> contextlib.AbstractContextManager[Cursor]:
        """No round trips to save in process: a plain :meth:`transaction`."""
        return self.transaction()

    def query(
        self, sql: str, params: Sequence[Any] = (), *, replan: bool = False
    ) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql.replace("%s", "?"), tuple(params)).fetchall()

    def queries(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        return [self.query(sql, params) for sql, params in statements]

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Reader]:
        """A deferred ``BEGIN`` on this thread's connection: in WAL mode, a read
        transaction sees one snapshot from its first read to its end, while the writer
        goes on committing (it takes no lock a writer waits for, so no write gate).
        ``query_only`` makes it read-only, as on PostgreSQL: a write in it would take
        the write lock behind the gate's back."""
        conn = self._connection()
        conn.execute("PRAGMA query_only = ON")
        try:
            conn.execute("BEGIN")
            try:
                yield _SQLiteReader(conn)
            finally:
                conn.rollback()
        finally:
            conn.execute("PRAGMA query_only = OFF")

    def close(self) -> None:
        with self._lock:
            for conn in self._all.values():
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()


# ---------------------------------------------------------------------------- PostgreSQL


class _PostgresCursor:
    def __init__(self, cursor: Any, types: dict[str, dict[str, str]] | None = None) -> None:
        self._cursor = cursor
        #: table -> column -> SQL type, for the casts of :meth:`_unnest` (shared by the
        #: database's cursors: a table's types are looked up once; a rebuild recreates
        #: its tables with the same declared types).
        self._types: dict[str, dict[str, str]] = types if types is not None else {}

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql, tuple(params) if params else None)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(sql, list(rows))

    def write_all(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Run a write plan's calls as few statements as can be: consecutive row writes
        to different tables become one statement, each a data-modifying ``WITH`` part
        whose rows are passed as one array per column (``unnest``).

        Why: the server's cost per statement, not the rows, was most of a live batch
        (~15 small statements: 4 ms; the same as one statement: 1.2 ms). Parts of one
        statement do not see each other's changes, so a table that comes again (rows
        deleted, then inserted with the same key) starts a new statement.
        """
        self._learn_types(args[0] for method, args in calls if method in _BULK)
        parts: list[str] = []
        params: list[Any] = []
        tables: set[str] = set()

        def run() -> None:
            if len(parts) == 1:
                self._cursor.execute(parts[0], params)
            elif parts:
                named = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(parts))
                self._cursor.execute(f"WITH {named} SELECT 1", params)
            parts.clear()
            params.clear()
            tables.clear()

        for method, args in calls:
            if method not in _BULK:
                run()
                getattr(self, method)(*args)
                continue
            if not args[-1]:
                continue
            if args[0] in tables:
                run()
            tables.add(args[0])
            part, values = getattr(self, f"_{method}_arrays")(*args)
            parts.append(part)
            params.extend(values)
        run()

    def _learn_types(self, tables: Iterable[str]) -> None:
        """Look up (once per table) the column types that the arrays are cast to."""
        missing = sorted(set(tables) - self._types.keys())
        if not missing:
            return
        self._cursor.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE a.attrelid = ANY(%s::text[]::regclass[]) AND a.attnum > 0 "
            "AND NOT a.attisdropped",
            (missing,),
        )
        found: dict[str, dict[str, str]] = {}
        for table, column, kind in self._cursor.fetchall():
            found.setdefault(table, {})[column] = kind
        self._types.update(found)  # whole tables at once: other threads share the dict

    def _unnest(self, table: str, columns: Sequence[str]) -> str:
        """``unnest(%s::type[], …)``: a column of rows per parameter."""
        types = self._types[table]
        return f"unnest({', '.join(f'%s::{types[name]}[]' for name in columns)})"

    def _columns(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> list[str]:
        """Each column of `rows` as an array literal (psycopg's own array dumping was
        ~0.1 ms per array: most of a small batch's client time)."""
        types = self._types[table]
        return [
            array_literal(values, types[name] not in _UNQUOTED)
            for name, values in zip(columns, zip(*rows, strict=True), strict=True)
        ]

    def insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._copy(table, columns, rows)

    def _insert_rows_arrays(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> tuple[str, list[str]]:
        names = ",".join(columns)
        return f"INSERT INTO {table} ({names}) SELECT * FROM {self._unnest(table, columns)}", (
            self._columns(table, columns, rows)
        )

    def _upsert_rows_arrays(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> tuple[str, list[str]]:
        # One statement may touch a row once only: a repeated key keeps its last row.
        sql, values = self._insert_rows_arrays(table, columns, _last_per_key(columns, key, rows))
        return sql + _on_conflict(columns, key), values

    def _delete_rows_arrays(
        self, table: str, key: Sequence[str], keys: Sequence[Sequence[Any]]
    ) -> tuple[str, list[str]]:
        if len(key) == 1:
            # ``= ANY`` is answered from the key's index. As a join against the unnested
            # keys, the plan hashed them and scanned the whole table (the open sell
            # orders, the resting orders: every batch, ~0.2-1.4 ms at 1,000-1,500 rows
            # and growing with the book).
            (name,) = key
            sql = f"DELETE FROM {table} WHERE {name} = ANY(%s::{self._types[table][name]}[])"
            return sql, self._columns(table, key, keys)
        match = " AND ".join(f"t.{name} = s.{name}" for name in key)
        sql = (
            f"DELETE FROM {table} t USING {self._unnest(table, key)} AS s({','.join(key)}) "
            f"WHERE {match}"
        )
        return sql, self._columns(table, key, keys)

    def _copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        with self._cursor.copy(f"COPY {table} ({','.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def upsert_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        names = ",".join(columns)
        if len(rows) < _PG_STAGE_FROM:
            if rows:
                marks = ",".join(["%s"] * len(columns))
                sql = f"INSERT INTO {table} ({names}) VALUES ({marks}){_on_conflict(columns, key)}"
                self._cursor.executemany(sql, list(rows))
            return
        # Many rows: COPY them into a scratch table and upsert from it in one statement
        # (~10x fewer round trips than a pipelined executemany). One statement may touch
        # a row once only, so a repeated key keeps its last row, as executemany would.
        stage = self._stage(table, "*")
        self._copy(stage, columns, _last_per_key(columns, key, rows))
        conflict = _on_conflict(columns, key)
        self._cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage}{conflict}")
        self._cursor.execute(f"TRUNCATE {stage}")

    def delete_rows(self, table: str, key: Sequence[str], keys: Sequence[Sequence[Any]]) -> None:
        if len(keys) < _PG_STAGE_FROM:
            if keys:
                where = " AND ".join(f"{name} = %s" for name in key)
                self._cursor.executemany(f"DELETE FROM {table} WHERE {where}", list(keys))
            return
        stage = self._stage(table, ",".join(key), "keys")
        self._copy(stage, key, keys)
        match = " AND ".join(f"t.{name} = s.{name}" for name in key)
        self._cursor.execute(f"DELETE FROM {table} t USING {stage} s WHERE {match}")
        self._cursor.execute(f"TRUNCATE {stage}")

    def _stage(self, table: str, columns: str, kind: str = "rows") -> str:
        """A session-private scratch table shaped like `columns` of `table`, empty."""
        stage = f"_stage_{kind}_{table}"
        self._cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        return stage

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._cursor.fetchall()
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._cursor.fetchone()
        return row


class _PostgresReader:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(sql, tuple(params) if params else None)
        rows: list[tuple[Any, ...]] = self._cursor.fetchall()
        return rows


#: Column types whose array elements need no quotes (what a read model holds besides text).
_UNQUOTED = frozenset({"bigint", "integer", "smallint", "boolean"})


def array_literal(values: Sequence[Any], quoted: bool) -> str:
    """A PostgreSQL array literal (``{1,NULL,3}``; ``{"a\\"b",NULL}`` when `quoted`),
    to pass a list as one text parameter cast to its array type (``%s::bigint[]``).

    psycopg dumps a Python list element by element in Python, with a regular expression
    per element to decide on quotes (~2 µs an element under a profiler): a 100-order
    outcome lookup, two such lists, took 1.3 ms of CPU that way and 0.82 ms this way."""
    if not quoted:
        if None not in values:
            return "{" + ",".join(map(str, values)) + "}"
        return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
    if values and None not in values:
        # Most text (ids, statuses, symbols) has nothing to escape: one join for the
        # whole column, not three string operations per value.
        text = "".join(values)
        if '"' not in text and "\\" not in text:
            return '{"' + '","'.join(values) + '"}'
    return (
        "{"
        + ",".join(
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in values
        )
        + "}"
    )


def pair_arrays(pairs: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """Text pairs as two array literals, firsts and seconds: for ``unnest(%s::text[],
    %s::text[])``, one parameter each however many pairs."""
    return (
        array_literal([first for first, _ in pairs], quoted=True),
        array_literal([second for _, second in pairs], quoted=True),
    )


def _last_per_key(
    columns: Sequence[str], key: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[Sequence[Any]]:
    """`rows` with each key once, as its last row (what row-by-row upserts would leave)."""
    where = [columns.index(name) for name in key]
    if len(where) == 1:
        (i,) = where
        return list({row[i]: row for row in rows}.values())
    return list({tuple(row[i] for i in where): row for row in rows}.values())


#: The write plan calls that carry rows (as their last argument).
_BULK = {"insert_rows", "upsert_rows", "delete_rows"}


class _CallPlan:
    """PostgreSQL's :class:`WritePlan`: the cursor calls themselves, replayed as they
    were made (the rows are built; COPY and the statements run at replay)."""

    def __init__(self) -> None:
        self._calls: list[tuple[str, tuple[Any, ...]]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._calls.append(("execute", (sql, params)))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._calls.append(("executemany", (sql, list(rows))))

    def insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self._calls.append(("insert_rows", (table, columns, rows)))

    def upsert_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        self._calls.append(("upsert_rows", (table, columns, key, rows)))

    def delete_rows(self, table: str, key: Sequence[str], keys: Sequence[Sequence[Any]]) -> None:
        self._calls.append(("delete_rows", (table, key, keys)))

    def fetchall(self) -> list[tuple[Any, ...]]:
        raise TypeError("a write plan has nothing to fetch")

    def fetchone(self) -> tuple[Any, ...] | None:
        raise TypeError("a write plan has nothing to fetch")

    def pipelinable(self) -> bool:
        largest = max((len(args[-1]) for method, args in self._calls if method in _BULK), default=0)
        return largest <= _PG_COMBINE_UPTO

    def replay(self, cursor: Cursor) -> None:
        """As few statements as can be (:meth:`_PostgresCursor.write_all`), unless a call
        has so many rows that COPY is cheaper."""
        assert isinstance(cursor, _PostgresCursor), cursor
        calls = self._calls
        if not self.pipelinable():
            for method, args in calls:
                getattr(cursor, method)(*args)
        else:
            cursor.write_all(calls)
        self._calls = []


#: A pipelined write transaction's rows are found by their keys: no sequential scans,
#: hash or merge joins in it. Until autovacuum first analyzes a read model's table (a
#: new or rebuilt one: none in a whole `bench_http` run of 10,000 orders), the planner
#: goes by its size alone and scanned all of it to delete a batch's 30 resting orders
#: or open sells by ``= ANY``: 0.5-1 ms at 3,000-4,300 rows, against 0.07 ms by the index,
#: and growing with the book.
_BY_KEY = (
    "SELECT set_config('enable_seqscan', 'off', true), "
    "set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
)


class PostgresDatabase:
    """A psycopg 3 connection pool of its own, sized for HTTP readers plus a projector.

    Its connections are in autocommit mode: a read is one statement and one round trip.
    Outside autocommit, psycopg opened a transaction before each read (``BEGIN``, a
    round trip of its own) and the pool committed it after (another): three round
    trips per read, on every outcome lookup and client order id check of the HTTP
    path. Transactions (:meth:`transaction`, :meth:`snapshot`, :meth:`pipelined`)
    are explicit blocks.
    """

    dialect = "postgres"

    def __init__(self, conninfo: dict[str, Any], max_size: int = 8) -> None:
        kwargs = {k: v for k, v in conninfo.items() if v not in (None, "")}
        self._pool = ConnectionPool(
            kwargs={**kwargs, "autocommit": True},
            min_size=1,
            max_size=max_size,
            open=True,
            name="carbonx-sql",
        )
        self._types: dict[str, dict[str, str]] = {}  # see _PostgresCursor

    def plan(self) -> WritePlan:
        return _CallPlan()

    @contextlib.contextmanager
    def fast_drop(self) -> Iterator[None]:
        """Nothing to change: PostgreSQL's DROP TABLE unlinks the files."""
        yield

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Cursor]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            yield _PostgresCursor(cursor, self._types)

    @contextlib.contextmanager
    def pipelined(self) -> Iterator[Cursor]:
        """A write transaction sent as one pipeline: ``BEGIN``, the block's statements
        and ``COMMIT`` go out together and are answered together, one round trip in
        all (a projector's batch was ~8: begin, check, ~5 writes, commit), or two the
        first time a table is written by this process (its column types are read then,
        which flushes the pipeline). Nothing else can be read in it, and an error
        surfaces when the block ends; the transaction is then rolled back whole.

        Its writes go by key, and the planner is told so (:data:`_BY_KEY`)."""
        with self._pool.connection() as conn, conn.cursor() as cursor:
            try:
                with conn.pipeline():
                    cursor.execute("BEGIN")
                    cursor.execute(_BY_KEY)
                    yield _PostgresCursor(cursor, self._types)
                    cursor.execute("COMMIT")
            except BaseException:
                # A failed statement leaves the block aborted (a COMMIT after it is
                # skipped); an exception in the block left it open.
                if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                    conn.rollback()
                raise

    def query(
        self, sql: str, params: Sequence[Any] = (), *, replan: bool = False
    ) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(
                sql, tuple(params) if params else None, prepare=False if replan else None
            ).fetchall()
            return rows

    def queries(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        """The rows of each read-only statement, all sent in one pipeline (one round
        trip); each sees what was committed when it ran, as separate reads would."""
        with self._pool.connection() as conn:
            with conn.pipeline():
                cursors = [
                    conn.execute(sql, tuple(params) if params else None)
                    for sql, params in statements
                ]
            return [cursor.fetchall() for cursor in cursors]

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Reader]:
        """``REPEATABLE READ, READ ONLY``: the snapshot is taken at the first query and
        kept to the end (the default READ COMMITTED takes one per statement). Set with
        ``SET TRANSACTION`` inside the block, so the pooled connection keeps its defaults."""
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield _PostgresReader(cursor)

    def close(self) -> None:
        self._pool.close()
