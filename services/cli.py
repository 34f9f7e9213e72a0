"""The `carbonx` command line (click).

Every command takes the store's URL from `--db` or `CARBONX_DATABASE_URL` (default: the
embedded SQLite file `./data/carbonx.db`).
"""

from __future__ import annotations

import sys

import click

from infra.store import DEFAULT_URL, open_store

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
@click.version_option("0.1.0", prog_name="carbonx")
def main() -> None:
    """carbonx: carbon-credit registry, exchange and settlement, event-sourced."""


@main.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--kafka",
    envvar="CARBONX_KAFKA_BOOTSTRAP",
    default=None,
    help="Kafka bootstrap HOST:PORT (env CARBONX_KAFKA_BOOTSTRAP). Accepted and "
    "recorded; the relay that uses it is not built yet.",
)
@click.option(
    "--calendar",
    envvar="CARBONX_CALENDAR",
    type=click.Choice(["cn-ets", "always"]),
    default="cn-ets",
    show_default=True,
    help="Trading calendar (env CARBONX_CALENDAR); --demo implies 'always'.",
)
@click.option("--demo", is_flag=True, help="Demo settings: always-open calendar.")
def serve(db_url: str, host: str, port: int, kafka: str | None, calendar: str, demo: bool) -> None:
    """Run the all-in-one process: the HTTP gateway over the store.

    Today it serves /healthz, /readyz and the OpenAPI docs; the engine, projections
    and relay join this process as they are built.
    """
    import uvicorn

    from services.gateway.app import create_app

    if demo:
        calendar = "always"
    store = open_store(db_url)
    app = create_app(store)
    app.state.calendar = calendar
    app.state.kafka = kafka
    click.echo(f"carbonx serving on http://{host}:{port} (store: {db_url}, calendar: {calendar})")
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        store.close()


@main.command()
@db_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def verify(db_url: str, quiet: bool) -> None:
    """Check the hash chains of the intake log and the journal.

    Exit status 0 when every chain is whole; 1 otherwise, naming the first broken
    position and why. (Re-running the engine over the intake log joins this command
    with the engine.)
    """
    from tqdm import tqdm

    ok = True
    with open_store(db_url) as store:
        for name, log in store.logs.items():
            total, _ = log.head()
            with tqdm(
                total=total, desc=f"{name}", unit="ev", disable=quiet or None, file=sys.stderr
            ) as bar:
                report = log.verify(progress=bar.update)
            if report.ok:
                click.echo(f"{name}: ok, {report.events} events, head {report.head_hash}")
            else:
                ok = False
                click.echo(
                    f"{name}: BROKEN at position {report.broken_at}: {report.reason} "
                    f"({report.events} events verified before it)"
                )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
