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
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from psycopg_pool import ConnectionPool

__all__ = ["Cursor", "PostgresDatabase", "SQLiteDatabase", "SqlDatabase"]


class Cursor(Protocol):
    """What a transaction hands out: execute, executemany, bulk insert, fetch."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Append many rows at once (COPY on PostgreSQL)."""

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...


class SqlDatabase(Protocol):
    dialect: str

    def transaction(self) -> contextlib.AbstractContextManager[Cursor]:
        """A write transaction: committed when the block ends, rolled back on error."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement."""

    def close(self) -> None: ...


# ---------------------------------------------------------------------------- SQLite


class _SQLiteCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql.replace("%s", "?"), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(sql.replace("%s", "?"), rows)

    def insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            marks = ",".join("?" * len(columns))
            self._cursor.executemany(
                f"INSERT INTO {table} ({','.join(columns)}) VALUES ({marks})", rows
            )

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cursor.fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._cursor.fetchone()
        return row


class SQLiteDatabase:
    """One connection per thread to the store's SQLite file (WAL: readers never block
    the writer); writes take ``BEGIN IMMEDIATE`` so that two writers queue instead of
    failing half way."""

    dialect = "sqlite"

    def __init__(self, name: str, uri: bool, timeout: float) -> None:
        self._name = name
        self._uri = uri
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
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
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Cursor]:
        conn = self._connection()
        cursor = conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield _SQLiteCursor(cursor)
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql.replace("%s", "?"), tuple(params)).fetchall()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()


# ---------------------------------------------------------------------------- PostgreSQL


class _PostgresCursor:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql, tuple(params) if params else None)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(sql, list(rows))

    def insert_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            with self._cursor.copy(f"COPY {table} ({','.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._cursor.fetchall()
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._cursor.fetchone()
        return row


class PostgresDatabase:
    """A psycopg 3 connection pool of its own, sized for HTTP readers plus a projector."""

    dialect = "postgres"

    def __init__(self, conninfo: dict[str, Any], max_size: int = 8) -> None:
        kwargs = {k: v for k, v in conninfo.items() if v not in (None, "")}
        self._pool = ConnectionPool(
            kwargs=kwargs, min_size=1, max_size=max_size, open=True, name="carbonx-sql"
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Cursor]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            yield _PostgresCursor(cursor)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(
                sql, tuple(params) if params else None
            ).fetchall()
            return rows

    def close(self) -> None:
        self._pool.close()
