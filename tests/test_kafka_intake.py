"""Commands over Kafka (tansu): gateway → carbonx.commands.v1 → bridge → intake log →
engine, exactly once, with the same journal as the single-process run."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from events import decode
from events.commands import PlaceOrder
from infra.kafka_topics import ensure_topic
from infra.store import open_store
from scripts.processes import carbonx
from scripts.workload import workload
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.intake import Intake, InvalidCommand
from services.exchange.kafka_intake import (
    COMMANDS_TOPIC,
    KafkaCommandSender,
    KafkaIntakeBridge,
    encode_command,
)
from services.exchange.runner import ENGINE_READER, EngineRunner

CONFIG = EngineConfig(calendar=ALWAYS)


def _journal(url: str) -> list[bytes]:
    with open_store(url) as store:
        EngineRunner(store, CONFIG).drain()
        return [row.payload for page in store.journal.pages() for row in page]


def test_commands_through_the_topic_give_the_single_process_journal(
    store_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    commands = workload(1_500, enterprises=10)
    topic = f"carbonx.commands.test-{uuid.uuid4().hex}"
    ensure_topic(kafka_bootstrap, topic, partitions=1, replication=1)
    sender = KafkaCommandSender(kafka_bootstrap, topic)
    for start in range(0, len(commands), 400):
        sender.submit(commands[start : start + 400])
    sender.close()

    with open_store(store_url) as store:
        bridge = KafkaIntakeBridge(store, kafka_bootstrap, [0], topic)
        deadline = time.monotonic() + 60
        while store.intake.head()[0] < len(commands):
            assert time.monotonic() < deadline, "the bridge did not move every command"
            bridge.step()
        assert bridge.step(timeout_ms=500) == 0  # nothing more, nothing twice
        assert store.intake.tracking(bridge.reader(0)) == len(commands)
        bridge.close()
    through_kafka = _journal(store_url)

    direct_url = f"sqlite:///{tmp_path}/direct.db"
    with open_store(direct_url) as direct:
        Intake(direct).submit(commands)
    assert through_kafka == _journal(direct_url)


def test_the_sender_refuses_invalid_commands_before_the_topic(kafka_bootstrap: str) -> None:
    sender = KafkaCommandSender(kafka_bootstrap, f"carbonx.commands.test-{uuid.uuid4().hex}")
    bad = PlaceOrder(
        client_order_id="x",
        enterprise_id="E1",
        instrument="HCC-2025",
        side="buy",
        order_type="limit",
        quantity=0,
        price=5_000,
    )
    with pytest.raises(InvalidCommand):
        sender.submit([(bad, 1)])
    sender.close()


def test_an_engine_killed_mid_stream_moves_every_command_once(
    pg_url: str,
    broker,  # type: ignore[no-untyped-def]
) -> None:
    commands = workload(6_000, enterprises=20, seed=5)
    ensure_topic(broker.bootstrap, COMMANDS_TOPIC, partitions=3, replication=1)
    sent = threading.Event()

    def send() -> None:
        sender = KafkaCommandSender(broker.bootstrap)
        for start in range(0, len(commands), 300):
            sender.submit(commands[start : start + 300])
            time.sleep(0.4)  # spread over the kills below (~8 s)
        sender.close()
        sent.set()

    def engine() -> subprocess.Popen[bytes]:
        return carbonx(
            "engine",
            "--db",
            pg_url,
            "--calendar",
            "always",
            "--kafka",
            broker.bootstrap,
            "--partitions",
            "0,1,2",
            "--batch",
            "200",
            "--snapshot-every",
            "1000",
        )

    sender = threading.Thread(target=send)
    sender.start()
    with open_store(pg_url) as store:
        kills = 0
        for _ in range(4):
            before = store.intake.head()[0]
            process = engine()
            deadline = time.monotonic() + 60
            while store.intake.head()[0] == before and not sent.is_set():
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(0.3)
            process.send_signal(signal.SIGKILL)
            process.wait()
            if store.intake.head()[0] < len(commands):
                kills += 1  # killed while commands were still flowing in
        sender.join()
        process = engine()
        deadline = time.monotonic() + 120
        while store.intake.head()[0] < len(commands) or (
            store.journal.tracking(ENGINE_READER) < len(commands)
        ):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "did not catch up"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        entries = [decode(row.body) for page in store.intake.pages() for row in page]
        # Every command exactly once (a command's bytes and time identify it here).
        moved = sorted(encode_command(e.event, e.time) for e in entries)
        assert moved == sorted(encode_command(c, t) for c, t in commands)
        assert store.intake.verify().ok and store.journal.verify().ok
    assert kills >= 2
    # The engine's journal is exactly what a fresh engine makes of that intake log.
    from services.exchange.reexecute import reexecute

    with open_store(pg_url) as store:
        assert reexecute(store, CONFIG).ok
