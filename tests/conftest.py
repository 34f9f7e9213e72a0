"""Shared pytest fixtures for carbonx.

Tests run against real servers. By default a throwaway PostgreSQL and a tansu (Kafka-compatible)
broker are started on loopback once per session; point the suite at existing servers instead
with ``CARBONX_TEST_DATABASE_URL`` (the role needs CREATEDB, see ``pg_url``) and
``CARBONX_TEST_KAFKA_BOOTSTRAP``. A server that cannot start fails the tests, never skips them:
a silently skipped integration suite looks exactly like a passing one.

Sections: servers (session) / per-test isolation. Add new fixtures under a matching heading.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from infra.servers import PostgresServer, TansuBroker, replace_dbname

# --------------------------------------------------------------------------------------------
# Servers (one per session)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of the session's PostgreSQL database (``carbonx`` on a throwaway server)."""
    external = os.environ.get("CARBONX_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with PostgresServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``bootstrap_servers`` of the session's Kafka-compatible broker."""
    external = os.environ.get("CARBONX_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    with TansuBroker() as broker:
        yield broker.bootstrap


# --------------------------------------------------------------------------------------------
# Per-test isolation
# --------------------------------------------------------------------------------------------


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    """A private, running broker the test may ``stop()`` / ``restart()`` (same port) at will.

    Always a local tansu, even when CARBONX_TEST_KAFKA_BOOTSTRAP is set: tests using it need to
    control the broker's process.
    """
    with TansuBroker() as fresh:
        yield fresh


@pytest.fixture
def pg_url(database_url: str) -> Iterator[str]:
    """URL of a fresh, empty database on the session server, dropped after the test.

    A database per test (rather than truncating tables) keeps store tests independent of each
    other's schema and data; with fsync off, CREATE DATABASE costs only milliseconds.
    """
    name = f"test_{uuid.uuid4().hex}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield replace_dbname(database_url, name)
    finally:
        # FORCE terminates connections a test leaked (pools, failed teardowns) so the drop works.
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --------------------------------------------------------------------------------------------
# Store backends
# --------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL; every test that takes it runs on BOTH backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/carbonx.db"
    url: str = request.getfixturevalue("pg_url")
    return url
