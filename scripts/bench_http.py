"""Benchmark: orders through HTTP against `carbonx serve`, on SQLite and PostgreSQL.

The headline run: `--batch-clients` concurrent clients (asyncio + aiohttp, keep-alive,
one request in flight each) place N limit orders, `--batch` orders per request (`POST
/v1/orders/batch`), and cancel the resting fifth of each batch in one request (`POST
/v1/orders/cancel`). Every request waits for the engine's results (the default), so a
request's latency is each of its orders' submit → engine → projections → answer.
Figures: orders/s, and p50/p99 over all requests, both kinds.

The clients trade for two demo enterprises, a seller and a buyer as in the pilot (one
under its quota, one over it): bids 5,990-6,010 fen, asks 6,000-6,020, so that some of
the orders fill (24-30% in session 9's runs), none meets its own enterprise's (which self-trade
prevention would cancel) and no credits bought are offered again the same day (which
the T+1 resale rule refuses). Before the runs the operator and the regulator fund them
through the API, enough for every order to fill: every order placed is the engine's
real work, and the figures count how they came out (`*_rejected` must be 0).

A second run (unless `--single 0`) places orders one per request (`POST /v1/orders`,
`--clients` clients) and cancels every fifth that rests (`DELETE /v1/orders/{id}`):
the same figures as `single_*`. The baseline, measured in the same run against the same
server, is `GET /healthz`: the HTTP stack's own request rate, the ceiling for any
one-request-per-order client. Clients and server share this machine's cores, which
the figures include. PostgreSQL runs durable (fsync and synchronous commit on), as in
`bench_engine.py`: a commit waits for the disk. It starts with the run's WAL segments
already created and recycled, as a server in service has them
(`PostgresServer(recycled_wal_segments=…)`): on a fresh cluster every 16 MB of WAL
(~0.7 s of this run) stalls every commit while PostgreSQL zero-fills the next segment.

The last line is one JSON object with the figures: `sqlite_orders_per_s` and
`postgres_orders_per_s` from the headline run, `p50_ms` and `p99_ms` the worse of the
two backends' (each backend's own as `sqlite_p99_ms` etc.), and the `single_*` figures.

    python scripts/bench_http.py [--n 15000] [--batch 100] [--batch-clients 2]
        [--single N/5] [--clients 32] [--workers 2] [--fresh-wal]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from infra.servers import WAL_SEGMENT_MB, PostgresServer, free_port
from scripts.processes import ROOT

#: The demo zone's enterprises in the runs: a seller and a buyer, as in the pilot (an
#: enterprise under its quota sells its surplus; one over it buys), so that no order
#: meets its own enterprise's (self-trade prevention cancels it) and no credits bought
#: are offered again the same day (refused: T+1 on resale).
SELLER, BUYER = "E-DEMO-3", "E-DEMO-2"
#: Prices around the reference (6,000 fen): bids 5,990-6,010, asks 6,000-6,020.
BID, ASK = 5_990, 6_000
#: Bytes of WAL to allow per order placed, with room to spare (measured: ~5.2 KB, all
#: writes of the default run included).
_WAL_PER_ORDER = 8 << 10


def _token(db: str, role: str, enterprise: str | None = None) -> str:
    owner = ["--enterprise", enterprise] if enterprise else []
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "token", "create", "--db", db,
         "--role", role, *owner],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


async def _fund(base: str, db: str, orders: int) -> None:
    """Credits for the seller and cash for the buyer enough for `orders` orders of each
    side to fill, so that no order of the runs is refused for want of either."""
    operator, regulator = _token(db, "operator"), _token(db, "regulator")
    async with aiohttp.ClientSession(base) as client:
        for path, token, body in (
            ("/v1/cash/deposits", operator, {"enterprise_id": BUYER, "amount": orders * 5 * 6_100}),
            ("/v1/credits/issuances", regulator, {
                "enterprise_id": SELLER, "instrument": "HCC-2025", "quantity": orders * 5,
                "reason": "benchmark allocation"}),
        ):  # fmt: skip
            headers = {"Authorization": f"Bearer {token}"}
            async with client.post(path, headers=headers, json=body) as response:
                assert response.status in (200, 201), await response.text()


def _serve(db: str, port: int, workers: int = 1) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "--demo", "--db", db,
         "--port", str(port), "--workers", str(workers)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def _wait_ready(base: str) -> None:
    async with aiohttp.ClientSession(base) as client:
        for _ in range(300):
            try:
                async with client.get("/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready")


def _session(base: str, clients: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    return aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(30))


async def _healthz_rate(base: str, clients: int, n: int) -> float:
    counter = itertools.count()

    async def worker(client: aiohttp.ClientSession) -> None:
        while next(counter) < n:
            async with client.get("/healthz") as response:
                await response.read()
                assert response.status == 200

    async with _session(base, clients) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        return n / (time.perf_counter() - started)


def _order_body(run_id: str, number: int, eid: str) -> dict[str, Any]:
    side = "sell" if eid == SELLER else "buy"
    price = (ASK if side == "sell" else BID) + number % 5 * 5
    return {"client_order_id": f"{run_id}-{number}", "enterprise_id": eid,
            "instrument": "HCC-2025", "side": side, "type": "limit",
            "quantity": 1 + number % 5, "price": price, "time_in_force": "gtc"}  # fmt: skip


class _Run:
    """One timed run: every waiting request's latency and status, and the clients."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        #: How the placed orders came out (open, filled, rejected …), as answered.
        self.orders: dict[str, int] = {}

    def placed(self, orders: list[dict[str, Any]]) -> None:
        for order in orders:
            self.orders[order["status"]] = self.orders.get(order["status"], 0) + 1

    async def post(
        self, client: aiohttp.ClientSession, path: str, headers: dict[str, str], **body: Any
    ) -> tuple[int, bytes]:
        """POST and wait for the answer, timed; (status, body)."""
        started = time.perf_counter()
        async with client.post(path, headers=headers, **body) as response:
            payload = await response.read()
            status = response.status
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return status, payload

    async def drive(
        self,
        base: str,
        clients: int,
        worker: Callable[[aiohttp.ClientSession, int], Awaitable[None]],
        orders: int,
    ) -> dict[str, Any]:
        """Run `clients` workers to the end; the figures for `orders` placed."""
        async with _session(base, clients) as client:
            started = time.perf_counter()
            await asyncio.gather(*(worker(client, i) for i in range(clients)))
            elapsed = time.perf_counter() - started
        self.latencies.sort()
        return {
            "orders_per_s": orders / elapsed,
            "p50_ms": statistics.median(self.latencies) * 1_000,
            "p99_ms": self.latencies[max(0, int(len(self.latencies) * 0.99) - 1)] * 1_000,
            "statuses": self.statuses,
            "orders": self.orders,
        }


async def _batches(
    base: str, tokens: dict[str, str], clients: int, n: int, size: int
) -> dict[str, Any]:
    """Clients placing `size` orders per request through `POST /v1/orders/batch` and
    cancelling the resting fifth of them through `POST /v1/orders/cancel` (a seller
    and a buyer in turn); latencies are per request, both kinds."""
    counter = itertools.count()
    run_id = f"b{time.monotonic_ns()}"
    timed = _Run()

    async def worker(client: aiohttp.ClientSession, index: int) -> None:
        eid = (SELLER, BUYER)[index % 2]
        headers = {"Authorization": f"Bearer {tokens[eid]}", "Content-Type": "application/json"}
        while (batch := next(counter)) * size < n:
            orders = [_order_body(run_id, batch * size + i, eid) for i in range(size)]
            body = orjson.dumps({"orders": orders})  # what a client quoting in bulk would use
            status, payload = await timed.post(client, "/v1/orders/batch", headers, data=body)
            if status != 201:
                continue
            # As the single-order run does: cancel every fifth order if it still rests,
            # all of them in one request (POST /v1/orders/cancel).
            placed = orjson.loads(payload)["orders"]
            timed.placed(placed)
            resting = [
                o["order_id"] for o in placed[::5] if o["status"] in ("open", "partially_filled")
            ]
            if resting:
                cancel = orjson.dumps({"order_ids": resting})
                await timed.post(client, "/v1/orders/cancel", headers, data=cancel)

    return await timed.drive(base, clients, worker, n)


async def _orders(base: str, tokens: dict[str, str], clients: int, n: int) -> dict[str, Any]:
    counter = itertools.count()
    run_id = f"r{time.monotonic_ns()}"
    timed = _Run()

    async def worker(client: aiohttp.ClientSession, index: int) -> None:
        eid = (SELLER, BUYER)[index % 2]
        headers = {"Authorization": f"Bearer {tokens[eid]}"}
        while (number := next(counter)) < n:
            body = _order_body(run_id, number, eid)
            status, payload = await timed.post(client, "/v1/orders", headers, json=body)
            order = orjson.loads(payload)
            timed.placed([order if status == 201 else {"status": f"http {status}"}])
            resting = status == 201 and order["status"] in ("open", "partially_filled")
            if resting and number % 5 == 0:
                path = f"/v1/orders/{order['order_id']}"
                async with client.delete(path, headers=headers) as cancelled:
                    await cancelled.read()

    return await timed.drive(base, clients, worker, n)


def run(db: str, args: argparse.Namespace) -> dict[str, Any]:
    tokens = {eid: _token(db, "trader", eid) for eid in (SELLER, BUYER)}
    port = free_port()
    server = _serve(db, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait_ready(base))
        asyncio.run(_fund(base, db, 200 + args.n + args.single))
        asyncio.run(_orders(base, tokens, args.clients, 200))  # warm up
        figures = asyncio.run(_batches(base, tokens, args.batch_clients, args.n, args.batch))
        figures["healthz_per_s"] = asyncio.run(_healthz_rate(base, args.clients, 3_000))
        if args.single:
            figures["single"] = asyncio.run(_orders(base, tokens, args.clients, args.single))
    finally:
        server.terminate()
        server.wait(timeout=20)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=int, default=15_000, help="orders per backend in the headline (batch) run"
    )
    parser.add_argument(
        "--batch", type=int, default=100,
        help="orders per request in the headline run (POST /v1/orders/batch)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-clients", type=int, default=2,
        help="concurrent clients in the headline run (each has one request in flight)",
    )  # fmt: skip
    parser.add_argument(
        "--single", type=int, default=None,
        help="orders per backend placed one per request (default N/5; 0 skips that run)",
    )  # fmt: skip
    parser.add_argument(
        "--clients", type=int, default=32,
        help="concurrent clients of the one-order-per-request run and of /healthz",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=2, help="HTTP worker processes of `carbonx serve`"
    )
    parser.add_argument(
        "--fresh-wal", action="store_true",
        help="run PostgreSQL on a fresh cluster's WAL, creating each segment as it fills "
        "(by default the run's segments are created and recycled first, as in service)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.single is None:
        args.single = args.n // 5
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run(f"sqlite:///{tmp}/bench.db", args)
    orders = args.n + args.single + 200  # with the warm-up's
    segment = WAL_SEGMENT_MB << 20
    segments = 0 if args.fresh_wal else -(-orders * _WAL_PER_ORDER // segment) + 2
    # Commits wait for the disk, and the WAL is recycled, as in use.
    with PostgresServer(durable=True, recycled_wal_segments=segments) as server:
        results["postgres"] = run(server.url, args)
    for backend, r in results.items():
        print(f"{backend}, {args.batch} orders per request, {args.batch_clients} clients: "
              f"{r['orders_per_s']:,.0f} orders/s (request p50 {r['p50_ms']:.1f} ms, "
              f"p99 {r['p99_ms']:.1f} ms; HTTP statuses {r['statuses']}; "
              f"orders {r['orders']})")  # fmt: skip
        if "single" in r:
            s = r["single"]
            print(f"{backend}, one order per request, {args.clients} clients: "
                  f"{s['orders_per_s']:,.0f} orders/s (p50 {s['p50_ms']:.1f} ms, "
                  f"p99 {s['p99_ms']:.1f} ms; orders {s['orders']}); /healthz "
                  f"{r['healthz_per_s']:,.0f} req/s, ratio "
                  f"{s['orders_per_s'] / r['healthz_per_s']:.2f}")  # fmt: skip
    figures: dict[str, Any] = {
        "sqlite_orders_per_s": round(results["sqlite"]["orders_per_s"]),
        "postgres_orders_per_s": round(results["postgres"]["orders_per_s"]),
        "p50_ms": round(max(r["p50_ms"] for r in results.values()), 1),
        "p99_ms": round(max(r["p99_ms"] for r in results.values()), 1),
        "batch_size": args.batch,
        "batch_clients": args.batch_clients,
        "workers": args.workers,
    }
    for backend, r in results.items():
        figures[f"{backend}_p50_ms"] = round(r["p50_ms"], 1)
        figures[f"{backend}_p99_ms"] = round(r["p99_ms"], 1)
        figures[f"{backend}_healthz_per_s"] = round(r["healthz_per_s"])
        figures[f"{backend}_rejected"] = r["orders"].get("rejected", 0)
    if args.single:
        for backend, r in results.items():
            figures[f"single_{backend}_orders_per_s"] = round(r["single"]["orders_per_s"])
        singles = [r["single"] for r in results.values()]
        figures["single_p50_ms"] = round(max(s["p50_ms"] for s in singles), 1)
        figures["single_p99_ms"] = round(max(s["p99_ms"] for s in singles), 1)
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
