"""Kafka topic setup: create what is missing, leave what exists."""

from __future__ import annotations

import contextlib

__all__ = ["ensure_topic"]


def ensure_topic(bootstrap: str, topic: str, partitions: int, replication: int) -> None:
    """Create `topic` when it is missing (an existing topic is left as it is)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="carbonx-admin")
    try:
        if topic in admin.list_topics():
            return
        with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
            admin.create_topics([NewTopic(topic, partitions, replication)])
    finally:
        admin.close()
