"""Prometheus metrics (the standard client library, one registry per app).

Request counts and latency histograms are measured by a middleware in this process.
Business figures (orders by status, trades, rejections by reason, engine and projector
lag) are read from the store at scrape time, so every gateway process reports the same
truth whichever process did the work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.store import Store
from projections.projector import tracking_positions
from services.exchange.runner import ENGINE_READER

__all__ = ["Metrics"]

#: One structured line per request (method, route, path, status, ms).
access = logging.getLogger("carbonx.http")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        db = self.store.sql
        try:
            intake, _ = self.store.intake.head()
            journal, _ = self.store.journal.head()
            consumed = self.store.journal.tracking(ENGINE_READER)
            projected = tracking_positions(db)
            statuses = db.query("SELECT status, COUNT(*) FROM rm_orders GROUP BY status")
            reasons = db.query(
                "SELECT reject_reason, COUNT(*) FROM rm_outcomes "
                "WHERE reject_reason IS NOT NULL GROUP BY reject_reason"
            )
            trades = db.query("SELECT COUNT(*), COALESCE(SUM(quantity), 0) FROM rm_trades")
        except Exception:  # the store is down: /readyz says so; report nothing stale
            return
        gauge = GaugeMetricFamily("carbonx_log_position", "Head position of a log", labels=["log"])
        gauge.add_metric(["intake"], intake)
        gauge.add_metric(["journal"], journal)
        yield gauge
        lag = GaugeMetricFamily("carbonx_engine_lag_commands", "Commands not yet processed")
        lag.add_metric([], intake - consumed)
        yield lag
        behind = GaugeMetricFamily(
            "carbonx_projection_lag_events", "Journal entries a projection has not applied",
            labels=["projection"],
        )  # fmt: skip
        for name, position in sorted(projected.items()):
            behind.add_metric([name], journal - position)
        yield behind
        orders = CounterMetricFamily(
            "carbonx_orders", "Orders by current status", labels=["status"]
        )
        for status, count in sorted(statuses):
            orders.add_metric([status], count)
        yield orders
        rejections = CounterMetricFamily(
            "carbonx_rejections", "Commands the engine refused, by reason", labels=["reason"]
        )
        for reason, count in sorted(reasons):
            rejections.add_metric([reason], count)
        yield rejections
        count, volume = trades[0]
        yield CounterMetricFamily("carbonx_trades", "Trades executed", value=int(count))
        yield CounterMetricFamily("carbonx_traded_tonnes", "Tonnes traded", value=int(volume))


class Metrics:
    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "carbonx_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "carbonx_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(store))

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request):
        count every response by route template and status, time it to the response
        start (a stream's duration is not a latency)."""

        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    route = scope.get("route")
                    path = getattr(route, "path", "unmatched")
                    method = scope["method"]
                    elapsed = time.perf_counter() - started
                    status = message["status"]
                    self.latency.labels(method, path).observe(elapsed)
                    self.requests.labels(method, path, str(status)).inc()
                    if access.isEnabledFor(logging.INFO):
                        access.info(
                            "%s %s %s",
                            method,
                            scope["path"],
                            status,
                            extra={"fields": {"method": method, "route": path,
                                              "path": scope["path"], "status": status,
                                              "ms": round(elapsed * 1_000, 2)}},
                        )  # fmt: skip
                await send(message)

            await app(scope, receive, sending)

        return measured
