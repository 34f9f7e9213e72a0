"""Bulk writes of the read-model database: many rows per statement on SQLite, a COPY'd
scratch table on PostgreSQL (or, in a write plan's pipeline, one statement over arrays),
and the same result as one statement per row."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.sqldb import Cursor, SqlDatabase
from infra.store import open_store

COLUMNS = ("owner", "asset", "n", "note")
KEY = ("owner", "asset")


@contextlib.contextmanager
def _writer(db: SqlDatabase, via: str) -> Iterator[Cursor]:
    """A transaction's cursor, or a write plan replayed in one when the block ends (what
    the projector writes through)."""
    if via == "cursor":
        with db.transaction() as cursor:
            yield cursor
        return
    plan = db.plan()
    yield plan
    with db.transaction() as cursor:
        plan.replay(cursor)


@pytest.mark.parametrize("via", ["cursor", "plan"])
@pytest.mark.parametrize("count", [0, 1, 63, 64, 1_000, 2_345])
def test_bulk_upserts_and_deletes_equal_row_by_row(store_url: str, count: int, via: str) -> None:
    # Notes with what array literals must quote: quotes, a backslash, braces, a comma.
    notes = [None, "", 'n "q" \\ {,} \'', "NULL"]
    rows = [(f"E{i % 97}", f"A{i % 7}", i, notes[i % 4]) for i in range(count)]
    with open_store(store_url) as store:
        db = store.sql
        with db.transaction() as cursor:
            for name in ("t_bulk", "t_single"):
                cursor.execute(
                    f"CREATE TABLE {name} (owner TEXT NOT NULL, asset TEXT NOT NULL, "
                    f"n BIGINT NOT NULL, note TEXT, PRIMARY KEY (owner, asset))"
                )
        with _writer(db, via) as cursor:
            # Repeated keys inside one call: the later row wins, as with one upsert each.
            cursor.upsert_rows("t_bulk", COLUMNS, KEY, rows)
        with db.transaction() as cursor:
            for row in rows:
                cursor.execute(
                    "INSERT INTO t_single (owner, asset, n, note) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (owner, asset) DO UPDATE SET n = excluded.n, "
                    "note = excluded.note",
                    row,
                )
        with _writer(db, via) as cursor:  # and again, over rows that are all there now
            cursor.upsert_rows("t_bulk", COLUMNS, KEY, [(o, a, n + 1, "x") for o, a, n, _ in rows])
            cursor.execute("UPDATE t_single SET n = n + 1, note = 'x'")
        gone = [(f"E{i % 97}", f"A{i % 7}") for i in range(0, count, 2)] + [("nobody", "A0")]
        with _writer(db, via) as cursor:
            cursor.delete_rows("t_bulk", KEY, gone)
        with db.transaction() as cursor:
            for key in gone:
                cursor.execute("DELETE FROM t_single WHERE owner = %s AND asset = %s", key)
        bulk = db.query("SELECT * FROM t_bulk ORDER BY owner, asset")
        single = db.query("SELECT * FROM t_single ORDER BY owner, asset")
        assert bulk == single
        assert len(bulk) == len({(o, a) for o, a, _, _ in rows} - set(gone))


@pytest.mark.parametrize("via", ["cursor", "plan"])
def test_bulk_inserts_keep_every_row(store_url: str, via: str) -> None:
    rows = [(i, f"v{i}" if i % 5 else None) for i in range(1_234)]
    with open_store(store_url) as store:
        with store.sql.transaction() as cursor:
            cursor.execute("CREATE TABLE t_rows (k BIGINT NOT NULL PRIMARY KEY, v TEXT)")
        with _writer(store.sql, via) as cursor:
            cursor.insert_rows("t_rows", ("k", "v"), rows)
        assert store.sql.query("SELECT k, v FROM t_rows ORDER BY k") == rows


def test_a_failed_transaction_leaves_the_scratch_tables_usable(store_url: str) -> None:
    """On PostgreSQL the scratch table is created inside the transaction: a rollback
    takes it away again, and the next bulk write must not miss it."""
    rows = [(f"E{i}", "A", i, None) for i in range(100)]
    with open_store(store_url) as store:
        db = store.sql
        with db.transaction() as cursor:
            cursor.execute(
                "CREATE TABLE t_bulk (owner TEXT NOT NULL, asset TEXT NOT NULL, "
                "n BIGINT NOT NULL, note TEXT, PRIMARY KEY (owner, asset))"
            )
        with pytest.raises(RuntimeError), db.transaction() as cursor:
            cursor.upsert_rows("t_bulk", COLUMNS, KEY, rows)
            raise RuntimeError("rolled back")
        assert db.query("SELECT COUNT(*) FROM t_bulk")[0][0] == 0
        for _ in range(2):
            with db.transaction() as cursor:
                cursor.upsert_rows("t_bulk", COLUMNS, KEY, rows)
                cursor.delete_rows("t_bulk", KEY, [(o, a) for o, a, _, _ in rows[:70]])
        assert db.query("SELECT COUNT(*) FROM t_bulk")[0][0] == 30


def test_a_snapshot_sees_one_state_while_another_connection_commits(store_url: str) -> None:
    """What an export reads in :meth:`SqlDatabase.snapshot` is the database at its first
    read: a commit meanwhile (on another connection: the projector's thread) is not seen,
    in that block, by either of two tables; the next read outside sees it. Nothing can be
    written in the snapshot."""
    with open_store(store_url) as store:
        db = store.sql
        with db.transaction() as cursor:
            cursor.execute("CREATE TABLE t_one (n BIGINT NOT NULL)")
            cursor.execute("CREATE TABLE t_two (n BIGINT NOT NULL)")
            cursor.execute("INSERT INTO t_one VALUES (1)")
            cursor.execute("INSERT INTO t_two VALUES (1)")

        def commit_elsewhere() -> None:
            with db.transaction() as cursor:
                cursor.execute("INSERT INTO t_one VALUES (2)")
                cursor.execute("INSERT INTO t_two VALUES (2)")

        with db.snapshot() as reader:
            assert reader.query("SELECT COUNT(*) FROM t_one") == [(1,)]
            worker = threading.Thread(target=commit_elsewhere)
            worker.start()
            worker.join()
            assert reader.query("SELECT COUNT(*) FROM t_one") == [(1,)]
            assert reader.query("SELECT COUNT(*) FROM t_two") == [(1,)]
        assert db.query("SELECT COUNT(*) FROM t_two") == [(2,)]
        with pytest.raises(Exception, match=r"(?i)read.only|readonly"), db.snapshot() as reader:
            reader.query("INSERT INTO t_one VALUES (3)")
        assert db.query("SELECT COUNT(*) FROM t_one") == [(2,)]


def test_an_ended_threads_sqlite_connection_is_closed_when_another_thread_connects(
    tmp_path: Path,
) -> None:
    """The gateway reads from worker threads that come and go; each opened a connection
    of its own that stayed open (with its page cache) until the store closed."""
    import sqlite3

    from infra.sqldb import SQLiteDatabase

    db = SQLiteDatabase(str(tmp_path / "threads.db"), uri=False, timeout=5)
    opened: list[sqlite3.Connection] = []

    def reader() -> None:
        assert db.query("SELECT 1") == [(1,)]
        opened.append(db._connection())

    first = threading.Thread(target=reader)
    first.start()
    first.join()
    assert opened[0].execute("SELECT 2").fetchone() == (2,)  # still open: nobody came yet
    second = threading.Thread(target=reader)
    second.start()
    second.join()
    with pytest.raises(sqlite3.ProgrammingError):
        opened[0].execute("SELECT 2")  # the ended thread's connection is closed
    assert opened[1].execute("SELECT 2").fetchone() == (2,)
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        opened[1].execute("SELECT 2")


def test_a_pipelined_write_finds_its_rows_by_key(pg_url: str) -> None:
    """A pipelined write (a live projector batch) tells the planner to go by the keys:
    until autovacuum first analyzes a table, the planner knew only its size and scanned
    every resting order to delete a batch's few. Other transactions keep the defaults."""
    with open_store(pg_url) as store:
        db = store.sql
        with db.transaction() as cursor:
            cursor.execute("CREATE TABLE seen (via TEXT, seqscan TEXT, hashjoin TEXT)")
        probe = (
            "INSERT INTO seen SELECT %s, current_setting('enable_seqscan'), "
            "current_setting('enable_hashjoin')"
        )
        with db.pipelined() as cursor:
            cursor.execute(probe, ("pipelined",))
        with db.transaction() as cursor:  # likely the same pooled connection: SET LOCAL
            cursor.execute(probe, ("transaction",))
        assert sorted(db.query("SELECT * FROM seen")) == [
            ("pipelined", "off", "off"),
            ("transaction", "on", "on"),
        ]
