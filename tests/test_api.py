"""The HTTP API against a live engine and projector on a real store (SQLite and
PostgreSQL): orders end to end, who may do what, idempotency, bad input, audit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from events.codec import decode
from events.exchange import OrderQueuingSet
from infra.store import open_store
from projections import all_projections
from projections.projector import Projector
from services.demo import seed_demo
from services.exchange.runner import EngineRunner
from services.gateway.app import create_app
from services.gateway.auth import create_token
from tests.live import CONFIG, Live, http_server, live_system

E1, E2 = "E-DEMO-1", "E-DEMO-2"


@pytest.fixture
def live(store_url: str) -> Iterator[Live]:
    with live_system(store_url) as system:
        yield system


def _balances(live: Live, who: str, eid: str) -> dict[str, Any]:
    response = live.client.get(f"/v1/enterprises/{eid}/balances", headers=live.headers(who))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_order_trades_settles_and_shows_everywhere(live: Live) -> None:
    before1, before2 = _balances(live, "trader1", E1), _balances(live, "trader2", E2)
    sell = live.order("trader1", E1, side="sell", quantity=300, price=6_000)
    assert sell.status_code == 201, sell.text
    assert sell.json()["status"] == "open"
    # The hold is visible at once (read-your-writes): 300 t held.
    assert _balances(live, "trader1", E1)["credits"]["HCC-2025"]["held"] == 300
    buy = live.order("trader2", E2, side="buy", quantity=100, price=6_100)
    assert buy.status_code == 201, buy.text
    body = buy.json()
    assert body["status"] == "filled"
    assert body["fills"] == [
        {
            "trade_id": 1,
            "position": body["fills"][0]["position"],
            "price": 6_000,  # the resting order's price
            "quantity": 100,
            "fee": 300,  # 600,000 fen × 5 bps
            "counterparty_side": "taker",
        }
    ]
    after1, after2 = _balances(live, "trader1", E1), _balances(live, "trader2", E2)
    assert after1["cash"]["available"] == before1["cash"]["available"] + 600_000 - 300
    assert after2["cash"]["available"] == before2["cash"]["available"] - 600_000 - 300
    assert after2["credits"]["HCC-2025"]["available"] == (
        before2["credits"]["HCC-2025"]["available"] + 100
    )
    assert after1["credits"]["HCC-2025"] == {
        "available": before1["credits"]["HCC-2025"]["available"] - 300,
        "held": 200,
    }
    # Book, tape, candles and the market line agree.
    book = live.client.get("/v1/markets/HCC-2025/book", headers=live.headers("viewer1")).json()
    assert book == {"symbol": "HCC-2025", "bids": [], "asks": [[6_000, 200, 1]]}
    tape = live.client.get("/v1/markets/HCC-2025/trades", headers=live.headers("verifier"))
    assert [(t["price"], t["quantity"], t["aggressor"]) for t in tape.json()["trades"]] == [
        (6_000, 100, "buy")
    ]
    assert "buyer_id" not in tape.json()["trades"][0]  # the public tape names nobody
    candles = live.client.get(
        "/v1/markets/HCC-2025/candles?interval=1m", headers=live.headers("trader1")
    ).json()["candles"]
    assert [(c["open"], c["close"], c["volume"]) for c in candles] == [(6_000, 6_000, 100)]
    market = live.client.get("/v1/markets/HCC-2025", headers=live.headers("trader1")).json()
    assert (market["last"], market["band_low"], market["band_high"]) == (6_000, 5_400, 6_600)
    # The seller's ledger shows the hold and the sale, every posting with its position.
    ledger = live.client.get(
        f"/v1/enterprises/{E1}/ledger", headers=live.headers("trader1")
    ).json()["entries"]
    assert {(e["asset"], e["bucket"], e["amount"]) for e in ledger} >= {
        ("HCC-2025", "available", -300),
        ("HCC-2025", "held", 300),
        ("HCC-2025", "held", -100),
        ("CNY", "available", 600_000 - 300),
    }


def test_an_enterprises_fills_outlast_a_page_of_newer_orders(live: Live) -> None:
    """GET /v1/enterprises/{id}/fills reads the fills themselves: 205 newer refused orders
    push the traded ones off the orders list's page of 200, not off this list."""
    sells = [live.order("trader1", E1, side="sell", quantity=5, price=6_000) for _ in range(2)]
    assert [s.status_code for s in sells] == [201, 201]
    bought = live.order("trader2", E2, side="buy", quantity=10, price=6_000).json()
    assert bought["status"] == "filled"
    batch = [{"client_order_id": f"far-{n}", "enterprise_id": E1, "instrument": "HCC-2025",
              "side": "buy", "type": "limit", "quantity": 1, "price": 1}
             for n in range(205)]  # fmt: skip
    refused = live.client.post(
        "/v1/orders/batch", headers=live.headers("trader1"), json={"orders": batch}
    )
    assert refused.status_code < 300, refused.text
    page = live.client.get(f"/v1/orders?enterprise_id={E1}", headers=live.headers("trader1"))
    assert all(o["fills"] == [] for o in page.json()["orders"])

    url = f"/v1/enterprises/{E1}/fills"
    fills = live.client.get(url, headers=live.headers("viewer1")).json()
    assert fills["enterprise_id"] == E1
    first, second = (s.json()["order_id"] for s in sells)
    trades = [f["trade_id"] for f in bought["fills"]]
    assert [(f["order_id"], f["trade_id"]) for f in fills["fills"]] == [
        (second, trades[1]), (first, trades[0])
    ]  # fmt: skip
    newest = fills["fills"][0]
    assert newest == {
        "order_id": second, "trade_id": trades[1], "position": bought["fills"][1]["position"],
        "instrument": "HCC-2025", "side": "sell", "price": 6_000, "quantity": 5,
        "fee": bought["fills"][1]["fee"], "role": "maker",
    }  # fmt: skip
    one = live.client.get(f"{url}?limit=1", headers=live.headers("trader1")).json()["fills"]
    assert [f["trade_id"] for f in one] == [trades[1]]
    older = live.client.get(f"{url}?before={trades[1]}", headers=live.headers("trader1"))
    assert [f["trade_id"] for f in older.json()["fills"]] == [trades[0]]
    # The buyer's side, and an unknown enterprise or a bad limit.
    theirs = live.client.get(f"/v1/enterprises/{E2}/fills", headers=live.headers("regulator"))
    assert [(f["side"], f["role"]) for f in theirs.json()["fills"]] == [("buy", "taker")] * 2
    unknown = live.client.get("/v1/enterprises/E-NOPE/fills", headers=live.headers("regulator"))
    assert unknown.status_code == 404
    bad = live.client.get(f"{url}?limit=0", headers=live.headers("trader1"))
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


def test_cancel_reduce_and_reprice(live: Live) -> None:
    placed = live.order("trader2", E2, side="buy", quantity=50, price=5_900).json()
    order_id = placed["order_id"]
    held = _balances(live, "trader2", E2)["cash"]["held"]
    assert held == placed["held_cash"] > 50 * 5_900
    reduced = live.client.patch(
        f"/v1/orders/{order_id}", headers=live.headers("trader2"), json={"quantity": 20}
    )
    assert reduced.status_code == 200, reduced.text
    assert reduced.json()["remaining_quantity"] == 20
    repriced = live.client.patch(
        f"/v1/orders/{order_id}", headers=live.headers("trader2"), json={"price": 5_950}
    )
    assert repriced.json()["price"] == 5_950
    both = live.client.patch(
        f"/v1/orders/{order_id}", headers=live.headers("trader2"), json={"price": 1, "quantity": 1}
    )
    assert both.status_code == 422
    cancelled = live.client.delete(f"/v1/orders/{order_id}", headers=live.headers("trader2"))
    assert cancelled.json()["status"] == "cancelled"
    assert _balances(live, "trader2", E2)["cash"]["held"] == 0
    again = live.client.delete(f"/v1/orders/{order_id}", headers=live.headers("trader2"))
    assert again.status_code == 409 and again.json()["reason"]
    listed = live.client.get("/v1/orders?status=cancelled", headers=live.headers("trader2"))
    assert [o["order_id"] for o in listed.json()["orders"]] == [order_id]


def test_engine_refusals_and_bad_input_change_nothing(live: Live) -> None:
    rejected = live.order("trader1", E1, side="sell", quantity=10, price=9_000)
    assert rejected.status_code == 422
    assert rejected.headers["content-type"] == "application/problem+json"
    assert rejected.json()["reason"] == "outside_price_band"
    assert rejected.json()["order_id"] > 0
    head = live.store.intake.head()
    for body, field in (
        ({"quantity": "10", "price": 6_000}, "quantity"),
        ({"quantity": 10, "price": 60.5}, "price"),
        ({"quantity": -1, "price": 6_000}, "quantity"),
        ({"quantity": 10}, "price"),
        ({"quantity": 10, "price": 6_000, "colour": "red"}, "colour"),
        ({"quantity": 10, "price": 6_000, "instrument": "NOPE-1"}, "instrument"),
        # PostgreSQL's text cannot hold NUL: the read models could not store the order.
        ({"quantity": 10, "price": 6_000, "client_order_id": "a\x00b"}, "client_order_id"),
    ):
        answer = live.order("trader1", E1, side="sell", **body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert field in {e["field"] for e in answer.json()["errors"]}, answer.json()
    assert live.store.intake.head() == head  # nothing was appended
    # Bodies the fast JSON parser refuses get the answer the standard one gives: an
    # integer beyond 64 bits or NaN is a field error, broken JSON a problem.
    raw = (
        b'{"client_order_id": "big", "enterprise_id": "E-DEMO-1", "instrument": "HCC-2025", '
        b'"side": "sell", "type": "limit", "time_in_force": "gtc", "price": 6000, '
    )
    for tail, field in (
        (b'"quantity": 100000000000000000000000}', "quantity"),
        (b'"quantity": NaN}', "quantity"),
        (b'"quantity": 10', "body"),  # not JSON at all: the body, not a character offset
    ):
        answer = live.client.post(
            "/v1/orders",
            content=raw + tail,
            headers=live.headers("trader1", **{"Content-Type": "application/json"}),
        )
        assert answer.status_code == 422, (tail, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert field in {e["field"] for e in answer.json()["errors"]}, answer.json()
    assert live.store.intake.head() == head
    # A used client order id is a conflict.
    live.order("trader1", E1, client_order_id="dup", side="sell", quantity=1, price=6_000)
    dup = live.order("trader1", E1, client_order_id="dup", side="sell", quantity=1, price=6_000)
    assert dup.status_code == 409


def test_idempotency_keys(live: Live) -> None:
    body = {
        "client_order_id": "idem-1",
        "enterprise_id": E2,
        "instrument": "HCC-2025",
        "side": "buy",
        "type": "limit",
        "quantity": 5,
        "price": 5_800,
    }
    headers = live.headers("trader2", **{"Idempotency-Key": "key-1"})
    first = live.client.post("/v1/orders", headers=headers, json=body)
    second = live.client.post("/v1/orders", headers=headers, json=body)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers.get("idempotent-replayed") == "true"
    mine = live.client.get("/v1/orders", headers=live.headers("trader2")).json()["orders"]
    assert [o["client_order_id"] for o in mine].count("idem-1") == 1
    other = live.client.post("/v1/orders", headers=headers, json={**body, "quantity": 6})
    assert other.status_code == 409
    # Keys belong to the caller: another trader's same key is a different request.
    deposit = {"enterprise_id": E1, "amount": 1_000}
    op = live.headers("operator", **{"Idempotency-Key": "key-1"})
    assert live.client.post("/v1/cash/deposits", headers=op, json=deposit).status_code == 201
    assert live.client.post("/v1/cash/deposits", headers=op, json=deposit).status_code == 201
    deposits = live.store.sql.query(
        "SELECT COUNT(*) FROM rm_ledger WHERE event_type = 'CashDeposited' AND amount = 1000"
    )
    assert deposits[0][0] == 1


def test_wait_false_answers_202_and_the_order_follows(live: Live) -> None:
    response = live.client.post(
        "/v1/orders?wait=false",
        headers=live.headers("trader1"),
        json={"client_order_id": "nw", "enterprise_id": E1, "instrument": "HCC-2025",
              "side": "sell", "type": "limit", "quantity": 5, "price": 6_500},
    )  # fmt: skip
    assert response.status_code == 202
    assert _order_once_projected(live, "trader1", response.json()["order_id"])["status"] == "open"


def _order_once_projected(live: Live, who: str, order_id: int) -> dict[str, Any]:
    """GET an order accepted with wait=false, as soon as the read models have it."""
    for _ in range(200):
        found = live.client.get(f"/v1/orders/{order_id}", headers=live.headers(who))
        if found.status_code == 200:
            break
        live.store.wait_for_change(live.store.generation(), 0.05)
    assert found.status_code == 200, found.text
    order: dict[str, Any] = found.json()
    return order


ROLES = ("operator", "regulator", "verifier", "trader1", "trader2", "viewer1")
EVERYONE = set(ROLES)
# Every endpoint × role: (method, path, body, roles allowed). "{order}" is an order of E1.
MATRIX: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("GET", "/v1/me", None, EVERYONE),
    ("GET", "/v1/markets", None, EVERYONE),
    ("GET", "/v1/markets/HCC-2025", None, EVERYONE),
    ("GET", "/v1/markets/HCC-2025/book", None, EVERYONE),
    ("GET", "/v1/markets/HCC-2025/trades", None, EVERYONE),
    ("GET", "/v1/markets/HCC-2025/candles?interval=1h", None, EVERYONE),
    ("GET", f"/v1/enterprises/{E1}/balances", None, {"regulator", "trader1", "viewer1"}),
    ("GET", f"/v1/enterprises/{E1}/ledger", None, {"regulator", "trader1", "viewer1"}),
    ("GET", f"/v1/enterprises/{E1}/fills", None, {"regulator", "trader1", "viewer1"}),
    ("GET", f"/v1/enterprises/{E1}", None, {"regulator", "trader1", "viewer1"}),
    ("GET", "/v1/enterprises", None, {"regulator", "operator"}),
    ("GET", "/v1/orders/{order}", None, {"regulator", "trader1", "viewer1"}),
    ("GET", f"/v1/orders?enterprise_id={E1}", None, {"regulator", "trader1", "viewer1"}),
    ("POST", "/v1/orders", {"side": "buy", "quantity": 1, "price": 5_500}, {"trader1"}),
    ("PATCH", "/v1/orders/{order}", {"quantity": 1}, {"trader1"}),
    ("POST", "/v1/orders/batch",
     {"orders": [{"client_order_id": "mb", "enterprise_id": E1, "instrument": "HCC-2025",
                  "side": "buy", "type": "limit", "quantity": 1, "price": 5_500}]},
     {"trader1"}),
    ("POST", "/v1/cash/deposits", {"enterprise_id": E1, "amount": 10}, {"operator"}),
    ("PUT", "/v1/market/queuing", {"enabled": False}, {"operator"}),
    ("POST", "/v1/cash/withdrawals", {"enterprise_id": E1, "amount": 10}, {"operator"}),
    ("POST", "/v1/credits/issuances",
     {"enterprise_id": E1, "instrument": "HCC-2025", "quantity": 5, "reason": "fix"},
     {"regulator"}),
    ("POST", "/v1/instruments", {"symbol": "HCC-2026", "vintage": 2026, "reference_price": 6_500},
     {"operator"}),
    ("POST", "/v1/retirements",
     {"enterprise_id": E1, "instrument": "HCC-2025", "quantity": 1, "beneficiary": "b",
      "reason": "r"}, {"trader1"}),
    ("GET", "/v1/audit/events?limit=5", None, {"regulator"}),
    ("GET", "/v1/audit/verify", None, {"regulator"}),
    ("GET", "/v1/audit/state?as_of=5", None, {"regulator"}),
    ("GET", "/v1/audit/surveillance", None, {"regulator"}),
    # The registry.
    ("GET", "/v1/periods", None, EVERYONE),
    ("POST", "/v1/enterprises",
     {"name": "N", "sector": "steel", "credit_code": "91340100MA2N0AAA14"},
     {"operator", "regulator"}),
    ("POST", f"/v1/enterprises/{E1}/suspend", {}, {"regulator"}),
    ("POST", f"/v1/enterprises/{E1}/reinstate", {}, {"regulator"}),
    ("POST", f"/v1/enterprises/{E1}/freeze", {"frozen": False}, {"regulator"}),
    ("PUT", f"/v1/enterprises/{E1}/position-limit", {"limit": 0}, {"regulator"}),
    ("POST", "/v1/periods", {"period": "2032"}, {"regulator"}),
    ("PUT", "/v1/periods/2032/deadline", {"deadline": "2033-12-31T00:00:00+08:00"},
     {"regulator"}),
    ("PUT", f"/v1/periods/2032/allocations/{E1}",
     {"method": "benchmark", "params": {"benchmark_t_per_unit": "0.5"}}, {"regulator"}),
    ("POST", f"/v1/enterprises/{E1}/reports",
     {"period": "2032", "output_value": 100, "energy_tce": 10,
      "sources": [{"kind": "fuel", "name": "diesel", "activity": 1, "unit": "t"}]},
     {"trader1"}),
    ("GET", f"/v1/reports/R-2032-{E1}", None, {"regulator", "verifier", "trader1", "viewer1"}),
    ("GET", "/v1/reports", None, {"regulator", "verifier", "trader1", "trader2", "viewer1"}),
    ("POST", f"/v1/reports/R-2032-{E1}/verification", {"accepted": True, "note": "ok"},
     {"verifier"}),
    ("POST", "/v1/periods/2032/close", None, {"regulator"}),
    ("POST", "/v1/periods/2032/enforce", {"force": True}, {"regulator"}),
    ("POST", "/v1/periods/2032/evaluate", {}, {"regulator"}),
    ("PUT", "/v1/sectors/steel/benchmarks", {"benchmarks": {}}, {"regulator"}),
    ("GET", f"/v1/enterprises/{E1}/compliance", None, {"regulator", "trader1", "viewer1"}),
    ("GET", f"/v1/enterprises/{E1}/evaluation?period=2032", None,
     {"regulator", "trader1", "viewer1"}),
    ("POST", "/v1/surrenders",
     {"enterprise_id": E1, "period": "2032", "instrument": "HCC-2025", "quantity": 1},
     {"trader1"}),
    ("POST", "/v1/block-trades",
     {"instrument": "HCC-2025", "seller_id": E1, "buyer_id": E2, "quantity": 100_000,
      "price": 6_000}, {"trader1", "trader2"}),
]  # fmt: skip


def test_every_endpoint_for_every_role(live: Live) -> None:
    order_id = live.order("trader1", E1, side="sell", quantity=40, price=6_200).json()["order_id"]
    for method, path, body, allowed in MATRIX:
        path = path.replace("{order}", str(order_id))
        if path == "/v1/orders" and body is not None:
            body = {"client_order_id": "m", "enterprise_id": E1, "instrument": "HCC-2025",
                    "type": "limit", **body}  # fmt: skip
        anonymous = live.client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.headers["content-type"] == "application/problem+json"
        wrong = live.client.request(method, path, json=body, headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
        for role in ROLES:
            headers = live.headers(role)
            if method == "POST":
                headers["Idempotency-Key"] = f"{role}-{method}-{path}"
            answer = live.client.request(method, path, json=body, headers=headers)
            if role in allowed:
                # Allowed through auth; the engine may still refuse on the state (409/422).
                assert answer.status_code not in (401, 403), (role, method, path, answer.text)
                assert answer.status_code < 500, (role, method, path, answer.text)
                if method == "GET" and "evaluation" not in path:
                    assert answer.status_code == 200, (role, method, path, answer.text)
            else:
                assert answer.status_code == 403, (role, method, path, answer.text)
    # The matrix's suspension of E1 cancelled that order: cancel a new one, last.
    order_id = live.order("trader1", E1, side="sell", quantity=40, price=6_200).json()["order_id"]
    for role in ("operator", "regulator", "verifier", "trader2", "viewer1"):
        denied = live.client.delete(f"/v1/orders/{order_id}", headers=live.headers(role))
        assert denied.status_code == 403, role
    assert live.client.delete(f"/v1/orders/{order_id}", headers=live.headers("trader1")).is_success
    # Cancelling in bulk: likewise only the order's own trader.
    other = live.order("trader1", E1, side="sell", quantity=1, price=6_300).json()["order_id"]
    cancel = {"order_ids": [other]}
    assert live.client.post("/v1/orders/cancel", json=cancel).status_code == 401
    for role in ("operator", "regulator", "verifier", "trader2", "viewer1"):
        denied = live.client.post("/v1/orders/cancel", json=cancel, headers=live.headers(role))
        assert denied.status_code == 403, (role, denied.text)
    done = live.client.post("/v1/orders/cancel", json=cancel, headers=live.headers("trader1"))
    assert done.status_code == 200 and done.json()["results"][0]["cancelled"], done.text


def _batch_order(coid: str, eid: str, side: str, quantity: int, **extra: Any) -> dict[str, Any]:
    order = {"client_order_id": coid, "enterprise_id": eid, "instrument": "HCC-2025",
             "side": side, "type": "limit", "quantity": quantity}  # fmt: skip
    return {**order, "time_in_force": "gtc", **extra}


def test_a_batch_is_appended_whole_and_each_order_answered(live: Live) -> None:
    before = _balances(live, "trader1", E1)
    batch = {
        "orders": [
            _batch_order("b-1", E1, "sell", 30, price=6_000),
            _batch_order("b-2", E1, "sell", 20, price=6_100),
            _batch_order("b-3", E1, "sell", 10, price=9_000),  # outside the band
            _batch_order("b-4", E1, "buy", 5, type="market", time_in_force="ioc"),
        ]
    }
    answer = live.client.post("/v1/orders/batch", headers=live.headers("trader1"), json=batch)
    assert answer.status_code == 201, answer.text
    orders = answer.json()["orders"]
    assert [o["client_order_id"] for o in orders] == ["b-1", "b-2", "b-3", "b-4"]
    ids = [o["order_id"] for o in orders]
    assert ids == list(range(ids[0], ids[0] + 4))  # consecutive intake positions
    assert [o["status"] for o in orders] == ["open", "open", "rejected", "rejected"]
    # b-4 could only have met the enterprise's own asks: refused by self-trade prevention.
    assert [o["reject_reason"] for o in orders[2:]] == ["outside_price_band", "self_trade"]
    after = _balances(live, "trader1", E1)
    assert after["credits"]["HCC-2025"]["held"] == before["credits"]["HCC-2025"]["held"] + 50
    # Another enterprise's buy trades against the batch's best ask.
    buy = live.order("trader2", E2, side="buy", quantity=30, price=6_000).json()
    assert buy["status"] == "filled" and buy["fills"][0]["price"] == 6_000


def test_a_bad_batch_appends_nothing(live: Live) -> None:
    head = live.store.intake.head()
    good = _batch_order("g-1", E1, "sell", 1, price=6_000)
    for orders, status, field in (
        ([good, _batch_order("g-2", E1, "sell", 0, price=6_000)], 422, "orders.1.quantity"),
        ([good, _batch_order("g-3", E1, "sell", 1)], 422, "orders.1.price"),
        ([good, _batch_order("g-4", E1, "sell", 1, price=6_000, instrument="NOPE-1")], 422,
         "orders.1.instrument"),
        ([good, {**good, "quantity": 2}], 409, None),  # a client order id twice
        ([good, _batch_order("g-5", E2, "buy", 1, price=6_000)], 403, None),  # not its own
        ([], 422, "orders"),
        ([good] * 501, 422, "orders"),
    ):  # fmt: skip
        answer = live.client.post(
            "/v1/orders/batch", headers=live.headers("trader1"), json={"orders": orders}
        )
        assert answer.status_code == status, (field, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        if field is not None:
            assert field in {e["field"] for e in answer.json()["errors"]}, answer.json()
    assert live.store.intake.head() == head
    # An id already used by an earlier order refuses the whole batch too.
    assert live.order("trader1", E1, client_order_id="used", side="sell", quantity=1,
                      price=6_000).status_code == 201  # fmt: skip
    head = live.store.intake.head()
    reused = {"orders": [_batch_order("fresh", E1, "sell", 1, price=6_000),
                         _batch_order("used", E1, "sell", 1, price=6_000)]}  # fmt: skip
    answer = live.client.post("/v1/orders/batch", headers=live.headers("trader1"), json=reused)
    assert answer.status_code == 409, answer.text
    assert live.store.intake.head() == head


def test_a_batch_with_an_idempotency_key_or_without_waiting(live: Live) -> None:
    batch = {"orders": [_batch_order(f"k-{i}", E2, "buy", 1, price=5_800) for i in range(3)]}
    headers = live.headers("trader2", **{"Idempotency-Key": "batch-1"})
    first = live.client.post("/v1/orders/batch", headers=headers, json=batch)
    second = live.client.post("/v1/orders/batch", headers=headers, json=batch)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    mine = live.client.get("/v1/orders", headers=live.headers("trader2")).json()["orders"]
    assert sorted(o["client_order_id"] for o in mine if o["client_order_id"][:2] == "k-") == [
        "k-0", "k-1", "k-2"
    ]  # fmt: skip
    later = {"orders": [_batch_order(f"w-{i}", E2, "buy", 1, price=5_800) for i in range(2)]}
    pending = live.client.post(
        "/v1/orders/batch?wait=false", headers=live.headers("trader2"), json=later
    )
    assert pending.status_code == 202, pending.text
    accepted = pending.json()["orders"]
    assert [a["status"] for a in accepted] == ["pending", "pending"]
    last = _order_once_projected(live, "trader2", accepted[-1]["order_id"])
    assert last["client_order_id"] == "w-1"


def test_cross_enterprise_writes_are_refused(live: Live) -> None:
    head = live.store.intake.head()
    attempt = live.order("trader1", E2, side="buy", quantity=1, price=6_000)
    assert attempt.status_code == 403
    surrender = live.client.post(
        "/v1/surrenders",
        headers=live.headers("trader1"),
        json={"enterprise_id": E2, "period": "2025", "instrument": "HCC-2025", "quantity": 1},
    )
    assert surrender.status_code == 403
    assert live.store.intake.head() == head


def test_audit_endpoints(live: Live) -> None:
    live.order("trader1", E1, side="sell", quantity=10, price=6_000)
    live.order("trader2", E2, side="buy", quantity=10, price=6_000)
    regulator = live.headers("regulator")
    trades = live.client.get("/v1/audit/events?type=TradeExecuted", headers=regulator).json()
    assert [e["data"]["quantity"] for e in trades["events"]] == [10]
    # API.md names the event's fields `payload`; `data` is the same, kept for clients.
    assert all(e["payload"] == e["data"] for e in trades["events"])
    assert len(trades["events"][0]["hash"]) == 64
    mine = live.client.get(f"/v1/audit/events?enterprise_id={E2}", headers=regulator).json()
    assert mine["events"] and all(
        E2
        in (e["data"].get("enterprise_id"), e["data"].get("buyer_id"), e["data"].get("seller_id"))
        for e in mine["events"]
    )
    verified = live.client.get("/v1/audit/verify", headers=regulator).json()
    assert verified["ok"] is True and verified["events"] == live.store.journal.head()[0]
    quick = live.client.get("/v1/audit/verify?reexecute=false", headers=regulator).json()
    assert quick["ok"] is True and quick["reexecution"] is None
    assert quick["head_hash"] == verified["head_hash"] == verified["logs"]["journal"]["head_hash"]
    position = trades["events"][0]["position"]
    state = live.client.get(f"/v1/audit/state?as_of={position}", headers=regulator).json()
    assert state["accounts"][E2]["credits"]["HCC-2025"]["available"] == 20_000 + 10
    bad = live.client.get("/v1/audit/state?as_of=yesterday", headers=regulator)
    assert bad.status_code == 422
    surveillance = live.client.get("/v1/audit/surveillance", headers=regulator).json()
    assert {v["enterprise_id"] for v in surveillance["volume_by_enterprise"]} == {E1, E2}
    assert surveillance["concentration"]["hhi"] == 5_000  # two equal halves


def test_metrics_and_readiness(live: Live) -> None:
    live.order("trader1", E1, side="sell", quantity=10, price=9_999)  # outside the band
    text = live.client.get("/metrics").text
    assert 'carbonx_rejections_total{reason="outside_price_band"} 1.0' in text
    assert 'carbonx_http_request_seconds_bucket{le="0.05",method="POST",route="/v1/orders"}' in text
    assert "carbonx_engine_lag_commands" in text
    ready = live.client.get("/readyz").json()
    assert ready["ready"] and ready["checks"]["projections"]["ok"]


def _block_deal(live: Live) -> dict[str, Any]:
    """E1 sells E2 100,000 t at 65.00 in a block: both sides funded for it."""
    issued = live.client.post("/v1/credits/issuances", headers=live.headers("regulator"), json={
        "enterprise_id": E1, "instrument": "HCC-2025", "quantity": 200_000,
        "reason": "allocation"})  # fmt: skip
    assert issued.status_code == 201, issued.text
    cash = {"enterprise_id": E2, "amount": 700_000_000}
    deposited = live.client.post("/v1/cash/deposits", headers=live.headers("operator"), json=cash)
    assert deposited.is_success, deposited.text
    return {"instrument": "HCC-2025", "seller_id": E1, "buyer_id": E2,
            "quantity": 100_000, "price": 6_500}  # fmt: skip


def test_a_block_trade_is_proposed_confirmed_and_settled(live: Live) -> None:
    regulator = live.headers("regulator")
    deal = _block_deal(live)
    before = _balances(live, "trader2", E2)
    assert live.client.post("/v1/block-trades", headers=live.headers("viewer1"),
                            json=deal).status_code == 403  # fmt: skip
    proposed = live.client.post("/v1/block-trades", headers=live.headers("trader1"), json=deal)
    assert proposed.status_code == 201, proposed.text
    block_id = proposed.json()["block_trade_id"]
    # The proposer cannot confirm its own proposal; the other side can.
    own = live.client.post(f"/v1/block-trades/{block_id}/confirm", headers=live.headers("trader1"))
    assert own.status_code == 403
    done = live.client.post(f"/v1/block-trades/{block_id}/confirm", headers=live.headers("trader2"))
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "executed"
    after = _balances(live, "trader2", E2)
    fee = 650_000_000 * 5 // 10_000
    assert after["cash"]["available"] == before["cash"]["available"] - 650_000_000 - fee
    assert after["credits"]["HCC-2025"]["available"] == (
        before["credits"]["HCC-2025"]["available"] + 100_000
    )
    tape = live.client.get("/v1/markets/HCC-2025/trades", headers=regulator).json()["trades"]
    assert tape[0]["block"] and tape[0]["quantity"] == 100_000
    again = live.client.post(
        f"/v1/block-trades/{block_id}/confirm", headers=live.headers("trader2")
    )
    assert again.status_code == 409
    # Too small for a block: the engine refuses on confirmation; nothing moves.
    small = live.client.post("/v1/block-trades", headers=live.headers("trader2"),
                             json={**deal, "quantity": 10}).json()["block_trade_id"]  # fmt: skip
    refused = live.client.post(f"/v1/block-trades/{small}/confirm", headers=live.headers("trader1"))
    assert refused.status_code == 422 and refused.json()["reason"] == "below_block_minimum"
    assert _balances(live, "trader2", E2) == after
    # A party frozen between proposal and confirmation: a conflict with the state.
    frozen_deal = live.client.post("/v1/block-trades", headers=live.headers("trader2"),
                                   json=deal).json()["block_trade_id"]  # fmt: skip
    freeze = live.client.post(f"/v1/enterprises/{E2}/freeze", headers=regulator,
                              json={"frozen": True, "reason": "inquiry"})  # fmt: skip
    assert freeze.status_code == 200, freeze.text
    conflict = live.client.post(
        f"/v1/block-trades/{frozen_deal}/confirm", headers=live.headers("trader1")
    )
    assert conflict.status_code == 409 and conflict.json()["reason"] == "account_frozen"
    assert _balances(live, "trader2", E2) == after


def test_the_stream_sends_trades_books_and_own_orders(tmp_path: Path) -> None:
    with live_system(f"sqlite:///{tmp_path}/s.db") as live, http_server(live) as base:
        received: list[tuple[str, dict[str, Any]]] = []
        ready = threading.Event()

        def listen(token: str) -> None:
            url = f"{base}/v1/stream?access_token={token}"
            with httpx.stream("GET", url, timeout=20) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                ready.set()
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        received.append((event, orjson.loads(line[6:])))
                        kinds = {kind for kind, _ in received}
                        if {"trade", "book"} <= kinds:
                            return

        listener = threading.Thread(target=listen, args=(live.tokens["trader2"],), daemon=True)
        listener.start()
        assert ready.wait(10)
        live.order("trader1", E1, side="sell", quantity=7, price=6_000)
        live.order("trader2", E2, side="buy", quantity=7, price=6_000)
        listener.join(timeout=15)
        kinds = [kind for kind, _ in received]
        assert {"book", "trade", "order"} <= set(kinds), kinds
        own = [data for kind, data in received if kind == "order"]
        # trader2 sees its own order and its side of the fill, never E-DEMO-1's or who
        # was on the other side.
        assert own and all(o.get("enterprise_id") == E2 for o in own)
        assert not [o for o in own if "seller_id" in o or "buyer_id" in o]
        (trade,) = [data for kind, data in received if kind == "trade"]
        assert trade["quantity"] == 7 and "buyer_id" not in trade
    assert not listener.is_alive()


def test_a_client_order_id_is_used_once_even_by_concurrent_requests(live: Live) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def place(_: int) -> int:
        answer = live.order("trader1", E1, client_order_id="same", side="sell", quantity=1,
                            price=6_300)  # fmt: skip
        return answer.status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(place, range(4)))
    assert statuses == [201, 409, 409, 409]
    mine = live.client.get("/v1/orders", headers=live.headers("trader1")).json()["orders"]
    assert [o["client_order_id"] for o in mine].count("same") == 1


def test_a_batch_the_engine_has_not_answered_gets_504_and_is_still_decided(
    store_url: str,
) -> None:
    """Without an engine running, a waiting batch times out with 504 naming its first
    intake position; the orders stay appended, and once an engine runs they are decided
    like any other."""
    store = open_store(store_url)
    try:
        seed_demo(store)
        runner = EngineRunner(store, CONFIG, batch=500)
        projector = Projector(store, all_projections())
        runner.drain()
        projector.catch_up()
        token = create_token(store.sql, "trader", E1)
        headers = {"Authorization": f"Bearer {token}"}
        app = create_app(store, config=CONFIG, wait_timeout=0.5)
        batch = {"orders": [_batch_order(f"t-{i}", E1, "sell", 1, price=6_000) for i in range(3)]}
        with TestClient(app) as client:
            first = store.intake.head()[0] + 1
            answer = client.post("/v1/orders/batch", headers=headers, json=batch)
            assert answer.status_code == 504, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["intake_position"] == first
            assert store.intake.head()[0] == first + 2  # all three were appended
            runner.drain()
            projector.catch_up()
            for position in range(first, first + 3):
                order = client.get(f"/v1/orders/{position}", headers=headers)
                assert order.status_code == 200, order.text
                assert order.json()["status"] == "open"
    finally:
        store.close()


def test_orders_are_cancelled_in_bulk_all_checked_first(live: Live) -> None:
    before = _balances(live, "trader1", E1)["credits"]["HCC-2025"]
    placed = live.client.post(
        "/v1/orders/batch",
        headers=live.headers("trader1"),
        json={
            "orders": [_batch_order(f"q-{i}", E1, "sell", 10, price=6_100 + i) for i in range(4)]
        },
    ).json()["orders"]
    ids = [o["order_id"] for o in placed]
    assert _balances(live, "trader1", E1)["credits"]["HCC-2025"]["held"] == before["held"] + 40
    # One of them trades away before the cancels arrive.
    bought = live.order("trader2", E2, side="buy", quantity=10, price=6_100).json()
    assert bought["status"] == "filled"
    foreign = live.order("trader2", E2, side="buy", quantity=1, price=5_900).json()["order_id"]
    head = live.store.intake.head()
    for order_ids, status, where in (
        ([ids[1], ids[1]], 422, "order_ids.1"),  # named twice
        ([ids[1], 10**12], 404, None),  # no such order
        ([ids[1], foreign], 403, None),  # another enterprise's
        ([], 422, "order_ids"),
        (list(range(1, 502)), 422, "order_ids"),
    ):
        answer = live.client.post(
            "/v1/orders/cancel", headers=live.headers("trader1"), json={"order_ids": order_ids}
        )
        assert answer.status_code == status, (order_ids[:3], answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        if where is not None:
            assert where in {e["field"] for e in answer.json()["errors"]}, answer.json()
    assert live.store.intake.head() == head  # nothing was appended
    answer = live.client.post(
        "/v1/orders/cancel", headers=live.headers("trader1"), json={"order_ids": ids[::-1]}
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["order_id"] for r in results] == ids[::-1]  # in the order asked
    assert [r["cancelled"] for r in results] == [True, True, True, False]
    assert results[3]["reason"] and results[3]["order"]["status"] == "filled"
    assert {r["order"]["status"] for r in results[:3]} == {"cancelled"}
    # Every hold released (10 t were sold), and the book holds none of them.
    after = _balances(live, "trader1", E1)["credits"]["HCC-2025"]
    assert after == {"available": before["available"] - 10, "held": before["held"]}
    book = live.client.get("/v1/markets/HCC-2025/book", headers=live.headers("trader1")).json()
    assert not [level for level in book["asks"] if 6_100 <= level[0] <= 6_103]
    # Without waiting: 202 with the intake positions, and the cancel follows.
    last = live.order("trader1", E1, side="sell", quantity=1, price=6_200).json()["order_id"]
    pending = live.client.post(
        "/v1/orders/cancel?wait=false", headers=live.headers("trader1"), json={"order_ids": [last]}
    )
    assert pending.status_code == 202, pending.text
    assert pending.json()["results"][0]["status"] == "pending"
    deadline = time.monotonic() + 10
    while (
        live.client.get(f"/v1/orders/{last}", headers=live.headers("trader1")).json()["status"]
        != "cancelled"
    ):
        assert time.monotonic() < deadline, "the cancel was not processed"
        time.sleep(0.05)


def test_writes_on_a_path_honour_an_idempotency_key(live: Live) -> None:
    """DELETE and PATCH of an order, and confirming or withdrawing a block trade: a
    repeat with the key gets the first answer; the key on another request is a 409."""
    trader2 = live.headers("trader2")
    first = live.order("trader2", E2, side="buy", quantity=50, price=5_900).json()["order_id"]
    second = live.order("trader2", E2, side="buy", quantity=50, price=5_900).json()["order_id"]
    keyed = {**trader2, "Idempotency-Key": "cancel-1"}
    cancelled = live.client.delete(f"/v1/orders/{first}", headers=keyed)
    again = live.client.delete(f"/v1/orders/{first}", headers=keyed)
    assert cancelled.status_code == again.status_code == 200, again.text
    assert again.json() == cancelled.json() and again.json()["status"] == "cancelled"
    assert again.headers.get("idempotent-replayed") == "true"
    # The same key on another order is another request, not a replay of the first.
    other = live.client.delete(f"/v1/orders/{second}", headers=keyed)
    assert other.status_code == 409, other.text
    assert live.client.get(f"/v1/orders/{second}", headers=trader2).json()["status"] == "open"

    keyed = {**trader2, "Idempotency-Key": "reduce-1"}
    head = live.store.intake.head()
    reduced = live.client.patch(f"/v1/orders/{second}", headers=keyed, json={"quantity": 30})
    repeat = live.client.patch(f"/v1/orders/{second}", headers=keyed, json={"quantity": 30})
    assert reduced.status_code == repeat.status_code == 200, repeat.text
    assert repeat.json() == reduced.json() and repeat.json()["remaining_quantity"] == 30
    assert repeat.headers.get("idempotent-replayed") == "true"
    assert live.store.intake.head()[0] == head[0] + 1  # one command, not two
    changed = live.client.patch(f"/v1/orders/{second}", headers=keyed, json={"quantity": 20})
    assert changed.status_code == 409

    regulator = live.headers("regulator")
    deal = _block_deal(live)
    block = live.client.post("/v1/block-trades", headers=live.headers("trader1"), json=deal)
    block_id = block.json()["block_trade_id"]
    keyed = {**trader2, "Idempotency-Key": "confirm-1"}
    done = live.client.post(f"/v1/block-trades/{block_id}/confirm", headers=keyed)
    repeat = live.client.post(f"/v1/block-trades/{block_id}/confirm", headers=keyed)
    assert done.status_code == repeat.status_code == 200, repeat.text
    assert repeat.json() == done.json() and repeat.json()["status"] == "executed"
    assert repeat.headers.get("idempotent-replayed") == "true"
    tape = live.client.get("/v1/markets/HCC-2025/trades", headers=regulator).json()["trades"]
    assert [t["quantity"] for t in tape if t["block"]] == [100_000]  # settled once

    proposal = live.client.post("/v1/block-trades", headers=live.headers("trader1"), json=deal)
    proposal_id = proposal.json()["block_trade_id"]
    keyed = {**live.headers("trader1"), "Idempotency-Key": "withdraw-1"}
    withdrawn = live.client.delete(f"/v1/block-trades/{proposal_id}", headers=keyed)
    repeat = live.client.delete(f"/v1/block-trades/{proposal_id}", headers=keyed)
    assert withdrawn.status_code == repeat.status_code == 200, repeat.text
    assert repeat.json()["status"] == "withdrawn"
    assert repeat.headers.get("idempotent-replayed") == "true"


def test_amending_an_order_refuses_bad_input_422_and_a_closed_order_409(live: Live) -> None:
    placed = live.order("trader2", E2, side="buy", quantity=50, price=5_900).json()
    path, trader2 = f"/v1/orders/{placed['order_id']}", live.headers("trader2")
    for body, reason in (({"quantity": 50}, "invalid_quantity"),
                         ({"price": 9_000}, "outside_price_band")):  # fmt: skip
        refused = live.client.patch(path, headers=trader2, json=body)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["reason"] == reason
    assert live.client.delete(path, headers=trader2).status_code == 200
    closed = live.client.patch(path, headers=trader2, json={"quantity": 10})
    assert closed.status_code == 409 and closed.json()["reason"] == "unknown_order"


def test_the_tape_pages_forward_from_a_position_and_misses_nothing(live: Live) -> None:
    for price in (6_000, 6_010, 6_020):
        live.order("trader1", E1, side="sell", quantity=10, price=price)
        assert live.order("trader2", E2, side="buy", quantity=10, price=price).is_success
    viewer = live.headers("viewer1")
    latest = live.client.get("/v1/markets/HCC-2025/trades?limit=2", headers=viewer).json()
    assert [t["price"] for t in latest["trades"]] == [6_020, 6_010]  # newest first
    assert latest["next_after"] == latest["trades"][0]["position"]
    seen, after = [], 0
    for _ in range(5):
        page = live.client.get(
            f"/v1/markets/HCC-2025/trades?after={after}&limit=1", headers=viewer
        ).json()
        seen += [t["price"] for t in page["trades"]]
        if not page["trades"]:
            assert page["next_after"] == after
            break
        assert page["next_after"] == page["trades"][-1]["position"] > after
        after = page["next_after"]
    assert seen == [6_000, 6_010, 6_020]  # oldest first, each once
    two = live.client.get("/v1/markets/HCC-2025/trades?after=0&limit=2", headers=viewer).json()
    assert [t["price"] for t in two["trades"]] == [6_000, 6_010]


def test_the_ledger_pages_by_whole_positions_and_misses_nothing(live: Live) -> None:
    """A fill posts several entries at one position; a page that ended inside it lost the
    rest (`after` skips the whole position): at limit=1, 110 of 209 postings came back."""
    for price in (6_000, 6_010, 6_020):
        live.order("trader1", E1, side="sell", quantity=10, price=price)
        assert live.order("trader2", E2, side="buy", quantity=10, price=price).is_success
    headers = live.headers("trader1")
    url = f"/v1/enterprises/{E1}/ledger"
    full = live.client.get(f"{url}?limit=5000", headers=headers).json()
    assert full["next_after"] == full["entries"][-1]["position"]
    everything = [(e["position"], e["seq"]) for e in full["entries"]]
    positions = [p for p, _ in everything]
    assert any(positions.count(p) > 1 for p in positions)  # a fill posts several
    for limit in (1, 2):
        seen: list[tuple[int, int]] = []
        after = 0
        while True:
            page = live.client.get(f"{url}?after={after}&limit={limit}", headers=headers).json()
            if not page["entries"]:
                assert page["next_after"] == after
                break
            got = [(e["position"], e["seq"]) for e in page["entries"]]
            # Whole positions only: more than `limit` only when one position is all of it.
            assert len(got) <= limit or len({p for p, _ in got}) == 1
            assert page["next_after"] == got[-1][0] > after
            seen += got
            after = page["next_after"]
        assert seen == everything, limit  # every posting once, in order


def test_markets_report_the_latest_close(live: Live) -> None:
    markets = live.client.get("/v1/markets", headers=live.headers("viewer1")).json()["markets"]
    (market,) = markets
    # No day has closed yet: the latest close is the reference price, the band's base.
    assert market["close"] == market["prev_close"] == market["reference_price"] == 6_000


def test_a_token_in_the_url_is_only_for_the_event_stream(live: Live) -> None:
    token = live.tokens["operator"]
    deposit = live.client.post(
        f"/v1/cash/deposits?access_token={token}", json={"enterprise_id": E1, "amount": 10}
    )
    assert deposit.status_code == 401, deposit.text
    assert deposit.headers["www-authenticate"] == "Bearer"
    read = live.client.get(f"/v1/markets?access_token={token}")
    assert read.status_code == 401
    # With the header, the same token works; the stream's own test covers ?access_token=.
    assert live.client.get("/v1/markets", headers=live.headers("operator")).status_code == 200


def test_suspending_or_freezing_cancels_the_open_orders_and_releases_holds(live: Live) -> None:
    buy = live.order("trader2", E2, side="buy", quantity=10, price=5_900).json()
    sell = live.order("trader2", E2, side="sell", quantity=10, price=6_400).json()
    held = _balances(live, "trader2", E2)
    assert held["cash"]["held"] > 0 and held["credits"]["HCC-2025"]["held"] == 10
    regulator = live.headers("regulator")
    suspended = live.client.post(f"/v1/enterprises/{E2}/suspend", headers=regulator, json={})
    assert suspended.status_code == 200, suspended.text
    for placed in (buy, sell):
        order = live.client.get(f"/v1/orders/{placed['order_id']}", headers=regulator).json()
        assert order["status"] == "cancelled", order
    released = _balances(live, "trader2", E2)
    assert released["cash"]["held"] == 0 and released["credits"]["HCC-2025"]["held"] == 0
    assert released["cash"]["available"] == held["cash"]["available"] + held["cash"]["held"]
    # Nothing of E2's is left for another enterprise's order to meet.
    hit = live.order("trader1", E1, side="sell", quantity=10, price=5_900).json()
    assert hit["status"] == "open" and hit["fills"] == []

    reinstated = live.client.post(f"/v1/enterprises/{E2}/reinstate", headers=regulator, json={})
    assert reinstated.status_code == 200, reinstated.text
    again = live.order("trader2", E2, side="buy", quantity=5, price=5_800).json()
    assert again["status"] == "open"
    frozen = live.client.post(
        f"/v1/enterprises/{E2}/freeze", headers=regulator, json={"frozen": True, "reason": "x"}
    )
    assert frozen.status_code == 200, frozen.text
    order = live.client.get(f"/v1/orders/{again['order_id']}", headers=regulator).json()
    assert order["status"] == "cancelled"
    assert _balances(live, "trader2", E2)["cash"]["held"] == 0


def test_a_regulator_sets_a_position_limit_that_orders_then_meet(live: Live) -> None:
    path = f"/v1/enterprises/{E2}/position-limit"
    regulator = live.headers("regulator")
    bad = live.client.put(path, headers=regulator, json={"limit": -1})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "limit"
    unknown = live.client.put(
        "/v1/enterprises/E-NOPE/position-limit", headers=regulator, json={"limit": 5}
    )
    assert unknown.status_code == 404
    holdings = _balances(live, "trader2", E2)["credits"]["HCC-2025"]
    limit = holdings["available"] + holdings["held"] + 10
    done = live.client.put(path, headers=regulator, json={"limit": limit})
    assert done.status_code == 200, done.text
    assert done.json()["enterprise_id"] == E2 and done.json()["limit"] == limit
    over = live.order("trader2", E2, side="buy", quantity=11, price=5_900)
    assert over.status_code == 422 and over.json()["reason"] == "position_limit", over.text
    within = live.order("trader2", E2, side="buy", quantity=10, price=5_900)
    assert within.status_code == 201, within.text
    lifted = live.client.put(path, headers=regulator, json={"limit": 0})
    assert lifted.status_code == 200
    assert live.order("trader2", E2, side="buy", quantity=11, price=5_900).status_code == 201


def test_the_operator_turns_queuing_on_and_off(live: Live) -> None:
    # The live system's calendar is always open: what queuing does is in the engine's
    # and the projections' tests; here, the switch itself.
    path, operator = "/v1/market/queuing", live.headers("operator")
    bad = live.client.put(path, headers=operator, json={"enabled": "yes"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "enabled"
    for enabled in (True, False):
        answer = live.client.put(path, headers=operator, json={"enabled": enabled})
        assert answer.status_code == 200 and answer.json()["enabled"] is enabled, answer.text
        journaled = live.store.journal.read(answer.json()["position"] - 1, 1)[0]
        assert decode(journaled.payload).event == OrderQueuingSet(enabled=enabled)
