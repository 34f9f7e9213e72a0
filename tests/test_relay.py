"""The relay on a real Kafka-protocol broker (tansu): every journal entry, in order,
with its headers; a relay killed mid-stream resends, never skips."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from events import decode
from infra.kafka_topics import ensure_topic
from infra.store import open_store
from scripts.processes import carbonx
from scripts.workload import workload
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.intake import Intake
from services.exchange.runner import EngineRunner
from services.relay import EVENTS_TOPIC, RELAY_READER, PositionDeduplicator, Relay


def _journal(url: str, trading_commands: int) -> int:
    with open_store(url) as store:
        Intake(store).submit(workload(trading_commands, enterprises=10))
        EngineRunner(store, EngineConfig(calendar=ALWAYS)).drain()
        return store.journal.head()[0]


def _consume_all(
    bootstrap: str, expected: int, topic: str = EVENTS_TOPIC, timeout: float = 60
) -> list:  # type: ignore[type-arg]
    """Read the whole topic from the beginning, with no consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    deadline = time.monotonic() + timeout
    numbers = consumer.partitions_for_topic(topic)
    while not numbers:  # a new topic reaches this client's metadata after a refresh
        assert time.monotonic() < deadline, f"topic {topic} never appeared"
        consumer.topics()
        time.sleep(0.1)
        numbers = consumer.partitions_for_topic(topic)
    partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records = []
    seen: set[int] = set()
    while len(seen) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
            seen.update(int(dict(r.headers)["position"]) for r in batch)
    consumer.close()
    return records


def test_relay_publishes_every_entry_in_order_with_its_headers(
    store_url: str, kafka_bootstrap: str
) -> None:
    total = _journal(store_url, 300)
    topic = f"carbonx.events.test-{uuid.uuid4().hex}"  # the session broker is shared
    ensure_topic(kafka_bootstrap, topic, partitions=3, replication=1)
    with open_store(store_url) as store:
        relay = Relay(store, kafka_bootstrap, topic=topic)
        while relay.step():
            pass
        relay.close()
        assert store.journal.tracking(RELAY_READER) == total
        rows = {row.position: row for page in store.journal.pages() for row in page}
    records = _consume_all(kafka_bootstrap, total, topic)
    positions = [int(dict(r.headers)["position"]) for r in records]
    assert sorted(positions) == list(range(1, total + 1))  # all of them, once
    by_partition: dict[int, list[int]] = {}
    for record in records:
        headers = dict(record.headers)
        position = int(headers["position"])
        row = rows[position]
        assert record.value == row.body
        assert headers["type"].decode() == row.type_name
        assert headers["hash"].decode() == row.hash
        event = decode(record.value).event
        key = getattr(event, "instrument", None) or getattr(event, "symbol", None)
        if key:
            assert record.key == key.encode()
        by_partition.setdefault(record.partition, []).append(position)
    assert len(by_partition) > 1  # keys spread over partitions
    for in_partition in by_partition.values():
        assert in_partition == sorted(in_partition)  # position order within each partition


def test_a_relay_killed_mid_stream_resends_and_never_skips(
    tmp_path: Path,
    broker,  # type: ignore[no-untyped-def]
) -> None:
    url = f"sqlite:///{tmp_path}/relay.db"
    total = _journal(url, 4_000)
    ensure_topic(broker.bootstrap, EVENTS_TOPIC, partitions=3, replication=1)

    def start() -> subprocess.Popen[bytes]:
        return carbonx("relay", "--db", url, "--kafka", broker.bootstrap, stderr=subprocess.DEVNULL)

    process = start()
    with open_store(url) as store:
        deadline = time.monotonic() + 60
        while store.journal.tracking(RELAY_READER) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = store.journal.tracking(RELAY_READER)
        assert killed_at < total, "the relay finished before it could be killed"
        process = start()
        deadline = time.monotonic() + 120
        while store.journal.tracking(RELAY_READER) < total:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    records = _consume_all(broker.bootstrap, total)
    positions = [int(dict(r.headers)["position"]) for r in records]
    assert set(positions) == set(range(1, total + 1))  # nothing lost
    deduplicated = [
        int(dict(r.headers)["position"])
        for r in PositionDeduplicator()(sorted(records, key=lambda r: (r.partition, r.offset)))
    ]
    assert sorted(deduplicated) == list(range(1, total + 1))  # each exactly once


def test_a_broker_restart_while_the_relay_runs_loses_nothing_once_it_is_back(
    tmp_path: Path,
    broker,  # type: ignore[no-untyped-def]
) -> None:
    import threading

    url = f"sqlite:///{tmp_path}/relay.db"
    total = _journal(url, 4_000)
    ensure_topic(broker.bootstrap, EVENTS_TOPIC, partitions=3, replication=1)
    with open_store(url) as store:
        relay = Relay(
            store,
            broker.bootstrap,
            page=500,
            producer_config={"request_timeout_ms": 3_000, "delivery_timeout_ms": 8_000},
        )
        stop = threading.Event()
        thread = threading.Thread(target=relay.run, args=(stop,))
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while store.journal.tracking(RELAY_READER) == 0:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            # Killed, not stopped: on SIGTERM tansu answers requests for up to a second,
            # and the relay once published the whole journal in it (nothing was left to
            # lose). A page acknowledged just before the kill may still be being recorded:
            # let that land first.
            broker.stop(graceful=False)
            time.sleep(0.5)
            # While the broker is down nothing is acknowledged, so nothing is recorded.
            at_stop = store.journal.tracking(RELAY_READER)
            time.sleep(1.0)
            assert store.journal.tracking(RELAY_READER) == at_stop < total
            broker.start()  # same port; tansu's memory storage starts empty
            ensure_topic(broker.bootstrap, EVENTS_TOPIC, partitions=3, replication=1)
            deadline = time.monotonic() + 120
            while store.journal.tracking(RELAY_READER) < total:
                assert time.monotonic() < deadline, "the relay did not resume"
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(timeout=30)
            relay.close()
    # Everything the old broker had not acknowledged is on the new one.
    positions = {
        int(dict(r.headers)["position"]) for r in _consume_all(broker.bootstrap, total - at_stop)
    }
    assert positions >= set(range(at_stop + 1, total + 1))


def test_an_unreachable_broker_is_named_in_a_clear_error() -> None:
    import pytest

    from infra.kafka_topics import BrokerUnreachable
    from infra.servers import free_port

    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerUnreachable, match=address):
        ensure_topic(address, EVENTS_TOPIC, 1, 1, wait=2.0)
