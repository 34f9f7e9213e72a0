"""The scaled-out write path: HTTP gateway → carbonx.commands.v1 → the engine's bridge
→ intake log → engine, against a real broker (tansu). The same HTTP requests through
the store's intake table give a byte-identical journal."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from infra.kafka_topics import ensure_topic
from infra.servers import TansuBroker
from services.exchange.kafka_intake import COMMANDS_TOPIC, KafkaIntakeBridge
from tests.live import Live, live_system

E1, E2 = "E-DEMO-1", "E-DEMO-2"


def _session(live: Live) -> list[dict[str, Any]]:
    """A short trading session over HTTP: resting sells, crossing buys, a cancel."""
    answers = []
    for index in range(6):
        sell = live.order("trader1", E1, client_order_id=f"s{index}", side="sell",
                          quantity=10 + index, price=6_000 + index)  # fmt: skip
        assert sell.status_code == 201, sell.text
        answers.append(sell.json())
    for index in range(3):
        buy = live.order("trader2", E2, client_order_id=f"b{index}", side="buy",
                         quantity=15, price=6_010)  # fmt: skip
        assert buy.status_code == 201, buy.text
        answers.append(buy.json())
    # The two sells the buys left open are cancelled together: answered at once
    # through the store, 202 through the topic; either way they end cancelled.
    still_open = [a["order_id"] for a in answers[4:6]]
    cancel = live.client.post(
        "/v1/orders/cancel", headers=live.headers("trader1"), json={"order_ids": still_open}
    )
    assert cancel.status_code in (200, 202), cancel.text
    deadline = time.monotonic() + 20
    for order_id in still_open:
        while _status(live, order_id) != "cancelled":
            assert time.monotonic() < deadline, f"order {order_id} was not cancelled"
            time.sleep(0.05)
    # A batch naming a client order id already used, or one id twice, is refused whole
    # on either path (both journals must stay the same: nothing of it may reach them).
    fresh = {"client_order_id": "fresh", "enterprise_id": E1, "instrument": "HCC-2025",
             "side": "sell", "type": "limit", "quantity": 1, "price": 6_000}  # fmt: skip
    for orders in ([fresh, {**fresh, "client_order_id": "s0"}], [fresh, fresh]):
        batch = live.client.post(
            "/v1/orders/batch", headers=live.headers("trader1"), json={"orders": orders}
        )
        assert batch.status_code == 409, batch.text
    return answers


def _status(live: Live, order_id: int) -> str:
    answer = live.client.get(f"/v1/orders/{order_id}", headers=live.headers("trader1"))
    status: str = answer.json()["status"]
    return status


def _journal(live: Live) -> list[bytes]:
    return [row.payload for page in live.store.journal.pages() for row in page]


def test_orders_through_the_command_topic_give_the_store_journal(
    broker: TansuBroker, tmp_path: Path
) -> None:
    ensure_topic(broker.bootstrap, COMMANDS_TOPIC, partitions=1, replication=1)
    with live_system(
        f"sqlite:///{tmp_path}/kafka.db", kafka=broker.bootstrap, commands_over_kafka=True
    ) as live:
        stop = threading.Event()
        bridge = KafkaIntakeBridge(live.store, broker.bootstrap, [0])
        thread = threading.Thread(target=bridge.run, args=(stop,))
        thread.start()
        try:
            over_kafka = _session(live)
            # Non-order writes answer 202 once the broker has them.
            deposit = live.client.post(
                "/v1/cash/deposits",
                headers=live.headers("operator"),
                json={"enterprise_id": E1, "amount": 1_000},
            )
            assert deposit.status_code == 202, deposit.text
            ready = live.client.get("/readyz").json()
            assert ready["checks"]["kafka"]["ok"]
        finally:
            stop.set()
            thread.join(timeout=10)
            bridge.close()
        # The deposit was queued last; compare what both runs share (the orders).
        journal_kafka = [p for p in _journal(live) if b"CashDeposited" not in p or b'"demo"' in p]
    with live_system(f"sqlite:///{tmp_path}/store.db") as live:
        through_store = _session(live)
        journal_store = _journal(live)
    assert [a["status"] for a in over_kafka] == [a["status"] for a in through_store]
    assert [a["fills"] for a in over_kafka] == [a["fills"] for a in through_store]
    assert journal_kafka == journal_store
