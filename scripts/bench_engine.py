"""Benchmark: the exchange engine, in memory and end to end, against baselines.

In ONE run, on the realistic mix of scripts/workload.py (limit ~60%, market 10%,
IOC/FOK 10%, cancels 20%, ~30% crossing, 200 enterprises):

* in-memory engine rate (no I/O; the collector settled as in the engine's process);
* end to end on SQLite and on PostgreSQL: commands appended to the intake log while the
  engine journals the results (orders/s until the last result is journaled), once with
  writer and engine as threads of one process (as `carbonx serve`), once with the
  engine as its own process (`carbonx engine`, as deployed apart; the reported figure),
  with that process's CPU time per order (Linux): on a shared machine the rates move
  with the neighbours' load, the CPU cost much less;
* a naive baseline: one `eventsourcing` aggregate saved per order on PostgreSQL;
* the raw PostgreSQL binary COPY row rate into a journal-shaped table;
* latency from intake append to journaled result at 10,000 orders/s offered load
  (PostgreSQL; SQLite printed too);
* how long a snapshot stops the engine's thread: the state copied, encoded and stored
  in that thread, against copied and encoded by a forked child (the default).

The last line is one JSON object with the figures.

    python scripts/bench_engine.py [--n 200000] [--db postgresql://EMPTY-DB]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg

from events.base import Event
from infra import heap
from infra.servers import PostgresServer, replace_dbname
from infra.store import open_store
from scripts.processes import carbonx
from scripts.workload import workload
from services.exchange import native
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine
from services.exchange.intake import Intake
from services.exchange.runner import ENGINE_READER, EngineRunner

CONFIG = EngineConfig(calendar=ALWAYS)


def in_memory(commands: list[tuple[Event, int]], engine_class: type[Engine] = Engine) -> float:
    """Commands/s of `Engine.apply` alone, with the collector settled as the engine's own
    process runs it (`carbonx engine` and `serve` call infra.heap.settle): left at
    CPython's defaults, young-generation collections over the growing book took ~20% of
    the compiled engine's time. The defaults are restored afterwards."""
    engine = engine_class(CONFIG)
    apply = engine.apply
    thresholds = gc.get_threshold()
    heap.settle()
    try:
        started = time.perf_counter()
        for position, (command, at) in enumerate(commands, start=1):
            apply(position, at, command)
        return len(commands) / (time.perf_counter() - started)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def end_to_end(url: str, commands: list[tuple[Event, int]], chunk: int = 5_000) -> float:
    with open_store(url) as store:
        intake = Intake(store)
        runner = EngineRunner(store, CONFIG, snapshot_every=0)  # the default batch
        runner.recover()
        started = time.perf_counter()

        def feed() -> None:
            for start in range(0, len(commands), chunk):
                intake.submit(commands[start : start + chunk])

        feeder = threading.Thread(target=feed)
        feeder.start()
        while runner.position < len(commands):
            if runner.step() == 0:
                time.sleep(0.0005)
        elapsed = time.perf_counter() - started
        feeder.join()
        assert store.journal.tracking(ENGINE_READER) == len(commands)
    return len(commands) / elapsed


def snapshot_stall(url: str, commands: list[tuple[Event, int]]) -> dict[str, Any]:
    """How long the engine's thread stops for a snapshot of the state `commands` leave:
    copied, encoded and appended in that thread (without fork, and before), against a
    forked child doing it while a thread of the engine's process appends (the default).
    The median of three of each, in ms; the resting orders, for scale."""
    with open_store(url) as store:
        runner = EngineRunner(store, CONFIG, snapshot_every=0)
        for position, (command, at) in enumerate(commands, start=1):
            runner.engine.apply(position, at, command)
        figures: dict[str, Any] = {"snapshot_resting_orders": len(runner.engine.orders)}
        for fork, name in ((False, "snapshot_inprocess_ms"), (True, "snapshot_forked_ms")):
            runner.fork_snapshots = fork
            stalls = []
            for _ in range(3):
                started = time.perf_counter()
                runner.take_snapshot()
                stalls.append((time.perf_counter() - started) * 1e3)
                runner.wait_for_snapshot()
            figures[name] = round(statistics.median(stalls), 1)
        assert store.snapshots.position == 6
    return figures


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid`, all threads (Linux /proc), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def end_to_end_process(
    url: str, commands: list[tuple[Event, int]], chunk: int = 5_000
) -> tuple[float, float | None]:
    """The same, with the engine as its own process (`carbonx engine`), as deployed apart:
    intake writer and engine then run on separate cores. (orders/s, the engine process's
    CPU µs per order while it worked, or None where /proc is missing)."""
    with open_store(url) as store:
        engine = carbonx(
            "engine",
            "--db",
            url,
            "--calendar",
            "always",
            "--snapshot-every",
            "0",
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(2.0)  # let it start and recover (an empty log) before the clock runs
            intake = Intake(store)
            cpu_before = cpu_seconds(engine.pid)
            started = time.perf_counter()
            for start in range(0, len(commands), chunk):
                intake.submit(commands[start : start + chunk])
            while store.journal.tracking(ENGINE_READER) < len(commands):
                assert engine.poll() is None, "engine process died"
                time.sleep(0.002)
            elapsed = time.perf_counter() - started
            cpu_after = cpu_seconds(engine.pid)
        finally:
            engine.send_signal(signal.SIGTERM)
            engine.wait(timeout=30)
    cpu = None
    if cpu_before is not None and cpu_after is not None:
        cpu = round((cpu_after - cpu_before) / len(commands) * 1e6, 1)
    return len(commands) / elapsed, cpu


def latency(url: str, commands: list[tuple[Event, int]], rate: int, seconds: float) -> list[float]:
    """Offer `rate` commands/s in 1 ms ticks; per command, append -> journaled (ms)."""
    per_tick = max(1, rate // 1000)
    total = min(len(commands), int(rate * seconds))
    appended_at: dict[int, float] = {}
    journaled: list[tuple[int, float]] = []
    with open_store(url) as store:
        intake = Intake(store)
        runner = EngineRunner(store, CONFIG, snapshot_every=0)
        runner.recover()
        stop = threading.Event()

        def engine_loop() -> None:
            while not stop.is_set():
                seen = store.generation()
                if runner.step():
                    journaled.append((runner.position, time.perf_counter()))
                else:
                    store.wait_for_change(seen, 0.001)

        thread = threading.Thread(target=engine_loop)
        thread.start()
        started = time.perf_counter()
        for tick, start in enumerate(range(0, total, per_tick)):
            due = started + tick / 1000
            while (now := time.perf_counter()) < due:
                time.sleep(max(0.0, due - now - 0.0002))
            appended = intake.submit(commands[start : start + per_tick])
            at = time.perf_counter()
            for position in range(appended.first, appended.last + 1):
                appended_at[position] = at
        while runner.position < total:
            time.sleep(0.001)
        stop.set()
        thread.join()
    latencies = []
    index = 0
    for position in sorted(appended_at):
        while journaled[index][0] < position:
            index += 1
        latencies.append((journaled[index][1] - appended_at[position]) * 1000)
    return latencies


def naive(url: str, commands: list[tuple[Event, int]], n: int) -> float:
    """One eventsourcing aggregate per order, saved one at a time (the textbook way)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class NaiveOrder(Aggregate):
        @event("Placed")
        def __init__(self, enterprise_id: str, side: str, price: int, quantity: int) -> None:
            self.enterprise_id = enterprise_id
            self.side = side
            self.price = price
            self.quantity = quantity

    parts = psycopg.conninfo.conninfo_to_dict(url)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(parts["dbname"]),
        "POSTGRES_HOST": str(parts.get("host")),
        "POSTGRES_PORT": str(parts.get("port", 5432)),
        "POSTGRES_USER": str(parts.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(parts.get("password", "")) or "unused",
    }
    app = Application(env=env)
    orders = [cmd for cmd, _ in commands if cmd.type_name == "PlaceOrder"][:n]
    started = time.perf_counter()
    for order in orders:
        app.save(
            NaiveOrder(
                order.enterprise_id,
                order.side,
                order.price,  # type: ignore[attr-defined]
                order.quantity,
            )
        )  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - started
    app.close()
    return len(orders) / elapsed


def copy_rate(url: str) -> float:
    with open_store(url) as store:
        rows = [(r.position, r.type_name, r.payload) for p in store.journal.pages() for r in p]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE copybench (LIKE journal_events INCLUDING ALL)")
        conn.autocommit = False
        sql = (
            "COPY copybench (originator_id, originator_version, topic, state, notification_id)"
            " FROM STDIN (FORMAT BINARY)"
        )
        started = time.perf_counter()
        for start in range(0, len(rows), 5_000):
            with conn.transaction(), conn.cursor() as cur, cur.copy(sql) as copy:
                copy.set_types(["text", "int8", "text", "bytea", "int8"])
                for position, topic, payload in rows[start : start + 5_000]:
                    copy.write_row(("journal", position, topic, payload, position))
        return len(rows) / (time.perf_counter() - started)


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[PostgresServer | str]:
    if url:
        yield url
        return
    with PostgresServer(durable=True) as server:
        yield server


def fresh_db(server: PostgresServer | str, name: str) -> str:
    base = server if isinstance(server, str) else server.url
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return replace_dbname(base, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="trading commands")
    parser.add_argument("--naive-n", type=int, default=3_000, help="orders for the naive run")
    parser.add_argument("--rate", type=int, default=10_000, help="offered load for latency")
    parser.add_argument("--seconds", type=float, default=5.0, help="latency run length")
    parser.add_argument(
        "--db",
        default=None,
        help="a PostgreSQL server URL whose role may CREATE DATABASE (default: a throwaway server)",
    )
    args = parser.parse_args()
    commands = workload(args.n)
    out: dict[str, Any] = {"n": len(commands)}

    out["engine"] = native.implementation()
    print(f"engine: {out['engine']}")
    rate = in_memory(commands)
    out["inmemory_commands_per_s"] = round(rate)
    print(f"in-memory engine:             {rate:,.0f} commands/s")
    if native.is_compiled():  # the same workload on the pure-Python sources, for scale
        pure = in_memory(commands, native.load_sources()["engine"].Engine)
        out["inmemory_pure_commands_per_s"] = round(pure)
        print(f"in-memory engine, pure Python: {pure:,.0f} commands/s")

    with tempfile.TemporaryDirectory() as tmp:
        out.update(snapshot_stall(f"sqlite:///{tmp}/snapshot.db", commands))
        print(
            f"snapshot of {out['snapshot_resting_orders']:,} resting orders, engine stopped: "
            f"{out['snapshot_inprocess_ms']} ms copied in process, "
            f"{out['snapshot_forked_ms']} ms forked"
        )
        rate = end_to_end(f"sqlite:///{tmp}/e2e.db", commands)
        out["sqlite_inprocess_orders_per_s"] = round(rate)
        print(f"end to end, SQLite, one process:        {rate:,.0f} orders/s")
        rate, cpu = end_to_end_process(f"sqlite:///{tmp}/e2e-apart.db", commands)
        out["sqlite_orders_per_s"] = round(rate)
        out["sqlite_engine_cpu_us_per_order"] = cpu
        print(f"end to end, SQLite, engine apart:       {rate:,.0f} orders/s", end="")
        print(f" (engine CPU {cpu} µs/order)")
        lat = latency(f"sqlite:///{tmp}/lat.db", commands, args.rate, args.seconds)
        q = statistics.quantiles(lat, n=100)
        out["sqlite_p50_ms"], out["sqlite_p99_ms"] = round(q[49], 2), round(q[98], 2)
        print(f"latency at {args.rate:,}/s, SQLite:  p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms")

    with postgres(args.db) as server:
        url = fresh_db(server, "bench_e2e")
        rate = end_to_end(url, commands)
        out["postgres_inprocess_orders_per_s"] = round(rate)
        print(f"end to end, PostgreSQL, one process:    {rate:,.0f} orders/s")
        rate, cpu = end_to_end_process(fresh_db(server, "bench_e2e_apart"), commands)
        out["postgres_orders_per_s"] = round(rate)
        out["postgres_engine_cpu_us_per_order"] = cpu
        print(f"end to end, PostgreSQL, engine apart:   {rate:,.0f} orders/s", end="")
        print(f" (engine CPU {cpu} µs/order)")
        out["copy_rows_per_s"] = round(copy_rate(url))
        print(f"raw COPY, PostgreSQL:         {out['copy_rows_per_s']:,} rows/s")
        lat = latency(fresh_db(server, "bench_lat"), commands, args.rate, args.seconds)
        q = statistics.quantiles(lat, n=100)
        out["p50_ms"], out["p99_ms"] = round(q[49], 2), round(q[98], 2)
        print(f"latency at {args.rate:,}/s, PostgreSQL: p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms")
        rate = naive(fresh_db(server, "bench_naive"), commands, args.naive_n)
        out["naive_orders_per_s"] = round(rate)
        print(f"naive (aggregate per order):  {rate:,.0f} orders/s")
    out["engine_vs_naive"] = round(out["postgres_orders_per_s"] / out["naive_orders_per_s"], 1)
    print(f"end to end PostgreSQL / naive: {out['engine_vs_naive']}x")
    print(orjson.dumps(out).decode())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
