"""Liveness, readiness, metrics; and who the caller is."""

from __future__ import annotations

import socket
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from projections.projector import tracking_positions
from services.exchange.runner import ENGINE_READER
from services.gateway.auth import Principal, principal
from services.gateway.context import Gateway, gateway
from services.gateway.requests import OrjsonRoute
from services.gateway.responses import OrjsonResponse
from services.gateway.routes.common import ERRORS, json

__all__ = ["MAX_ENGINE_LAG", "router"]

router = APIRouter(tags=["operations"], route_class=OrjsonRoute)
Ctx = Annotated[Gateway, Depends(gateway)]

#: /readyz reports the engine as not caught up beyond this many unprocessed commands.
MAX_ENGINE_LAG = 1_000


def _broker_reachable(bootstrap: str, timeout: float = 0.5) -> str | None:
    """None when some bootstrap server accepts a TCP connection, else the last error."""
    error = "no bootstrap server given"
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                return None
        except (OSError, ValueError) as failure:
            error = f"{server.strip()}: {failure}"
    return error


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (no dependency is checked)."""
    return {"status": "ok"}


def _checks(ctx: Gateway, kafka: str | None) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    store = ctx.store
    try:
        intake, _ = store.intake.head()
        journal, _ = store.journal.head()
        consumed = store.journal.tracking(ENGINE_READER)
        projected = tracking_positions(store.sql)
    except Exception as error:  # any failure to reach the store means "not ready"
        checks["store"] = {"ok": False, "error": str(error)}
    else:
        checks["store"] = {
            "ok": True,
            "backend": store.backend,
            "intake_position": intake,
            "journal_position": journal,
        }
        lag = intake - consumed
        checks["engine"] = {"ok": lag <= MAX_ENGINE_LAG, "consumed_position": consumed, "lag": lag}
        reached = min(projected.values()) if projected else 0
        checks["projections"] = {
            "ok": journal - reached <= MAX_ENGINE_LAG,
            "position": reached,
            "lag": journal - reached,
        }
    if kafka:
        problem = _broker_reachable(kafka)
        checks["kafka"] = {"ok": problem is None, "bootstrap": kafka}
        if problem:
            checks["kafka"]["error"] = problem
    return checks


@router.get("/readyz")
async def readyz(request: Request, ctx: Ctx) -> OrjsonResponse:
    """Ready to serve: the store answers, the engine and the projections keep up, the
    broker (when configured) accepts connections. 503 names the dependency that does not."""
    checks = await run_in_threadpool(_checks, ctx, request.app.state.kafka)
    ready = all(check["ok"] for check in checks.values())
    return OrjsonResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/me", tags=["auth"], responses=ERRORS)
async def me(caller: Annotated[Principal, Depends(principal)]) -> Response:
    """The caller's role and, for traders and viewers, enterprise."""
    return json({"role": caller.role, "enterprise_id": caller.enterprise_id})
