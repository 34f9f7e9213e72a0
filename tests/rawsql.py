"""Run SQL behind the store's back, as an attacker or a careless DBA would."""

from __future__ import annotations

import sqlite3
from typing import Any

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


def rewrite_and_rechain(url: str, log: str, position: int, body: bytes) -> None:
    """Replace the body of `log`'s entry at `position` and recompute the hash chain from
    there on, as a forger with write access to the table would: the chain stays whole."""
    from events.chain import GENESIS, link, seal, unseal

    table, key = f"{log}_events", "rowid" if url.startswith("sqlite") else "notification_id"
    select = f"SELECT {key}, state FROM {table} WHERE {key} >= {position - 1} ORDER BY {key}"
    update = f"UPDATE {table} SET state = %s WHERE {key} = %s"
    if url.startswith("sqlite"):
        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        update = update.replace("%s", "?")
    else:
        conn = psycopg.connect(url, autocommit=False)
    with conn:
        rows = [(at, bytes(state)) for at, state in conn.execute(select).fetchall()]
        previous = GENESIS
        for at, state in rows:
            old, digest = unseal(state)
            if at < position:
                previous = digest
                continue
            new = body if at == position else old
            previous = link(previous, new)
            conn.execute(update, (seal(new, previous), at))
