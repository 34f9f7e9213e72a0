"""Benchmark: appending events in batches to the event store, against raw COPY.

Appends N events (default 1,000,000) in batches to the SQLite store and to the
PostgreSQL store, and, in the same run on the same PostgreSQL server, binary-COPYs the
same rows, prebuilt before the clock starts, into an identical table (same columns, same
indexes) with no encoding, hashing or locking: the machine's ceiling for this table.
A CHECKPOINT precedes each PostgreSQL measurement so neither pays for the other's WAL.
Prints events/s for each and the ratio store/COPY; the last line is one JSON object
with the figures.

    python scripts/bench_store.py [--n 1000000] [--batch 20000] [--db postgresql://...]

Without --db it starts a throwaway PostgreSQL server (fsync on, like production).
"""

from __future__ import annotations

import argparse
import contextlib
import struct
import tempfile
import time
from collections.abc import Iterator

import orjson
import psycopg
from eventsourcing.postgres import PostgresDatastore

from events import frame
from events.accounts import CashDeposited, CreditsIssued
from events.codec import Pending
from infra.recorders import PostgresLogRecorder
from infra.servers import PostgresServer
from infra.store import open_store


def make_events(n: int) -> list[Pending]:
    """A journal-like mix: deposits and issuances for 200 enterprises."""
    out = []
    for i in range(n):
        if i % 4:
            event = CashDeposited(
                enterprise_id=f"E{i % 200:04d}", amount=100_000 + i, reference=f"w{i}"
            )
        else:
            event = CreditsIssued(
                enterprise_id=f"E{i % 200:04d}",
                instrument="HCC-2025",
                quantity=1_000,
                serial_first=i * 1_000 + 1,
                serial_last=i * 1_000 + 1_000,
                reason="allocation",
            )
        out.append(frame(event, 1_764_000_000_000_000 + i))
    return out


def checkpoint(url: str) -> None:
    """Flush dirty pages first, so each measurement starts from the same state."""
    # An external server without superuser rights: measure as it is.
    with (
        psycopg.connect(url, autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("CHECKPOINT")


def bench_store(url: str, pending: list[Pending], batch: int) -> float:
    if url.startswith("postgres"):
        checkpoint(url)
    with open_store(url) as store:
        started = time.perf_counter()
        for start in range(0, len(pending), batch):
            store.journal.append(pending[start : start + batch])
        elapsed = time.perf_counter() - started
        assert store.journal.head()[0] == len(pending)
    return len(pending) / elapsed


def bench_copy(url: str, pending: list[Pending], batch: int) -> float:
    """Raw binary COPY of the very rows the store wrote, into a twin table.

    The COPY data is built before the clock starts (no encoding, hashing, locking or
    head lookup is timed): this is the ceiling for these rows on this server.
    """
    with open_store(url) as store:
        rows = [
            (r.position, r.type_name, r.payload) for page in store.journal.pages() for r in page
        ]
    datastore = PostgresDatastore(**_datastore_args(url), originator_id_type="text")
    twin = PostgresLogRecorder(datastore, log_name="journal", events_table_name="copybench_events")
    twin.create_table()
    datastore.close()
    chunks = [_copy_data(rows[start : start + batch]) for start in range(0, len(rows), batch)]
    copy_sql = (
        "COPY copybench_events (originator_id, originator_version, topic, state, notification_id)"
        " FROM STDIN (FORMAT BINARY)"
    )
    checkpoint(url)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for data in chunks:
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                copy.write(data)
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed


def _copy_data(rows: list[tuple[int, str, bytes]]) -> bytes:
    i4, i4i8 = struct.Struct(">i").pack, struct.Struct(">iq").pack
    out = bytearray(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
    for position, topic, payload in rows:
        number = i4i8(8, position)
        out += b"\x00\x05" + i4(7) + b"journal" + number
        out += i4(len(topic)) + topic.encode() + i4(len(payload)) + payload + number
    return bytes(out + b"\xff\xff")


def _datastore_args(url: str) -> dict[str, str]:
    parts = psycopg.conninfo.conninfo_to_dict(url)
    return {
        "dbname": str(parts["dbname"]),
        "host": str(parts.get("host", "127.0.0.1")),
        "port": str(parts.get("port", 5432)),
        "user": str(parts.get("user", "postgres")),
        "password": str(parts.get("password", "")),
    }


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with PostgresServer(durable=True) as server:
        yield server.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="events to append")
    parser.add_argument("--batch", type=int, default=20_000, help="events per transaction")
    parser.add_argument(
        "--db", default=None, help="an EMPTY PostgreSQL database URL (default: a throwaway server)"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    pending = make_events(args.n)
    frame_rate = args.n / (time.perf_counter() - started)
    print(f"framing (event -> canonical bytes), for reference: {frame_rate:,.0f} events/s")

    with tempfile.TemporaryDirectory() as tmp:
        sqlite_rate = bench_store(f"sqlite:///{tmp}/bench.db", pending, args.batch)
    print(f"SQLite store append:      {sqlite_rate:,.0f} events/s")

    with postgres(args.db) as url:
        pg_rate = bench_store(url, pending, args.batch)
        print(f"PostgreSQL store append:  {pg_rate:,.0f} events/s")
        copy_rate = bench_copy(url, pending, args.batch)
        print(f"PostgreSQL raw COPY:      {copy_rate:,.0f} rows/s")
    ratio = pg_rate / copy_rate
    print(f"store/COPY ratio:         {ratio:.2f}")
    print(
        orjson.dumps(
            {
                "n": args.n,
                "batch": args.batch,
                "sqlite_events_per_s": round(sqlite_rate),
                "postgres_events_per_s": round(pg_rate),
                "copy_rows_per_s": round(copy_rate),
                "postgres_to_copy_ratio": round(ratio, 3),
                "frame_events_per_s": round(frame_rate),
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
