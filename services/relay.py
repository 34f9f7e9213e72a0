"""The relay: the journal, in position order, to the Kafka topic `carbonx.events.v1`.

At-least-once by construction, exactly-once for consumers that dedupe by position:
the relay sends a page of journal entries, waits until the broker has acknowledged
every one of them (``acks=all``), and only then records the page's last position as
its tracking position in the store. A relay that crashes after sending and before
recording resends that page on restart: duplicates, never a gap. Records carry the
position in a header, and positions only grow within a partition (a key always maps
to one partition), so :class:`PositionDeduplicator` drops every resent record.

Record layout: key = the entry's instrument, else its enterprise (else none); value =
the entry's canonical JSON (what the hash covers); headers ``type``, ``position``,
``hash``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from infra.recorders import Row
from infra.store import Store
from infra.supervise import supervise

__all__ = [
    "EVENTS_TOPIC",
    "RELAY_READER",
    "PositionDeduplicator",
    "Relay",
    "record_key",
]

log = logging.getLogger("carbonx.relay")

EVENTS_TOPIC = "carbonx.events.v1"
#: The tracking name under which the relay records the journal position it published.
RELAY_READER = "relay"


def record_key(body: bytes) -> bytes | None:
    """The partitioning key of a journal entry: its instrument, else its enterprise."""
    data = orjson.loads(body)["data"]
    for name in ("instrument", "symbol", "enterprise_id", "buyer_id", "from_enterprise_id"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value.encode()
    return None


@dataclass
class Relay:
    store: Store
    bootstrap: str
    topic: str = EVENTS_TOPIC
    page: int = 5_000
    producer_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.position = self.store.journal.tracking(RELAY_READER)
        self._producer = self._new_producer()

    def _new_producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="carbonx-relay",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            batch_size=512 * 1024,
            max_in_flight_requests_per_connection=5,
            retries=2**31 - 1,
            **self.producer_config,
        )

    def publish(self, rows: Iterable[Row]) -> int:
        """Send `rows`, wait for every acknowledgement, then record the last position."""
        send = self._producer.send
        last = 0
        futures = []
        for row in rows:
            body, digest = row.body, row.hash
            future = send(
                self.topic,
                key=record_key(body),
                value=body,
                headers=[
                    ("type", row.type_name.encode()),
                    ("position", str(row.position).encode()),
                    ("hash", digest.encode()),
                ],
            )
            futures.append(future)
            last = row.position
        if futures:
            self._producer.flush(timeout=60)  # raises KafkaTimeoutError when it expires
            # flush() waits but does not raise: a record the broker never acknowledged
            # shows only on its future, and must keep the position where it is.
            for future in futures:
                if future.failed():
                    raise RuntimeError(
                        f"the broker did not acknowledge a record: {future.exception!r}"
                    )
            self.store.journal.record_tracking(RELAY_READER, last)
            self.position = last
        return len(futures)

    def step(self) -> int:
        """Publish the next page of the journal; how many entries were sent."""
        return self.publish(self.store.journal.read(self.position, self.page))

    def run(self, stop: threading.Event, idle: float = 0.5) -> None:
        """Follow the journal until `stop` is set; broker outages are waited out."""

        def publish_once() -> None:
            seen = self.store.generation("journal")
            if self.step() == 0:
                self.store.wait_for_change(seen, idle, "journal")

        def after_failure() -> None:
            # Start again from what was acknowledged and recorded, with a new producer:
            # an idempotent producer whose id the broker forgot (a broker restart)
            # cannot recover by itself.
            self.position = self.store.journal.tracking(RELAY_READER)
            self._producer.close(timeout=1)
            self._producer = self._new_producer()

        supervise(stop, publish_once, after_failure, name="relay", log=log)

    def close(self) -> None:
        self._producer.close(timeout=5)


class PositionDeduplicator:
    """Drops records a relay resent: for consumers of `carbonx.events.v1`.

    Feed it records in the order a partition delivers them; it yields each journal
    position once. Positions grow within a partition, so remembering the highest one
    per partition is enough. Keep its state with your own offsets to survive restarts.
    """

    def __init__(self) -> None:
        self.last: dict[int, int] = {}

    def __call__(self, records: Iterable[Any]) -> Iterator[Any]:
        for record in records:
            position = int(dict(record.headers)["position"])
            if position > self.last.get(record.partition, 0):
                self.last[record.partition] = position
                yield record
