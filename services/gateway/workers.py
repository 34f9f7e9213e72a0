"""The HTTP tier as several worker processes: one app per process, built from settings.

One Python process serves HTTP on one core at most (the GIL), and in `carbonx serve` it
shares that core with the engine and the projector. With ``--workers N`` uvicorn starts
N processes that share the listening socket; each builds its own app here, with its own
store connections, intake writer (group commit) and outcome watcher. Nothing else needs
to be shared: the intake log orders every writer's commands, the engine answers them,
and each worker waits for the outcomes of its own requests in the read models.

uvicorn builds each worker's app from an import string, so the settings travel in the
environment (the same variables the CLI reads): ``CARBONX_DATABASE_URL``,
``CARBONX_CALENDAR``, ``CARBONX_KAFKA_BOOTSTRAP`` and ``CARBONX_COMMANDS_OVER_KAFKA``.

Each worker keeps its own Prometheus request counters and latency histograms: a scrape
reaches one worker. The business figures on /metrics are read from the store and are
the same from every worker.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI

from infra import heap
from infra.logs import configure_logging
from infra.store import open_store
from services.exchange.calendar import calendar_named
from services.exchange.config import EngineConfig
from services.gateway.app import create_app

__all__ = ["FACTORY", "app_from_environment", "worker_environment"]

#: What uvicorn imports in every worker process.
FACTORY = "services.gateway.workers:app_from_environment"


def worker_environment(
    db_url: str, calendar: str, kafka: str | None, commands_over_kafka: bool
) -> dict[str, str]:
    """The settings a worker reads, as environment variables."""
    env = {
        "CARBONX_DATABASE_URL": db_url,
        "CARBONX_CALENDAR": calendar,
        "CARBONX_COMMANDS_OVER_KAFKA": "1" if commands_over_kafka else "0",
    }
    if kafka:
        env["CARBONX_KAFKA_BOOTSTRAP"] = kafka
    return env


def app_from_environment() -> FastAPI:
    """One worker's app; its store closes when the worker shuts down."""
    configure_logging()
    store = open_store(os.environ["CARBONX_DATABASE_URL"])
    config = EngineConfig(calendar=calendar_named(os.environ.get("CARBONX_CALENDAR", "cn-ets")))
    kafka = os.environ.get("CARBONX_KAFKA_BOOTSTRAP") or None
    app = create_app(
        store,
        config=config,
        kafka=kafka,
        commands_over_kafka=bool(kafka) and os.environ.get("CARBONX_COMMANDS_OVER_KAFKA") == "1",
    )
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):
            heap.settle()  # the app is built: what lives now lives as long as the worker
            yield
        store.close()

    app.router.lifespan_context = lifespan
    return app
