"""Run SQL behind the store's back, as an attacker or a careless DBA would."""

from __future__ import annotations

import sqlite3

import psycopg


def raw_sql(url: str, sqlite_sql: str, postgres_sql: str) -> None:
    """Execute the statement for the store's backend directly on its database."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.executescript(sqlite_sql)
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(postgres_sql.encode())


def delete_journal_entry(url: str, position: int) -> None:
    raw_sql(
        url,
        f"DELETE FROM journal_events WHERE rowid = {position}",
        f"DELETE FROM journal_events WHERE notification_id = {position}",
    )
