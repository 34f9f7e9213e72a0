"""The processes a user starts: `carbonx serve` answers, `carbonx verify` judges the chain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from click.testing import CliRunner
from fastapi.testclient import TestClient
from rawsql import delete_journal_entry

from events import commands as c
from events.base import Event
from infra.servers import free_port
from infra.store import open_store
from services.cli import main
from services.exchange.intake import Intake
from services.exchange.runner import EngineRunner
from services.gateway.app import create_app


def _fill(url: str, n: int) -> None:
    """n deposits through intake and engine: n+1 commands, n+1 journal events."""
    with open_store(url) as store:
        commands: list[tuple[Event, int]] = [(c.OpenAccount(enterprise_id="E1"), 0)]
        commands += [(c.DepositCash(enterprise_id="E1", amount=i + 1), i) for i in range(n)]
        Intake(store).submit(commands)
        runner = EngineRunner(store)
        runner.recover()
        runner.drain()


def test_readyz_reports_the_store_and_its_positions(store_url: str) -> None:
    _fill(store_url, 3)
    with open_store(store_url) as store, TestClient(create_app(store)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["ready"] is True
        assert body["checks"]["store"]["journal_position"] == 4
        assert body["checks"]["store"]["intake_position"] == 4
        assert body["checks"]["engine"] == {"ok": True, "consumed_position": 4, "lag": 0}


def test_readyz_is_503_when_the_store_is_gone(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/x.db")
    app = create_app(store)
    store.close()
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["store"]["ok"] is False


def test_verify_exit_status_follows_the_chain(store_url: str) -> None:
    _fill(store_url, 49)
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", "--db", store_url, "--quiet"])
    assert ok.exit_code == 0, ok.output
    assert "journal: ok, 50 events" in ok.output and "intake: ok, 50 events" in ok.output
    assert "re-execution: ok, 50 commands reproduced 50 journal events" in ok.output

    delete_journal_entry(store_url, 20)
    broken = runner.invoke(main, ["verify", "--db", store_url, "--quiet"])
    assert broken.exit_code == 1
    assert "journal: BROKEN at position 20" in broken.output


def test_serve_process_answers_healthz_on_a_fresh_data_dir(tmp_path: Path) -> None:
    """What `make run` does, minus the install: a real process on a real port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "--demo", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(line.decode() for line in process.stdout or []), daemon=True
    )
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, "serve did not come up in 30 s"
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        assert response.status_code == 200
        assert httpx.get(f"{base}/readyz").json()["ready"] is True
        assert (tmp_path / "data" / "carbonx.db").exists()
        # The demo prints a token per role: a trader's works, the dashboard is served.
        (trader,) = [ln.split()[-1] for ln in lines if ln.split()[:2] == ["trader", "E-DEMO-1"]]
        headers = {"Authorization": f"Bearer {trader}"}
        assert httpx.get(f"{base}/v1/me", headers=headers).json() == {
            "role": "trader", "enterprise_id": "E-DEMO-1"}  # fmt: skip
        order = {"client_order_id": "first", "enterprise_id": "E-DEMO-1", "instrument": "HCC-2025",
                 "side": "sell", "type": "limit", "quantity": 5, "price": 6_000}  # fmt: skip
        placed = httpx.post(f"{base}/v1/orders", json=order, headers=headers, timeout=15)
        assert placed.status_code == 201 and placed.json()["status"] == "open", placed.text
        assert "<html" in httpx.get(f"{base}/").text.lower()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)


def test_readyz_names_an_unreachable_broker(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    with open_store(f"sqlite:///{tmp_path}/x.db") as store:
        with TestClient(create_app(store, kafka=broker.bootstrap)) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["kafka"]["ok"]
            broker.stop()
            down = client.get("/readyz")
        assert down.status_code == 503
        checks = down.json()["checks"]
        assert checks["kafka"]["ok"] is False and checks["store"]["ok"] is True
        assert broker.bootstrap in checks["kafka"]["error"]


def test_token_create_prints_a_working_token_alone_on_its_last_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    runner = CliRunner()
    made = runner.invoke(main, ["token", "create", "--db", url, "--role", "viewer",
                                "--enterprise", "E1"])  # fmt: skip
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    with open_store(url) as store, TestClient(create_app(store)) as client:
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json() == {"role": "viewer", "enterprise_id": "E1"}
        stored = store.sql.query("SELECT token_hash FROM api_tokens")
        assert token not in str(stored)  # only the hash is kept
    wrong = runner.invoke(main, ["token", "create", "--db", url, "--role", "trader"])
    assert wrong.exit_code != 0 and "--enterprise" in wrong.output


def test_logs_are_json_lines_with_request_fields() -> None:
    """Structured logs: one JSON object per line, requests with method, route, status."""
    import logging

    import orjson

    from infra.logs import JsonFormatter

    record = logging.LogRecord("carbonx.http", logging.INFO, __file__, 1, "%s %s", ("GET", "/x"),
                               None)  # fmt: skip
    record.fields = {"route": "/x", "status": 200, "ms": 1.5}
    line = orjson.loads(JsonFormatter().format(record))
    assert line["msg"] == "GET /x" and line["status"] == 200 and line["logger"] == "carbonx.http"
    assert line["level"] == "info" and line["ts"].endswith("+00:00")
