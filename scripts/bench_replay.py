"""Benchmark: the regulator's tools over a long history produced by the engine.

Builds a journal of at least `--n` events (the realistic mix of scripts/workload.py
through the intake log and the engine, on SQLite by default or `--db`), then measures,
in ONE run:

* rebuild of every projection from position 0 (journal events/s), against two floors
  measured on the same history: just reading and decoding the journal pages (what any
  projector pays on the way in), and just writing the rows the rebuilt read models
  hold, already computed, into empty tables of the same shape (what any rebuild pays on
  the way out: the store's bulk path from Python, and the database copying them
  itself, with no Python at all);
* chain verification of the journal (events/s), against raw SHA-256 over the same
  bytes;
* `replay --as-of` a middle journal position (seconds), from the nearest snapshot.

The last line is one JSON object with the figures.

    python scripts/bench_replay.py [--n 1000000] [--db URL]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg

from events.codec import decode
from infra.store import Store, open_store
from projections import Table, all_projections
from projections.projector import Projector, ensure_tables
from scripts.workload import START, stream, workload
from services.exchange.asof import AsOf, state_as_of
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.intake import Intake
from services.exchange.runner import EngineRunner

CONFIG = EngineConfig(calendar=ALWAYS)


def build_history(store: Store, events: int) -> int:
    """Append workload commands and run the engine until the journal holds `events`."""
    chunk = 50_000
    seed = 1
    # One engine for the whole history, snapshotting as `carbonx engine` does by default.
    runner = EngineRunner(store, CONFIG, batch=5_000, snapshot_every=50_000)
    runner.recover()
    while store.journal.head()[0] < events:
        base = store.intake.head()[0]
        if base == 0:
            commands = workload(chunk, enterprises=200, seed=seed)
        else:  # later chunks: no setup, order ids and the clock carry on
            trading = stream(chunk, enterprises=200, seed=seed, first_position=base + 1)
            commands = [(cmd, START + 100 * (base + i)) for i, cmd in enumerate(trading)]
        for start in range(0, len(commands), 20_000):
            Intake(store).submit(commands[start : start + 20_000])
        runner.drain()
        seed += 1
        print(f"  history: {store.journal.head()[0]:,} journal events", flush=True)
    settle(store)
    return store.journal.head()[0]


def settle(store: Store) -> None:
    """On PostgreSQL, VACUUM (ANALYZE) after the bulk load, as autovacuum or an operator
    would before a rebuild runs against an old journal: the first scan of freshly
    copied rows otherwise also sets every tuple's hint bits, and measured ~2.5x slower
    (read+decode of 1M entries right after the build: ~37,000/s; after: ~88,000/s)."""
    if store.backend not in ("postgresql", "postgres"):
        return
    url = urlsplit(store.url)._replace(query="").geturl()  # carbonx's own options off
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def kept_history_arguments(description: str, repeat: int) -> argparse.ArgumentParser:
    """The options of a benchmark that times one step on a history kept at `--db`
    (scripts/bench_rebuild.py, scripts/bench_verify.py)."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="store URL (kept: the history is reused)")
    parser.add_argument("--n", type=int, default=1_000_000, help="journal events (at least)")
    parser.add_argument("--repeat", type=int, default=repeat, help="timed runs")
    return parser


@contextlib.contextmanager
def kept_history(url: str, events: int) -> Iterator[tuple[Store, int]]:
    """The store at `url` with a history of at least `events` journal events (built, or
    topped up, on first use) and its size."""
    with open_store(url) as store:
        print(f"history of {events:,} events on {store.backend} …", flush=True)
        yield store, build_history(store, events)


def read_baseline(store: Store) -> float:
    started = time.perf_counter()
    count = 0
    for rows in store.journal.pages(0, None, 20_000):
        for row in rows:
            decode(row.body)
        count += len(rows)
    return count / (time.perf_counter() - started)


@dataclasses.dataclass(frozen=True)
class WriteFloor:
    """What writing the read models' rows costs by itself, on one history."""

    rows: int
    #: journal events/s if a rebuild did nothing but load its finished rows with the
    #: store's own bulk path (one transaction; COPY on PostgreSQL, executemany on
    #: SQLite) and build the indexes afterwards, as a rebuild does.
    bulk_events_per_s: float
    #: the same rows copied by the database itself (INSERT … SELECT): no Python, no
    #: client, no protocol. No design that keeps these tables can rebuild faster.
    database_events_per_s: float


def write_floor(store: Store, tables: Sequence[Table], events: int) -> WriteFloor:
    """Load the rows the rebuilt `tables` hold into empty copies (``floor_*``), twice:
    from Python through the store's bulk path, then inside the database; `events`
    journal events produced those rows. The copies are dropped afterwards."""
    db = store.sql
    copies = [dataclasses.replace(t, name=f"floor_{t.name}") for t in tables]
    rows = {t.name: db.query(f"SELECT * FROM {t.name}") for t in tables}
    total = sum(len(r) for r in rows.values())

    def fresh() -> None:
        with db.transaction() as cursor:
            for copy in copies:
                cursor.execute(f"DROP TABLE IF EXISTS {copy.name}")
        ensure_tables(db, copies, indexes=False)

    def index() -> None:
        with db.transaction() as cursor:
            for copy in copies:
                for statement in copy.create_indexes():
                    cursor.execute(statement)

    fresh()
    started = time.perf_counter()
    with db.transaction() as cursor:
        for table, copy in zip(tables, copies, strict=True):
            if rows[table.name]:
                cursor.insert_rows(copy.name, copy.column_names, rows[table.name])
    index()
    bulk = time.perf_counter() - started
    fresh()
    started = time.perf_counter()
    with db.transaction() as cursor:
        for table, copy in zip(tables, copies, strict=True):
            cursor.execute(f"INSERT INTO {copy.name} SELECT * FROM {table.name}")
    index()
    inside = time.perf_counter() - started
    with db.transaction() as cursor:
        for copy in copies:
            cursor.execute(f"DROP TABLE IF EXISTS {copy.name}")
    return WriteFloor(total, events / bulk, events / inside)


def print_rebuild(rebuild: float, read: float, write: WriteFloor, events: int) -> None:
    print(
        f"rebuild of every projection: {rebuild:,.0f} events/s "
        f"(read+decode floor {read:,.0f}/s, ratio {rebuild / read:.2f}; "
        f"write floor, {write.rows / events:.1f} rows an event: bulk from Python "
        f"{write.bulk_events_per_s:,.0f}/s, ratio {rebuild / write.bulk_events_per_s:.2f}; "
        f"inside the database {write.database_events_per_s:,.0f}/s, "
        f"ratio {rebuild / write.database_events_per_s:.2f})",
        flush=True,
    )


def sha_baseline(store: Store) -> float:
    payloads = [row.payload for rows in store.journal.pages(0, None, 50_000) for row in rows]
    started = time.perf_counter()
    digest = "0" * 64
    for payload in payloads:
        digest = hashlib.sha256(digest.encode() + payload).hexdigest()
    return len(payloads) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="journal events (at least)")
    parser.add_argument("--db", default=None, help="store URL (default: a temporary SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{tmp}/bench.db"
        with open_store(url) as store:
            print(f"building a history of {args.n:,} events on {store.backend} …", flush=True)
            total = build_history(store, args.n)

            floor = read_baseline(store)
            projector = Projector(store, all_projections(), batch=20_000)
            started = time.perf_counter()
            projector.rebuild()
            rebuild = total / (time.perf_counter() - started)
            tables = [t for p in projector.projections for t in p.tables]
            written = write_floor(store, tables, total)
            print_rebuild(rebuild, floor, written, total)

            sha = sha_baseline(store)
            started = time.perf_counter()
            report = store.journal.verify()
            verify = report.events / (time.perf_counter() - started)
            assert report.ok, report
            print(f"chain verification: {verify:,.0f} events/s "
                  f"(raw sha256 chain {sha:,.0f}/s, ratio {verify / sha:.2f})")  # fmt: skip

            middle = total // 2
            started = time.perf_counter()
            state_as_of(store, AsOf(intake_position=-1, journal_position=middle), CONFIG)
            as_of = time.perf_counter() - started
            print(f"replay --as-of {middle:,}: {as_of:.2f} s")
    figures: dict[str, Any] = {
        "events": total,
        "rebuild_events_per_s": round(rebuild),
        "read_decode_floor_per_s": round(floor),
        "read_model_rows": written.rows,
        "write_floor_bulk_per_s": round(written.bulk_events_per_s),
        "write_floor_database_per_s": round(written.database_events_per_s),
        "verify_events_per_s": round(verify),
        "sha256_floor_per_s": round(sha),
        "as_of_seconds": round(as_of, 3),
    }
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
