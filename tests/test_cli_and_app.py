"""The processes a user starts: `carbonx serve` answers, `carbonx verify` judges the chain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "serve did not come up in 30 s"
                time.sleep(0.1)
        assert response.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["ready"] is True
        assert (tmp_path / "data" / "carbonx.db").exists()
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
