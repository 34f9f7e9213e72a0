"""Tests for infra/servers.py: the throwaway PostgreSQL and tansu servers really serve.

Everything downstream (event store, projections, the bus) trusts these fixtures, so they are
checked with the real clients the application uses: psycopg and kafka-python.
"""

from __future__ import annotations

import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from infra.servers import PostgresServer, TansuBroker, free_port, replace_dbname

# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def test_postgres_answers_version(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select version()").fetchone()
    assert row is not None
    assert row[0].startswith("PostgreSQL ")


def test_table_survives_reconnect(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("create table credits (id int primary key, tonnes numeric not null)")
        conn.execute("insert into credits values (1, 12.5), (2, 7)")
    # psycopg's connection context manager commits on clean exit; a new connection must see it.
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("select id, tonnes from credits order by id").fetchall()
    assert [(r[0], float(r[1])) for r in rows] == [(1, 12.5), (2, 7.0)]


def test_pg_url_gives_fresh_empty_database(pg_url: str, database_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("select current_database()").fetchone()
        tables = conn.execute(
            "select table_name from information_schema.tables where table_schema = 'public'"
        ).fetchall()
    assert row is not None
    assert row[0].startswith("test_")
    assert row[0] != psycopg.conninfo.conninfo_to_dict(database_url).get("dbname")
    assert tables == []


def test_replace_dbname_handles_urls_and_dsns() -> None:
    assert (
        replace_dbname("postgresql://u:p@h:5433/carbonx?sslmode=disable", "t1")
        == "postgresql://u:p@h:5433/t1?sslmode=disable"
    )
    dsn = psycopg.conninfo.conninfo_to_dict(replace_dbname("host=h port=5433 dbname=x", "t1"))
    assert dsn == {"host": "h", "port": "5433", "dbname": "t1"}


def test_postgres_server_can_start_with_recycled_wal_segments() -> None:
    """Benchmarks start with the WAL segments a server in service has, ready for reuse,
    so that no commit waits while a new one is zero-filled."""
    with PostgresServer(recycled_wal_segments=8) as server:
        with psycopg.connect(server.url) as conn:
            row = conn.execute(
                "select pg_walfile_name(pg_current_wal_lsn()), current_setting('min_wal_size')"
            ).fetchone()
        assert row is not None
        current, min_wal_size = row
        assert server.data_dir is not None
        ahead = [p.name for p in (server.data_dir / "pg_wal").iterdir() if p.name > current]
        assert len([name for name in ahead if len(name) == 24]) >= 8
        assert min_wal_size == "160MB"  # kept at checkpoints, not removed: 8 and 2 spare
    with pytest.raises(ValueError, match="recycled_wal_segments"):
        PostgresServer(recycled_wal_segments=-1)


def test_postgres_server_durable_lifecycle() -> None:
    server = PostgresServer(durable=True)
    with server:
        assert server.url == f"postgresql://postgres@127.0.0.1:{server.port}/carbonx"
        with psycopg.connect(server.url) as conn:
            row = conn.execute("select current_setting('fsync'), current_user").fetchone()
        assert row == ("on", "postgres")
        data_dir = server.data_dir
        assert data_dir is not None
        assert (data_dir / "postgres.log").is_file()
        port = server.port
    assert not data_dir.exists()
    server.stop()  # second stop is a no-op
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2)


def test_postgres_start_failure_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[Path] = []
    real_mkdtemp: Callable[..., str] = tempfile.mkdtemp

    def recording_mkdtemp(*args: object, **kwargs: object) -> str:
        path = real_mkdtemp(*args, **kwargs)
        created.append(Path(path))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = PostgresServer(port=squatter.getsockname()[1], startup_timeout=15)
        with pytest.raises(RuntimeError, match="could not bind"):
            server.start()
    assert created
    assert not any(p.exists() for p in created)
    assert not server.running


# --------------------------------------------------------------------------------------------
# tansu (Kafka-compatible broker)
# --------------------------------------------------------------------------------------------


def _roundtrip(bootstrap: str, count: int = 100) -> None:
    """Create a topic, produce ``count`` messages with acks=all, read them all back in order."""
    topic = f"servers-test-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, f"msg-{i:03d}".encode()) for i in range(count)]
        producer.flush(timeout=30)
        offsets = [f.get(timeout=30).offset for f in futures]
    finally:
        producer.close(timeout=5)
    assert offsets == list(range(count))

    # No consumer group: assign() + seek avoids tansu's slow first JoinGroup entirely.
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        received: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 30
        while len(received) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend((r.offset, r.value) for r in records)
    finally:
        consumer.close()
    assert [offset for offset, _ in received] == list(range(count))
    assert [value for _, value in received] == [f"msg-{i:03d}".encode() for i in range(count)]


def test_tansu_produce_and_consume_in_order(kafka_bootstrap: str) -> None:
    _roundtrip(kafka_bootstrap)


def test_tansu_restart_serves_again_on_same_port(broker: TansuBroker) -> None:
    _roundtrip(broker.bootstrap)
    bootstrap = broker.bootstrap
    broker.restart()
    assert broker.running
    assert broker.bootstrap == bootstrap
    _roundtrip(broker.bootstrap)


def test_tansu_stop_is_idempotent_and_frees_port() -> None:
    broker = TansuBroker(port=free_port())
    with broker:
        log_path = broker.log_path
        assert log_path is not None
        assert log_path.is_file()
    broker.stop()
    assert not broker.running
    assert not log_path.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()


def test_tansu_start_failure_raises_with_log() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        broker = TansuBroker(port=squatter.getsockname()[1], startup_timeout=15)
        # tansu panics on the failed bind (and exits 0); the error must quote its log.
        with pytest.raises(RuntimeError, match="Address in use"):
            broker.start()
    assert not broker.running
    assert broker.log_path is None
