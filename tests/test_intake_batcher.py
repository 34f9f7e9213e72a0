"""The gateway's intake writer: a client order id is used once per enterprise, also when
two HTTP workers (each with its own writer) take the same one before the read models
show either (every test runs on SQLite and on PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from events import decode
from events.commands import PlaceOrder
from infra.store import Store, open_store
from projections import all_projections
from projections.projector import Projector
from services.gateway.submit import IntakeBatcher, ReusedClientOrderId, used_client_ids

T = 1_767_225_600_000_000


def _order(enterprise: str, client_order_id: str) -> PlaceOrder:
    return PlaceOrder(
        client_order_id=client_order_id, enterprise_id=enterprise, instrument="HCC-2025",
        side="buy", order_type="limit", quantity=1, price=6_000, time_in_force="gtc",
        post_only=False, expire_at=0,
    )  # fmt: skip


@pytest.fixture
def workers(store_url: str) -> Iterator[tuple[Store, IntakeBatcher, IntakeBatcher]]:
    """Two writers on two connections to one store, as two HTTP workers have, and the
    read models' tables (empty: no projector runs)."""
    with open_store(store_url) as one, open_store(store_url) as two:
        Projector(one, all_projections())
        first, second = IntakeBatcher(one), IntakeBatcher(two)
        try:
            yield one, first, second
        finally:
            first.close()
            second.close()


def test_an_id_the_read_models_do_not_show_yet_is_refused_by_the_other_worker(
    workers: tuple[Store, IntakeBatcher, IntakeBatcher],
) -> None:
    store, first, second = workers
    assert first.submit_group([_order("E1", "x")], T).result(10) == 1
    assert used_client_ids(store.sql, [("E1", "x")]) == set()  # not projected

    with pytest.raises(ReusedClientOrderId, match="'x' was already used by E1"):
        second.submit_group([_order("E1", "x")], T).result(10)
    assert store.intake.head()[0] == 1
    # The id is the enterprise's own: another one may use it.
    assert second.submit_group([_order("E2", "x")], T).result(10) == 2


def test_a_refused_group_leaves_the_others_of_its_batch_to_be_appended(
    workers: tuple[Store, IntakeBatcher, IntakeBatcher],
) -> None:
    store, first, second = workers
    first.submit_group([_order("E1", "taken")], T).result(10)
    second.close()  # queue three groups, for the writer to take as one batch
    futures = [
        second.submit_group([_order("E1", "a"), _order("E1", "b")], T),
        second.submit_group([_order("E1", "c"), _order("E1", "taken")], T),
        second.submit_group([_order("E1", "d")], T),
    ]
    second.start()
    assert futures[0].result(10) == 2
    with pytest.raises(ReusedClientOrderId, match="'taken'"):
        futures[1].result(10)
    assert futures[2].result(10) == 4
    ids = [decode(row.body).event.client_order_id for row in store.intake.read(0, 10)]  # type: ignore[attr-defined]
    assert ids == ["taken", "a", "b", "d"]
    # "c" went with its group: it is still free.
    assert second.submit_group([_order("E1", "c")], T).result(10) == 5


def test_two_workers_racing_for_the_same_ids_place_each_once(
    workers: tuple[Store, IntakeBatcher, IntakeBatcher],
) -> None:
    store, first, second = workers
    ids = [f"r{i}" for i in range(60)]
    placed: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def client(writer: IntakeBatcher) -> None:
        start.wait()
        futures: list[tuple[str, Future[int]]] = [
            (coid, writer.submit_group([_order("E1", coid)], T)) for coid in ids
        ]
        for coid, future in futures:
            try:
                future.result(10)
            except ReusedClientOrderId:
                with lock:
                    refused.append(coid)
            else:
                with lock:
                    placed.append(coid)

    threads = [threading.Thread(target=client, args=(w,)) for w in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(placed) == sorted(ids)  # each once
    assert sorted(refused) == sorted(ids)
    assert store.intake.head()[0] == len(ids)
