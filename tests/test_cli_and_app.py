"""The processes a user starts: `carbonx serve` answers, `carbonx verify` judges the chain."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
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


def test_cli_and_openapi_report_the_installed_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    installed = version("carbonx")
    shown = CliRunner().invoke(main, ["--version"])
    assert shown.exit_code == 0 and shown.output.strip() == f"carbonx, version {installed}"
    with open_store(f"sqlite:///{tmp_path}/x.db") as store, TestClient(create_app(store)) as client:
        assert client.get("/openapi.json").json()["info"]["version"] == installed


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


class _Serving:
    """A `carbonx serve` child process on a free port, with its output collected."""

    def __init__(self, cwd: Path, *options: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "--demo", "--port", str(self.port),
             *options],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.lines: list[str] = []
        process = self.process
        threading.Thread(
            target=lambda: self.lines.extend(line.decode() for line in process.stdout or []),
            daemon=True,
        ).start()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "serve did not come up in 30 s"
            time.sleep(0.1)

    def token(self, role: str, enterprise: str) -> dict[str, str]:
        (token,) = [ln.split()[-1] for ln in self.lines if ln.split()[:2] == [role, enterprise]]
        return {"Authorization": f"Bearer {token}"}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=15)


def _order(enterprise: str, coid: str, side: str, quantity: int, price: int) -> dict[str, object]:
    return {"client_order_id": coid, "enterprise_id": enterprise, "instrument": "HCC-2025",
            "side": side, "type": "limit", "quantity": quantity, "price": price}  # fmt: skip


def test_serve_process_answers_healthz_on_a_fresh_data_dir(tmp_path: Path) -> None:
    """What `make run` does, minus the install: a real process on a real port."""
    serving = _Serving(tmp_path)
    try:
        serving.wait_ready()
        base = serving.base
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").json()["ready"] is True
        assert (tmp_path / "data" / "carbonx.db").exists()
        # The demo prints a token per role: a trader's works, the dashboard is served.
        headers = serving.token("trader", "E-DEMO-1")
        assert httpx.get(f"{base}/v1/me", headers=headers).json() == {
            "role": "trader", "enterprise_id": "E-DEMO-1"}  # fmt: skip
        order = _order("E-DEMO-1", "first", "sell", 5, 6_000)
        placed = httpx.post(f"{base}/v1/orders", json=order, headers=headers, timeout=15)
        assert placed.status_code == 201 and placed.json()["status"] == "open", placed.text
        assert "<html" in httpx.get(f"{base}/").text.lower()
    finally:
        serving.stop()


def test_serve_with_http_worker_processes(store_url: str, tmp_path: Path) -> None:
    """`serve --workers 3`: three gateway processes share the port, the engine stays in
    the parent and the projector runs as a child process; orders sent to any worker meet
    in one book, and each request still waits for its own result (projected by the
    child, which is restarted when it dies and stopped with the server)."""
    serving = _Serving(tmp_path, "--workers", "3", "--db", store_url)
    try:
        serving.wait_ready()
        children = _children(serving.process.pid)
        assert len(children) >= 4, children  # the workers and the projector (plus helpers)
        seller, buyer = serving.token("trader", "E-DEMO-1"), serving.token("trader", "E-DEMO-2")
        # Many requests over fresh connections, so that every worker takes some.
        sells = [
            httpx.post(f"{serving.base}/v1/orders", headers=seller, timeout=15,
                       json=_order("E-DEMO-1", f"s{i}", "sell", 2, 6_000 + i))
            for i in range(12)
        ]  # fmt: skip
        assert all(r.status_code == 201 and r.json()["status"] == "open" for r in sells)
        batch = {"orders": [_order("E-DEMO-2", "b", "buy", 24, 6_011)]}
        url = f"{serving.base}/v1/orders/batch"
        bought = httpx.post(url, headers=buyer, json=batch, timeout=15)
        assert bought.status_code == 201, bought.text
        (order,) = bought.json()["orders"]
        assert order["status"] == "filled"
        assert [f["price"] for f in order["fills"]] == [6_000 + i for i in range(12)]
        book = httpx.get(f"{serving.base}/v1/markets/HCC-2025/book", headers=buyer).json()
        assert book["asks"] == []
        # Connections opened all at once (a client's pool) are shared out among the
        # workers, each of which has a listening socket of its own.
        pool = [socket.create_connection(("127.0.0.1", serving.port)) for _ in range(16)]
        try:
            for conn in pool:  # all connected before any request: one burst of accepts
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: carbonx\r\n\r\n")
            assert all(conn.recv(4096).startswith(b"HTTP/1.1 200") for conn in pool)
            serving_workers = _pids_serving(serving.port, _children(serving.process.pid))
        finally:
            for conn in pool:
                conn.close()
        assert len(serving_workers) >= 2, serving_workers
        # Because each worker listens on a socket of its own (not one shared socket,
        # which lets whichever worker is idle at the moment take a whole burst).
        listening = _sockets_on(serving.port, _LISTEN, _children(serving.process.pid))
        assert len(listening) == 3, listening
        assert len(set().union(*listening.values())) == 3, listening
        # The projector is a child of its own; killed, it is replaced, and orders wait
        # for the replacement to project them.
        (projector,) = [pid for pid in children if "projector" in _cmdline(pid)]
        os.kill(int(projector), signal.SIGKILL)
        again = httpx.post(f"{serving.base}/v1/orders", headers=seller, timeout=20,
                           json=_order("E-DEMO-1", "after", "sell", 1, 6_100))  # fmt: skip
        assert again.status_code == 201 and again.json()["status"] == "open", again.text
        (replacement,) = [
            pid for pid in _children(serving.process.pid) if "projector" in _cmdline(pid)
        ]
        assert replacement != projector
    finally:
        serving.stop()
    assert serving.process.returncode is not None
    assert not Path(f"/proc/{replacement}").exists() or "projector" not in _cmdline(replacement)


_ESTABLISHED, _LISTEN = "01", "0A"


def _pids_serving(port: int, pids: list[str]) -> set[str]:
    """Which of `pids` hold an established TCP connection on local `port`."""
    return set(_sockets_on(port, _ESTABLISHED, pids))


def _sockets_on(port: int, state: str, pids: list[str]) -> dict[str, set[str]]:
    """The TCP sockets (inodes) on local `port` in `state` that each of `pids` holds
    (Linux /proc), for the pids holding any."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.add(fields[9])
    held: dict[str, set[str]] = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(FileNotFoundError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        held.setdefault(pid, set()).add(target[8:-1])
    return held


def _children(pid: int) -> list[str]:
    """The child processes of `pid`, whichever of its threads started them."""
    return [c for task in Path(f"/proc/{pid}/task").iterdir() for c in _read(task / "children")]


def _read(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:  # a thread that ended meanwhile
        return []


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


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


def test_audit_commands_refuse_a_store_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "carbonx.db"
    url = f"sqlite:///{missing}"
    for args in (
        ["verify", "--db", url, "--quiet"],
        ["replay", "--db", url, "--as-of", "1"],
        ["export", "--db", url, "--period", "2025", "--out", str(tmp_path / "out")],
    ):
        answer = CliRunner().invoke(main, args)
        assert answer.exit_code == 2, (args, answer.output)
        assert f"no store at {missing}" in answer.output
    assert not missing.parent.exists()  # nothing was created on the way
