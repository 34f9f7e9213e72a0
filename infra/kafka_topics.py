"""Kafka topic setup: create what is missing, leave what exists."""

from __future__ import annotations

import contextlib
import logging
import time

__all__ = ["BrokerUnreachable", "ensure_topic"]

log = logging.getLogger("carbonx.kafka")


class BrokerUnreachable(ConnectionError):
    """No Kafka broker answered at the configured bootstrap address."""


def ensure_topic(
    bootstrap: str, topic: str, partitions: int, replication: int, wait: float = 30.0
) -> None:
    """Create `topic` when it is missing (an existing topic is left as it is).

    A broker that is still starting is retried with backoff for up to `wait` seconds;
    then :class:`BrokerUnreachable` says which address did not answer.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + wait
    backoff = 0.2
    while True:
        remaining_ms = max(500, int((deadline - time.monotonic()) * 1000))
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="carbonx-admin",
                bootstrap_timeout_ms=min(remaining_ms, 5_000),
            )
            break
        except KafkaError as error:
            if time.monotonic() + backoff > deadline:
                raise BrokerUnreachable(
                    f"no Kafka broker answers at {bootstrap} ({error}); "
                    "check --kafka / CARBONX_KAFKA_BOOTSTRAP"
                ) from error
            log.warning("Kafka at %s not reachable yet (%s); retrying", bootstrap, error)
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    try:
        if topic in admin.list_topics():
            return
        with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
            admin.create_topics([NewTopic(topic, partitions, replication)])
    finally:
        admin.close()
