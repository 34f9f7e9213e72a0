"""Commands over Kafka: `carbonx.commands.v1` into the store's intake log, exactly once.

When the gateway is scaled out, it validates commands and sends them to the partitioned
topic (key = instrument, else enterprise, so one market's commands keep their order)
instead of appending to the intake table. On the engine's side, a bridge consumes its
assigned partitions with assign/seek (no consumer group, no offset commits) and appends
each partition's records to the intake log together with that partition's next offset
as a tracking record, in ONE transaction, compare-and-set against the offset it started
from. A crash or a second bridge can therefore neither lose nor duplicate a command,
and the full input history stays in the store, hash-chained, for `carbonx verify`;
the engine then runs over the intake log exactly as in the single-process setup.

Record value: the command's canonical JSON without a position,
``{"data":…,"time":T,"type":"Name","v":V}``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import orjson

from events.base import Event
from events.codec import encode_data, frame, to_event
from infra.recorders import TrackingConflict
from infra.store import Store, Tracking
from infra.supervise import supervise
from services.exchange.intake import InvalidCommand, validate

__all__ = [
    "COMMANDS_TOPIC",
    "KafkaCommandSender",
    "KafkaIntakeBridge",
    "command_key",
    "decode_command",
    "encode_command",
]

log = logging.getLogger("carbonx.kafka-intake")

COMMANDS_TOPIC = "carbonx.commands.v1"


def encode_command(command: Event, time: int) -> bytes:
    return b'{"data":%s,"time":%d,"type":"%s","v":%d}' % (
        encode_data(command),
        time,
        command.type_name.encode(),
        command.version,
    )


def decode_command(value: bytes) -> tuple[Event, int]:
    envelope = orjson.loads(value)
    return to_event(envelope["type"], envelope["v"], envelope["data"]), envelope["time"]


def command_key(command: Event) -> bytes | None:
    for name in ("instrument", "symbol", "enterprise_id", "from_enterprise_id"):
        value = getattr(command, name, None)
        if isinstance(value, str) and value:
            return value.encode()
    return None


class KafkaCommandSender:
    """The gateway's side: validate, then send to the command topic (acks=all)."""

    def __init__(self, bootstrap: str, topic: str = COMMANDS_TOPIC) -> None:
        from kafka import KafkaProducer

        self.topic = topic
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="carbonx-gateway",
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_in_flight_requests_per_connection=5,
        )

    def submit(self, commands: Sequence[tuple[Event, int]]) -> None:
        """Validate every (command, time), send them all, and wait for the broker."""
        for command, _ in commands:
            errors = validate(command)
            if errors:
                raise InvalidCommand(command.type_name, errors)
        futures = [
            self._producer.send(
                self.topic, key=command_key(command), value=encode_command(command, time)
            )
            for command, time in commands
        ]
        self._producer.flush(timeout=30)
        # flush() waits but does not raise: a refused record shows only on its future.
        for future in futures:
            if future.failed():
                raise RuntimeError(f"the broker did not accept a command: {future.exception!r}")

    def close(self) -> None:
        self._producer.close(timeout=5)


class KafkaIntakeBridge:
    """The engine's side: assigned partitions of the command topic → the intake log."""

    def __init__(
        self,
        store: Store,
        bootstrap: str,
        partitions: Sequence[int],
        topic: str = COMMANDS_TOPIC,
        max_records: int = 5_000,
    ) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.store = store
        self.topic = topic
        self.max_records = max_records
        self._consumer: Any = KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="carbonx-engine",
            group_id=None,
            enable_auto_commit=False,
            # Never jump silently: a stored offset the broker no longer has (retention,
            # a recreated topic) must stop this partition loudly, not skip commands.
            auto_offset_reset="none",
        )
        self._partitions = {p: TopicPartition(topic, p) for p in partitions}
        self._consumer.assign(list(self._partitions.values()))
        self.offsets: dict[int, int] = {}
        self.resync()

    def reader(self, partition: int) -> str:
        """The tracking name of one partition: the next offset to read is its position."""
        return f"kafka:{self.topic}:{partition}"

    def resync(self) -> None:
        """Seek every partition to the offset the store says comes next."""
        for number, tp in self._partitions.items():
            offset = self.store.intake.tracking(self.reader(number))
            self.offsets[number] = offset
            self._consumer.seek(tp, offset)

    def step(self, timeout_ms: int = 200) -> int:
        """Move what the broker has into the intake log; how many commands were moved."""
        polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        moved = 0
        for tp, records in sorted(polled.items(), key=lambda item: item[0].partition):
            expected = self.offsets[tp.partition]
            records = [r for r in records if r.offset >= expected]
            if not records:
                continue
            if records[0].offset != expected:
                raise RuntimeError(
                    f"{self.topic}[{tp.partition}]: expected offset {expected}, the broker "
                    f"gave {records[0].offset}; commands in between would be lost"
                )
            pending = []
            for record in records:
                command, time = decode_command(record.value)
                pending.append(frame(command, time))
            next_offset = records[-1].offset + 1
            try:
                self.store.intake.append(
                    pending, Tracking(self.reader(tp.partition), next_offset), follows=expected
                )
            except TrackingConflict:
                log.warning("partition %s moved on elsewhere; resyncing", tp.partition)
                self.resync()
                return moved
            self.offsets[tp.partition] = next_offset
            moved += len(records)
        return moved

    def run(self, stop: threading.Event) -> None:
        """Move commands until `stop` is set; store and broker outages are waited out."""
        supervise(stop, self.step, self.resync, name="command bridge", log=log)

    def close(self) -> None:
        self._consumer.close()
