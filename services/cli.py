"""The `carbonx` command line (click).

Every command takes the store's URL from `--db` or `CARBONX_DATABASE_URL` (default: the
embedded SQLite file `./data/carbonx.db`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from infra import heap
from infra.logs import configure_logging
from infra.store import DEFAULT_URL, open_store
from services.exchange.calendar import calendar_named
from services.exchange.config import EngineConfig
from services.exchange.runner import BATCH, EngineRunner
from services.ticker import Ticker
from services.version import VERSION

__all__ = ["main"]

db_option = click.option(
    "--db",
    "db_url",
    envvar="CARBONX_DATABASE_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Store URL: sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB "
    "(env CARBONX_DATABASE_URL).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, prog_name="carbonx")
def main() -> None:
    """carbonx: carbon-credit registry, exchange and settlement, event-sourced."""


def listen_options(command: Callable[..., None]) -> Callable[..., None]:
    """--host and --port, for the commands that serve HTTP."""
    command = click.option(
        "--port", default=8000, show_default=True, type=int, help="Port to listen on."
    )(command)
    return click.option(
        "--host", default="127.0.0.1", show_default=True, help="Interface to listen on."
    )(command)


workers_option = click.option(
    "--workers",
    envvar="CARBONX_HTTP_WORKERS",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="HTTP worker processes sharing the port (env CARBONX_HTTP_WORKERS); each has its "
    "own store connections and intake writer. Prometheus request counters are per worker.",
)


def _serve_http(
    app: Callable[[], Any], host: str, port: int, workers: int, env: dict[str, str]
) -> None:
    """Serve `app` in this process, or (workers > 1) as uvicorn worker processes that
    each build their app from `env` (see services/gateway/workers.py), each with a
    listening socket of its own where the platform allows (services/gateway/reuseport.py).
    """
    import uvicorn

    from services.gateway import reuseport
    from services.gateway.workers import FACTORY

    common: dict[str, Any] = {"host": host, "port": port, "log_config": None}
    if workers == 1:
        uvicorn.run(app(), access_log=False, **common)
        return
    os.environ.update(env)  # inherited by the worker processes
    if reuseport.available():
        reuseport.serve(FACTORY, host, port, workers)
    else:
        uvicorn.run(FACTORY, factory=True, workers=workers, access_log=False, **common)


calendar_option = click.option(
    "--calendar",
    envvar="CARBONX_CALENDAR",
    type=click.Choice(["cn-ets", "always"]),
    default=None,
    help="Trading calendar (env CARBONX_CALENDAR). Default: the one recorded in the store "
    "by the first engine that ran on it, else cn-ets; --demo implies 'always'. An engine "
    "refuses to continue a journal under another calendar than it was produced with.",
)


def _engine_config(calendar: str) -> EngineConfig:
    return EngineConfig(calendar=calendar_named(calendar))


def _existing_store(db_url: str | None) -> Any:
    """The store at `db_url` for an audit command (`verify`, `replay`, `export`), which
    must not create one (see :func:`infra.store.open_store`)."""
    from infra.store import StoreNotFound

    try:
        return open_store(db_url, create=False)
    except StoreNotFound as error:
        raise click.UsageError(f"{error}: check --db (or CARBONX_DATABASE_URL)") from error


def _engine_calendar(store: Any, asked: str | None) -> str:
    """The calendar for an engine on `store` (recorded there), or a usage error."""
    from services.exchange.store_calendar import CalendarMismatch, calendar_for_engine

    try:
        return calendar_for_engine(store, asked)
    except CalendarMismatch as error:
        raise click.UsageError(str(error)) from error


@main.command()
@db_option
@calendar_option
@click.option(
    "--batch",
    type=int,
    default=None,
    help="Commands per journal transaction, at most (a backlog's; under light load a "
    f"batch is what has arrived). Default: {BATCH['postgresql']:,} on PostgreSQL, "
    f"{BATCH['sqlite']:,} on SQLite.",
)
@click.option(
    "--snapshot-every",
    default=50_000,
    show_default=True,
    help="Commands between snapshots, at least: one is taken after the page of commands "
    "that reaches the count (a backlog's pages hold up to --batch commands).",
)
@click.option(
    "--tick",
    default=0.0,
    show_default=True,
    help="Also append a Tick command every TICK seconds (0: off; `carbonx serve` ticks).",
)
@click.option(
    "--kafka",
    envvar="CARBONX_KAFKA_BOOTSTRAP",
    default=None,
    help="Also take commands from the Kafka topic carbonx.commands.v1 (HOST:PORT; env "
    "CARBONX_KAFKA_BOOTSTRAP): its assigned partitions are moved into the intake log, "
    "with their offsets as tracking records in the same transaction.",
)
@click.option(
    "--partitions",
    default="0",
    show_default=True,
    help="With --kafka: the command topic's partitions this engine owns, e.g. 0,1,2.",
)
def engine(
    db_url: str,
    calendar: str | None,
    batch: int | None,
    snapshot_every: int,
    tick: float,
    kafka: str | None,
    partitions: str,
) -> None:
    """Run the exchange engine alone: intake log in, journal out, until SIGTERM/SIGINT.

    Exactly once: each batch of results is journaled with the intake position it
    consumed, in one transaction; a restart resumes from the latest snapshot.
    """
    configure_logging()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with open_store(db_url) as store:
        runner = EngineRunner(
            store,
            _engine_config(_engine_calendar(store, calendar)),
            batch=batch,
            snapshot_every=snapshot_every,
        )
        if tick > 0:
            threading.Thread(
                target=Ticker(store, tick).run, args=(stop,), name="carbonx-ticker", daemon=True
            ).start()
        bridge = None
        if kafka:
            from infra.kafka_topics import ensure_topic
            from services.exchange.kafka_intake import COMMANDS_TOPIC, KafkaIntakeBridge

            try:
                owned = sorted({int(p) for p in partitions.split(",") if p.strip()})
            except ValueError:
                owned = []
            if not owned:
                raise click.BadParameter(
                    "give partition numbers, e.g. 0,1,2", param_hint="--partitions"
                )
            ensure_topic(kafka, COMMANDS_TOPIC, max(owned) + 1, 1)
            bridge = KafkaIntakeBridge(store, kafka, owned)
            bridge_thread = threading.Thread(
                target=bridge.run, args=(stop,), name="carbonx-bridge", daemon=True
            )
            bridge_thread.start()
        runner.run(stop, tune_gc=True)
        if bridge is not None:
            bridge_thread.join(timeout=10)  # the consumer is not thread-safe: stop it first
            bridge.close()
        click.echo(
            f"engine stopped at intake position {runner.position} "
            f"({runner.stats.commands} commands, {runner.stats.results} results)"
        )


kafka_option = click.option(
    "--kafka",
    "kafka",
    envvar="CARBONX_KAFKA_BOOTSTRAP",
    required=True,
    help="Kafka bootstrap HOST:PORT (env CARBONX_KAFKA_BOOTSTRAP).",
)


@main.command()
@db_option
@kafka_option
@click.option("--partitions", default=3, show_default=True, help="Partitions if the topic is new.")
@click.option("--replication", default=1, show_default=True, help="Replication if new.")
def relay(db_url: str, kafka: str, partitions: int, replication: int) -> None:
    """Publish the journal to the Kafka topic carbonx.events.v1, until SIGTERM/SIGINT.

    Every entry in position order: key = instrument or enterprise, value = its
    canonical JSON, headers type/position/hash; acks=all, idempotent producer. The
    relay records its position in the store only after the broker acknowledged, so a
    restart may resend (consumers dedupe by position), never skip.
    """
    from infra.kafka_topics import ensure_topic
    from services.relay import EVENTS_TOPIC, Relay

    configure_logging()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ensure_topic(kafka, EVENTS_TOPIC, partitions, replication)
    with open_store(db_url) as store:
        publisher = Relay(store, kafka)
        try:
            publisher.run(stop)
        finally:
            publisher.close()
        click.echo(f"relay stopped at journal position {publisher.position}")


@main.command()
@db_option
@listen_options
@click.option(
    "--kafka",
    envvar="CARBONX_KAFKA_BOOTSTRAP",
    default=None,
    help="Kafka bootstrap HOST:PORT (env CARBONX_KAFKA_BOOTSTRAP): also run the relay "
    "that publishes the journal to carbonx.events.v1.",
)
@calendar_option
@workers_option
@click.option(
    "--demo",
    is_flag=True,
    help="Always-open calendar, and on an empty store: one listed instrument and a few "
    "enterprises with cash and credits.",
)
def serve(
    db_url: str,
    host: str,
    port: int,
    kafka: str | None,
    calendar: str | None,
    workers: int,
    demo: bool,
) -> None:
    """Run the all-in-one process: HTTP gateway, engine and projections over one store.

    Commands go through the store's intake log; a ticker appends a Tick command every
    second so orders expire and trading days close on time; with --kafka the relay
    publishes the journal too. With --workers N the HTTP gateway runs as N worker
    processes, the projector runs as a `carbonx projector` child process, and this
    process keeps the engine and the ticker. The dashboard is at /, the API docs at /docs.
    """
    from infra.children import ChildProcess
    from projections import all_projections
    from projections.projector import Projector
    from services.demo import demo_tokens, seed_demo
    from services.gateway.app import create_app
    from services.gateway.workers import worker_environment

    if demo:
        calendar = "always"
    configure_logging()
    store = open_store(db_url)
    try:
        calendar = _engine_calendar(store, calendar)
    except click.UsageError:
        store.close()
        raise
    if demo and seed_demo(store):
        click.echo("demo zone seeded: instrument HCC-2025, enterprises E-DEMO-1..3")
    config = _engine_config(calendar)
    runner = EngineRunner(store, config)
    stop = threading.Event()
    engine_thread = threading.Thread(
        target=runner.run, args=(stop,), kwargs={"tune_gc": True}, name="carbonx-engine"
    )
    engine_thread.start()
    projecting: Callable[[threading.Event], None]
    if workers == 1:
        projecting = Projector(store, all_projections()).run
    else:  # its own core: not waiting for the engine's GIL, nor the engine for it
        projecting = ChildProcess(
            "projector",
            [sys.executable, "-m", "services.cli", "projector", "--parent-pid", str(os.getpid())],
            {"CARBONX_DATABASE_URL": db_url},
        ).run
    projector_thread = threading.Thread(target=projecting, args=(stop,), name="carbonx-projector")
    projector_thread.start()
    threading.Thread(
        target=Ticker(store, 1.0).run, args=(stop,), name="carbonx-ticker", daemon=True
    ).start()
    if kafka:
        from infra.kafka_topics import ensure_topic
        from services.relay import EVENTS_TOPIC, Relay

        ensure_topic(kafka, EVENTS_TOPIC, partitions=3, replication=1)
        relay = Relay(store, kafka)
        threading.Thread(target=relay.run, args=(stop,), name="carbonx-relay", daemon=True).start()
    if demo:
        click.echo("demo API tokens (Authorization: Bearer TOKEN; sign in at the dashboard):")
        for role, enterprise, token in demo_tokens(store):
            click.echo(f"  {role:<9} {enterprise or '':<9} {token}")
    click.echo(
        f"carbonx serving on http://{host}:{port} (store: {db_url}, calendar: {calendar}, "
        f"HTTP workers: {workers})"
    )
    try:
        _serve_http(
            lambda: create_app(store, config=config, kafka=kafka),
            host,
            port,
            workers,
            worker_environment(db_url, calendar, kafka, commands_over_kafka=False),
        )
    finally:
        stop.set()
        engine_thread.join(timeout=10)
        projector_thread.join(timeout=10)
        store.close()


@main.command()
@db_option
@calendar_option
@click.option(
    "--as-of",
    "as_of",
    required=True,
    help="A journal position (e.g. 1234) or an ISO 8601 time (e.g. 2025-11-25T10:00:00+08:00).",
)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write JSON here.")
def replay(db_url: str, calendar: str | None, as_of: str, out: str | None) -> None:
    """Rebuild the state as of a point and print it (or write it, --out) as JSON.

    Every balance (cash available and held), holding (with serial ranges), open order,
    compliance obligation, enterprise's unpaid penalty debt and market's previous close,
    exactly as it stood right after the command that journal position answers (or, for
    a time, after the commands up to the first one stamped later). Every replayed result
    is checked against the journal: replaying under other rules (--calendar) than the
    journal's fails instead of guessing.
    """
    import orjson

    from services.exchange.asof import parse_point, report, state_as_of
    from services.exchange.store_calendar import calendar_to_read

    try:
        point = parse_point(as_of)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--as-of") from error
    with _existing_store(db_url) as store:
        try:
            config = _engine_config(calendar_to_read(store, calendar))
            engine = state_as_of(store, point, config)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--as-of") from error
    text = orjson.dumps(report(engine), option=orjson.OPT_INDENT_2).decode()
    if out:
        with open(out, "w") as handle:
            handle.write(text + "\n")
        click.echo(f"state as of {as_of} written to {out}")
    else:
        click.echo(text)


@main.command()
@db_option
@listen_options
@calendar_option
@workers_option
@click.option(
    "--kafka",
    envvar="CARBONX_KAFKA_BOOTSTRAP",
    default=None,
    help="Kafka bootstrap HOST:PORT (env CARBONX_KAFKA_BOOTSTRAP): commands go to the "
    "topic carbonx.commands.v1 (for `carbonx engine --kafka`) instead of the store.",
)
def gateway(
    db_url: str, host: str, port: int, calendar: str | None, workers: int, kafka: str | None
) -> None:
    """Run the HTTP gateway alone, for deployments where the engine, the projector and
    the relay run as their own processes (`carbonx engine`, `projector`, `relay`).

    Reads come from the read models in the store; writes go to the intake log, or with
    --kafka to the command topic (an order is then found again by its client order id;
    other writes answer 202 once the broker has them). --workers N runs N gateway
    processes on the one port.
    """
    from services.exchange.store_calendar import calendar_to_read
    from services.gateway.app import create_app
    from services.gateway.workers import worker_environment

    configure_logging()
    with open_store(db_url) as store:  # its audit endpoints re-run the engine's rules
        calendar = calendar_to_read(store, calendar)
    with contextlib.ExitStack() as stack:

        def app() -> Any:  # only when this process serves (one worker): its store
            store = stack.enter_context(open_store(db_url))
            return create_app(
                store, config=_engine_config(calendar), kafka=kafka, commands_over_kafka=bool(kafka)
            )

        _serve_http(
            app,
            host,
            port,
            workers,
            worker_environment(db_url, calendar, kafka, commands_over_kafka=bool(kafka)),
        )


@main.command()
@db_option
@click.option(
    "--rebuild",
    is_flag=True,
    help="Drop every read model and rebuild it from journal position 0 first.",
)
@click.option(
    "--batch",
    default=5_000,
    show_default=True,
    help="Journal entries per transaction (a --rebuild's own: at least 50,000).",
)
@click.option("--once", is_flag=True, help="Catch up with the journal, then exit.")
@click.option("--parent-pid", type=int, default=None, hidden=True)  # `serve --workers N`
def projector(db_url: str, rebuild: bool, batch: int, once: bool, parent_pid: int | None) -> None:
    """Keep the read models (balances, ledger, holdings, orders, book, tape, candles,
    surveillance) up to date with the journal, until SIGTERM/SIGINT.

    Each batch's rows and each projection's position commit in one transaction, so a
    restart resumes exactly where the last commit left off.
    """
    import time

    from projections import all_projections
    from projections.projector import Projector

    if parent_pid is not None:
        from infra.children import die_with

        die_with(parent_pid)
    configure_logging()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with open_store(db_url) as store:
        worker = Projector(store, all_projections(), batch=batch)
        heap.settle()  # its read-model state is loaded: long-lived from here on
        if rebuild:
            started = time.perf_counter()
            read = worker.rebuild()
            elapsed = time.perf_counter() - started
            click.echo(f"rebuilt every read model from {read} journal entries in {elapsed:.1f} s")
        if once:
            worker.catch_up()
        else:
            worker.run(stop)
        click.echo(f"projector stopped at journal position {worker.position}")


@main.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@db_option
@click.option(
    "--role",
    required=True,
    type=click.Choice(["operator", "regulator", "verifier", "trader", "viewer"]),
    help="What the token may do.",
)
@click.option("--enterprise", default=None, help="The enterprise (traders and viewers only).")
@click.option("--label", default="", help="A note for whoever audits tokens later.")
def token_create(db_url: str, role: str, enterprise: str | None, label: str) -> None:
    """Print a new API token (shown once: only its hash is stored), alone on the last line."""
    from services.gateway.auth import create_token

    with open_store(db_url) as store:
        try:
            value = create_token(store.sql, role, enterprise, label)
        except ValueError as error:
            raise click.UsageError(str(error)) from error
    click.echo(f"{role} token{f' for {enterprise}' if enterprise else ''}:")
    click.echo(value)


@main.command()
@db_option
@click.option("--period", required=True, help="Compliance period, e.g. 2025.")
@click.option(
    "--format", "form", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory for the files (default: ./export-PERIOD).",
)
def export(db_url: str, period: str, form: str, out: str | None) -> None:
    """Audit export of a period: trades and transfers (with serial ranges), holdings,
    issuances, surrenders, retirements, compliance, obligations, penalties, evaluations —
    one file each, read in one snapshot — and manifest.json with each file's row count
    and SHA-256 and the journal position and hash the files reflect. Market activity is
    the period's calendar year; compliance records are the compliance period's. CSV is
    RFC 4180; a text cell starting with = + - @ (or a tab or CR) gets a ' in front
    against formula injection; JSON is exact."""
    from pathlib import Path

    from projections import all_projections
    from projections.projector import Projector
    from services.export import export_period

    with _existing_store(db_url) as store:
        Projector(store, all_projections()).catch_up()
        try:
            manifest = export_period(store, period, form, Path(out or f"export-{period}"))
        except ValueError as error:
            raise click.BadParameter(str(error)) from error
    for info in manifest["files"].values():
        click.echo(f"{info['file']:<18} {info['rows']:>8} rows  sha256 {info['sha256'][:16]}…")
    click.echo(
        f"as of journal position {manifest['journal_position']}, "
        f"head hash {manifest['journal_head_hash']}"
    )


@main.command()
@db_option
@calendar_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def verify(db_url: str, calendar: str | None, quiet: bool) -> None:
    """Check every log's hash chain, then re-run the engine over the intake log.

    The re-run starts from an empty engine (under the calendar recorded in the store,
    or --calendar to check the journal against other rules) and compares every result
    with the
    journal, byte for byte. Exit status 0 only when every chain is whole and every
    result matches; 1 otherwise, naming the first differing position and what differs.
    """
    from tqdm import tqdm

    from services.audit import verify_store

    bars: list[Any] = []

    def progress(name: str, total: int) -> Callable[[int], None]:
        unit = "cmd" if name == "re-execute" else "ev"
        bar = tqdm(total=total, desc=name, unit=unit, disable=quiet or None, file=sys.stderr)
        bars.append(bar)

        def advance(count: int) -> None:
            bar.update(count)

        return advance

    from services.exchange.store_calendar import calendar_to_read

    with _existing_store(db_url) as store:
        config = _engine_config(calendar_to_read(store, calendar))
        result = verify_store(store, config, progress)
    for bar in bars:
        bar.close()
    for name, log in result["logs"].items():
        if log["ok"]:
            click.echo(f"{name}: ok, {log['events']} events, head {log['head_hash']}")
        else:
            click.echo(
                f"{name}: BROKEN at position {log['broken_at']}: {log['reason']} "
                f"({log['events']} events verified before it)"
            )
    again = result["reexecution"]
    assert again is not None  # the CLI always re-executes
    if again["ok"]:
        click.echo(
            f"re-execution: ok, {again['commands']} commands reproduced {again['results']} "
            f"journal events; state hash {again['state_hash']}"
        )
    elif again.get("problem"):
        click.echo(f"re-execution: DIFFERS: {again['problem']}")
    else:
        click.echo(f"re-execution: DIFFERS at journal position {again['differs_at']}")
        click.echo(f"  re-executed: {again['expected']}")
        click.echo(f"  journal:     {again['found']}")
    ok = bool(result["ok"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
