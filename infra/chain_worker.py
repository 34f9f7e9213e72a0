"""Checks one range of a log's hash chain: in-process, or as a worker process of its own.

Verification reads every entry ever written, and one core hashes only so fast; so a
long log is cut into consecutive ranges checked at once in separate processes
(:mod:`infra.chainscan` plans them and merges the verdicts). A range can be checked on
its own because each entry's link depends only on the STORED hash of the entry before
it: the range ``first..last`` starts its walk from the stored hash of entry
``first - 1``. That seed entry is itself checked (position, seal, link) by the range
before, so when every earlier range is whole the seed is exactly the hash a walk from
the start would have reached, and the ranges together check every link, every seal
and every position once, as one walk would.

Run as a script (``python -S chain_worker.py``) it reads a JSON job from stdin (the
database to open, the table, the range) and writes JSON lines to stdout: ``{"progress":
n}`` after each page and finally the range's verdict. The script imports nothing but
the standard library (psycopg only for a PostgreSQL job) and loads :mod:`events.chain`
from its file, so a worker starts in a few tens of milliseconds instead of paying for
the whole event vocabulary that importing the ``events`` package registers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

if __name__ == "__main__":  # run as a worker: events/chain.py is stdlib-only, load just it
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "carbonx_chain", Path(__file__).resolve().parent.parent / "events" / "chain.py"
    )
    assert _spec is not None and _spec.loader is not None
    chain = importlib.util.module_from_spec(_spec)
    sys.modules["carbonx_chain"] = chain  # dataclasses look their module up here
    _spec.loader.exec_module(chain)
else:
    from events import chain

__all__ = [
    "Entries",
    "PostgresRange",
    "RangeReader",
    "SQLiteRange",
    "check_range",
    "run",
    "verify_range",
]

#: Bytes of an SQLite file a worker maps into memory to read it (see SQLiteRange).
MMAP_SIZE = 1 << 40
#: Pages of (position, stored payload), in position order.
Entries = Iterable[Sequence[tuple[int, bytes]]]
#: The first stored entry after a position, or None: (position, payload).
NextEntry = Callable[[int], tuple[int, bytes] | None]


def check_range(
    pages: Entries,
    first: int,
    last: int,
    next_entry: NextEntry,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The verdict on entries ``first..last``; `pages` must start with entry ``first - 1``
    (the seed) unless `first` is 1, and hold the stored entries up to `last`.

    ``{"events", "head_position", "head_hash", "broken_at", "reason"}`` as in
    :class:`events.chain.ChainReport`, counted from the start of the range. A range
    whose walk stops short of `last` without a break (no entry after it at all) ends
    the chain there; :func:`infra.chainscan.merge` treats it so.
    """
    walker = chain.ChainWalker() if first == 1 else None
    for page in pages:
        rows = page
        if walker is None:
            if not rows:
                break
            position, payload = rows[0]
            try:
                _, seed = chain.unseal(bytes(payload))
            except (TypeError, ValueError):  # not bytes, or no seal
                return _unseeded(first)
            if position != first - 1:
                return _unseeded(first)
            walker = chain.ChainWalker(first - 1, seed)
            rows = rows[1:]
        if not walker.feed(rows):
            break
        if progress is not None:
            progress(len(rows))
    if walker is None:
        return _unseeded(first)
    report = walker.report()
    if report.ok and report.head_position < last:
        # Entries are missing at the end of the range: the walk from the start would
        # next see the first stored entry after it, so show the walker that one.
        following = next_entry(report.head_position)
        if following is not None:
            walker.feed([following])
            report = walker.report()
    return {
        "events": report.events,
        "head_position": report.head_position,
        "head_hash": report.head_hash,
        "broken_at": report.broken_at,
        "reason": report.reason,
    }


def _unseeded(first: int) -> dict[str, Any]:
    # Only when entry first - 1 is missing or unsealed, which the range before reports
    # at or before first - 1; the merge never gets this far (unless the table changed
    # under the walk), and then this is still a break, not a pass.
    return {
        "events": 0,
        "head_position": first - 1,
        "head_hash": chain.GENESIS,
        "broken_at": first,
        "reason": f"entry {first - 1}, which this range's first link needs, is unreadable",
    }


class RangeReader(Protocol):
    """What a worker reads from one backend, all inside one snapshot of the log."""

    def payloads(self, first: int, last: int, page: int) -> Iterator[list[tuple[bytes]]]:
        """Pages of the stored payloads at positions ``first..last``, in order."""

    def entries(self, first: int, last: int, page: int) -> Iterator[list[tuple[int, bytes]]]:
        """Pages of (position, payload) at positions ``first..last``, in order."""

    def next_entry(self, after: int) -> tuple[int, bytes] | None:
        """The first stored entry after position `after`."""


class SQLiteRange:
    """An SQLite log read inside one read transaction (a snapshot, in WAL mode)."""

    def __init__(self, conn: Any, table: str) -> None:
        self._conn = conn
        self._table = table
        conn.isolation_level = None
        # Pages read straight from the mapped file instead of one read() each into
        # SQLite's cache: ~5% less CPU per row fetched. Capped by SQLite's build
        # (2 GiB by default); pages beyond are read as before.
        conn.execute(f"PRAGMA mmap_size = {MMAP_SIZE}")
        conn.execute("BEGIN")

    def payloads(self, first: int, last: int, page: int) -> Iterator[list[tuple[bytes]]]:
        sql = f"SELECT state FROM {self._table} WHERE rowid >= ? AND rowid <= ? ORDER BY rowid"
        return self._pages(sql, (first, last), page)

    def entries(self, first: int, last: int, page: int) -> Iterator[list[tuple[int, bytes]]]:
        sql = (
            f"SELECT rowid, state FROM {self._table} WHERE rowid >= ? AND rowid <= ? ORDER BY rowid"
        )
        return self._pages(sql, (first, last), page)

    def next_entry(self, after: int) -> tuple[int, bytes] | None:
        sql = f"SELECT rowid, state FROM {self._table} WHERE rowid > ? ORDER BY rowid LIMIT 1"
        row = self._conn.execute(sql, (after,)).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def _pages(self, sql: str, args: tuple[int, int], page: int) -> Iterator[Any]:
        cursor = self._conn.cursor()
        cursor.row_factory = None  # plain tuples whatever the connection's factory
        cursor.execute(sql, args)
        while rows := cursor.fetchmany(page):
            yield rows


class PostgresRange:
    """A PostgreSQL log read in one REPEATABLE READ transaction (one snapshot), through
    server-side cursors in binary format (bytea arrives as bytes, without hex)."""

    def __init__(self, conn: Any, table: str) -> None:
        from psycopg import IsolationLevel

        self._conn = conn
        self._table = table
        self._cursors = 0
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True

    def payloads(self, first: int, last: int, page: int) -> Iterator[list[tuple[bytes]]]:
        sql = (
            f"SELECT state FROM {self._table} WHERE notification_id >= %s "
            "AND notification_id <= %s ORDER BY notification_id"
        )
        return self._pages(sql, (first, last), page)

    def entries(self, first: int, last: int, page: int) -> Iterator[list[tuple[int, bytes]]]:
        sql = (
            f"SELECT notification_id, state FROM {self._table} WHERE notification_id >= %s "
            "AND notification_id <= %s ORDER BY notification_id"
        )
        return self._pages(sql, (first, last), page)

    def next_entry(self, after: int) -> tuple[int, bytes] | None:
        sql = (
            f"SELECT notification_id, state FROM {self._table} "
            "WHERE notification_id > %s ORDER BY notification_id LIMIT 1"
        )
        row = self._conn.execute(sql.encode(), (after,), binary=True).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def _pages(self, sql: str, args: tuple[int, int], page: int) -> Iterator[Any]:
        self._cursors += 1
        cursor = self._conn.cursor(name=f"carbonx_chain_{self._cursors}", binary=True)
        cursor.itersize = page
        cursor.execute(sql.encode(), args)
        while rows := cursor.fetchmany(page):
            yield rows
        cursor.close()


def verify_range(
    reader: RangeReader,
    first: int,
    last: int,
    page: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The verdict on entries ``first..last``, as :func:`check_range` gives it.

    Fast path: the payloads of positions ``first - 1..last`` are read alone, in
    position order, and checked with :func:`events.chain.check_links`; the range is
    whole when every link holds and exactly ``last - first + 2`` rows came back
    (positions are unique integers, so a full count over the interval means no gap,
    and the rows were those positions in turn). Anything else (a link that does not
    hold, a gap) and the range is walked again by :func:`check_range`, which names the
    first break as one walk would; progress already reported is not reported twice.
    """
    reported = 0

    def relay(count: int) -> None:
        nonlocal reported
        reported += count
        if progress is not None:
            progress(count)

    verdict = _fast(reader, first, last, page, relay)
    if verdict is not None:
        return verdict
    credit = reported

    def again(count: int) -> None:
        nonlocal credit
        fresh = max(count - credit, 0)
        credit = max(credit - count, 0)
        if fresh and progress is not None:
            progress(fresh)

    lo = max(first - 1, 1)
    return check_range(reader.entries(lo, last, page), first, last, reader.next_entry, again)


def _fast(
    reader: RangeReader, first: int, last: int, page: int, progress: Callable[[int], None]
) -> dict[str, Any] | None:
    """The fast path of :func:`verify_range`: the verdict on a whole range, else None."""
    lo = max(first - 1, 1)
    previous: bytes | None = chain.GENESIS.encode() if first == 1 else None
    rows_read = 0
    try:
        for rows in reader.payloads(lo, last, page):
            payloads = list(map(itemgetter(0), rows))
            rows_read += len(payloads)
            if previous is None:  # the seed: entry first - 1, whose stored hash starts us
                previous = chain.unseal(bytes(payloads[0]))[1].encode()
                payloads = payloads[1:]
            previous = chain.check_links(previous, payloads)
            if previous is None:
                return None
            progress(len(payloads))
    except (TypeError, ValueError):  # a payload that is not bytes, or the seed unsealed
        return None
    if previous is None or rows_read != last - lo + 1:
        return None
    return _verdict(first, last, previous.decode(), None)


def _verdict(first: int, head_position: int, head_hash: str, broken: Any) -> dict[str, Any]:
    return {
        "events": head_position - (first - 1),
        "head_position": head_position,
        "head_hash": head_hash,
        "broken_at": None if broken is None else broken.broken_at,
        "reason": None if broken is None else broken.reason,
    }


def run(job: dict[str, Any], out: Any) -> None:
    """Check the range of `job`, writing progress and the verdict as JSON lines to `out`."""

    def emit(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    first, last, page, table = job["first"], job["last"], job["page"], job["table"]
    reader: RangeReader
    if job["backend"] == "sqlite":
        import sqlite3

        conn: Any = sqlite3.connect(
            job["database"], uri=job.get("uri", False), timeout=job.get("timeout", 5)
        )
        reader = SQLiteRange(conn, table)
    else:
        import psycopg

        conn = psycopg.connect(**job["conninfo"])
        reader = PostgresRange(conn, table)
    try:
        emit(verify_range(reader, first, last, page, lambda n: emit({"progress": n})))
    finally:
        conn.close()


if __name__ == "__main__":
    run(json.load(sys.stdin), sys.stdout)
