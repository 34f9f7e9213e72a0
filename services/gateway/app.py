"""The FastAPI application.

The app is built around an already opened store, so the same code serves the
all-in-one process (`carbonx serve`), tests (which hand it a store on a throwaway
database) and the scaled-out gateway (`carbonx gateway`, commands over Kafka).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from infra.store import Store
from projections import all_projections
from projections.projector import ensure_tables
from services.exchange.config import EngineConfig
from services.exchange.kafka_intake import KafkaCommandSender
from services.gateway.auth import TOKENS, TokenCache
from services.gateway.context import Gateway
from services.gateway.idempotency import IDEMPOTENCY
from services.gateway.metrics import Metrics
from services.gateway.problems import install_problem_handlers
from services.gateway.responses import OrjsonResponse
from services.gateway.routes import (
    accounts,
    audit,
    blocks,
    live,
    market,
    operations,
    orders,
    registry,
)
from services.gateway.routes.blocks import BLOCK_TRADES
from services.gateway.submit import IntakeBatcher, OutcomeWatcher
from services.version import VERSION

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"

DESCRIPTION = """
Carbon-credit registry, exchange and settlement for an industrial zone's pilot.

Every write is a command on an append-only, hash-chained log; every read is a
projection of it. Amounts are integers: prices in fen per tonne, quantities in tonnes,
cash in fen. Authenticate with `Authorization: Bearer TOKEN` (the event stream,
`GET /v1/stream`, also takes `?access_token=` for EventSource); writes accept an
`Idempotency-Key` header. Errors are `application/problem+json`.
"""


class _Measured:
    """Adapter: Starlette builds middleware from a class and keyword arguments."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = metrics.middleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def create_app(
    store: Store,
    config: EngineConfig | None = None,
    kafka: str | None = None,
    commands_over_kafka: bool = False,
    wait_timeout: float = 10.0,
) -> FastAPI:
    """The API over `store`. `kafka` is the broker /readyz checks; with
    `commands_over_kafka`, commands go to its command topic instead of the store's intake
    log (the scaled-out gateway)."""
    ensure_tables(
        store.sql,
        [TOKENS, IDEMPOTENCY, BLOCK_TRADES, *(t for p in all_projections() for t in p.tables)],
    )
    sender = KafkaCommandSender(kafka) if kafka and commands_over_kafka else None
    context = Gateway(
        store=store,
        config=config or EngineConfig(),
        tokens=TokenCache(store.sql),
        batcher=None if sender else IntakeBatcher(store),
        watcher=OutcomeWatcher(store),
        sender=sender,
        wait_timeout=wait_timeout,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context.watcher.start()
        if context.batcher is not None:
            context.batcher.start()
        yield
        context.watcher.close()
        if context.batcher is not None:
            context.batcher.close()
        if sender is not None:
            sender.close()

    app = FastAPI(
        lifespan=lifespan,
        title="carbonx",
        version=VERSION,
        summary="Carbon-credit registry, exchange and settlement",
        description=DESCRIPTION,
        default_response_class=OrjsonResponse,
    )
    app.state.store = store
    app.state.kafka = kafka
    app.state.gateway = context
    app.state.tokens = context.tokens
    app.state.metrics = Metrics(store)
    app.add_middleware(_Measured, metrics=app.state.metrics)
    install_problem_handlers(app)
    # Most frequent first: routes are matched in this order.
    for module in (orders, market, accounts, operations, live, registry, blocks, audit):
        app.include_router(module.router)

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        def dashboard() -> FileResponse:
            return FileResponse(STATIC / "index.html")

    return app
