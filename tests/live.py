"""A whole carbonx in one test process: store, engine, projector, HTTP app, tokens.

The same pieces `carbonx serve` runs, on a real store, with no mocks; a fixed clock for
command times keeps runs comparable.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi.testclient import TestClient

from infra.store import Store, open_store
from projections import all_projections
from projections.projector import Projector, wait_for_projections
from services.demo import DEMO_ENTERPRISES, seed_demo
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.runner import ENGINE_READER, EngineRunner
from services.gateway.app import create_app
from services.gateway.auth import create_token

__all__ = ["Live", "http_server", "live_system"]

CONFIG = EngineConfig(calendar=ALWAYS)
#: 2025-11-25 10:00 Asia/Shanghai, then 1 ms per command.
START = 1_764_036_000_000_000


@dataclass
class Live:
    store: Store
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", **extra}

    def order(self, who: str, enterprise: str, **fields: Any) -> Any:
        body = {
            "client_order_id": fields.pop("client_order_id", f"c{next(_ids)}"),
            "enterprise_id": enterprise,
            "instrument": "HCC-2025",
            "type": "limit",
            "time_in_force": "gtc",
            **fields,
        }
        return self.client.post("/v1/orders", headers=self.headers(who), json=body)


_ids = itertools.count(1)


@contextmanager
def live_system(url: str, **app_options: Any) -> Iterator[Live]:
    store = open_store(url)
    seed_demo(store)
    stop = threading.Event()
    runner = EngineRunner(store, CONFIG, batch=500)
    projector = Projector(store, all_projections())
    threads = [
        threading.Thread(target=runner.run, args=(stop,), kwargs={"idle": 0.05}),
        threading.Thread(target=projector.run, args=(stop,), kwargs={"idle": 0.05}),
    ]
    for thread in threads:
        thread.start()
    # Start from a settled zone: the seed decided by the engine and projected.
    seeded = store.intake.head()[0]
    deadline = time.monotonic() + 30
    while store.journal.tracking(ENGINE_READER) < seeded:
        assert time.monotonic() < deadline, "the engine did not take the demo seed"
        store.wait_for_change(store.generation(), 0.05)
    assert wait_for_projections(store, store.journal.head()[0], 30)
    app = create_app(store, config=CONFIG, **app_options)
    clock = itertools.count(START + 1_000_000, 1_000)
    app.state.gateway.clock = lambda: next(clock)
    tokens = {
        "operator": create_token(store.sql, "operator"),
        "regulator": create_token(store.sql, "regulator"),
        "verifier": create_token(store.sql, "verifier"),
        "trader1": create_token(store.sql, "trader", DEMO_ENTERPRISES[0]),
        "trader2": create_token(store.sql, "trader", DEMO_ENTERPRISES[1]),
        "viewer1": create_token(store.sql, "viewer", DEMO_ENTERPRISES[0]),
    }
    try:
        with TestClient(app) as client:
            yield Live(store, client, tokens)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        store.close()


@contextmanager
def http_server(live: Live) -> Iterator[str]:
    """Serve the live app on a free loopback port from a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # The TestClient inside `live` already runs the app's lifespan; uvicorn must not
    # run (and end) it a second time.
    config = uvicorn.Config(
        live.client.app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="live-http", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"
