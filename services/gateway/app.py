"""The FastAPI application.

The app is built around an already opened store, so the same code serves the
all-in-one process (`carbonx serve`), tests (which hand it a store on a throwaway
database) and, later, the scaled-out gateway.
"""

from __future__ import annotations

import socket
from typing import Any

from fastapi import FastAPI

from infra.store import Store
from services.exchange.runner import ENGINE_READER
from services.gateway.responses import OrjsonResponse

__all__ = ["create_app"]


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


def create_app(store: Store, kafka: str | None = None) -> FastAPI:
    app = FastAPI(
        title="carbonx",
        version="0.1.0",
        summary="Carbon-credit registry, exchange and settlement",
        default_response_class=OrjsonResponse,
    )
    app.state.store = store

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is alive (no dependency is checked)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> OrjsonResponse:
        """Ready to serve: the store answers, the engine keeps up, the broker (when
        configured) accepts connections. 503 names the dependency that does not."""
        checks: dict[str, Any] = {}
        try:
            intake, _ = store.intake.head()
            journal, _ = store.journal.head()
            consumed = store.journal.tracking(ENGINE_READER)
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
            checks["engine"] = {
                "ok": lag <= MAX_ENGINE_LAG,
                "consumed_position": consumed,
                "lag": lag,
            }
        if kafka:
            problem = _broker_reachable(kafka)
            checks["kafka"] = {"ok": problem is None, "bootstrap": kafka}
            if problem:
                checks["kafka"]["error"] = problem
        ready = all(check["ok"] for check in checks.values())
        return OrjsonResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return app
