"""Chain verification in parallel ranges gives exactly the report of one walk.

A log of 100 entries is cut into four ranges (1-25, 26-50, 51-75, 76-100), each checked
by its own worker process, and tampered with at the first entry, on both sides of a
range boundary and at the last entry: the parallel report must equal the one a single
ChainWalker gives over the same stored rows, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from rawsql import delete_journal_entry

from events import ChainReport, ChainWalker, frame
from events.accounts import CashDeposited
from infra.chainscan import plan, verify_in_workers
from infra.store import Store, open_store

N = 100
WORKERS = 4
RANGES = [(1, 25), (26, 50), (51, 75), (76, 100)]
#: The first entry, both sides of every boundary, the last entry.
EDGES = [1, 25, 26, 50, 51, 75, 76, 100]


def _fill(url: str) -> None:
    with open_store(url) as store:
        store.journal.append(
            frame(CashDeposited(enterprise_id=f"E{i % 7}", amount=i), 1_700_000_000_000_000 + i)
            for i in range(1, N + 1)
        )


def _payload(url: str, position: int) -> bytes:
    with open_store(url) as store:
        [row] = store.journal.read(position - 1, 1)
    assert row.position == position
    return row.payload


def _set_payload(url: str, position: int, payload: bytes) -> None:
    """Overwrite one stored payload behind the store's back."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE journal_events SET state = ? WHERE rowid = ?", (payload, position))
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "UPDATE journal_events SET state = %s WHERE notification_id = %s",
                (payload, position),
            )


def _walked(store: Store) -> ChainReport:
    """The reference: one walker over every stored row, in order."""
    walker = ChainWalker()
    for page in store.journal.pages(batch=30):
        if not walker.feed((row.position, row.payload) for row in page):
            break
    return walker.report()


def _parallel(store: Store, progress: Callable[[int], None] | None = None) -> ChainReport:
    """Straight through the worker processes (on PostgreSQL, Log.verify would first
    check inside the database and only start workers when that finds a break)."""
    head = store.journal.position
    job = store.journal._recorder.chain_job()
    assert job is not None
    flags = ("-S",) if job["backend"] == "sqlite" else ()
    return verify_in_workers({**job, "page": 10}, plan(head, WORKERS), progress, flags)


def _check(url: str) -> ChainReport:
    with open_store(url) as store:
        expected = _walked(store)
        in_database = getattr(store.journal._recorder, "first_broken_link", None)
        if in_database is not None:  # PostgreSQL's own check names the same position
            assert in_database(WORKERS)[1] == expected.broken_at
        assert _parallel(store) == expected
        assert store.journal.verify(batch=10, workers=WORKERS, parallel_from=0) == expected
        assert store.journal.verify(batch=10, workers=1) == expected  # in-process
    return expected


def test_the_plan_cuts_positions_into_consecutive_ranges() -> None:
    assert plan(N, WORKERS) == RANGES
    assert plan(10, 3) == [(1, 4), (5, 8), (9, 10)]
    assert plan(2, 4) == [(1, 1), (2, 2)]
    assert plan(0, 4) == []


def test_an_intact_chain_verifies_in_parallel_with_progress(store_url: str) -> None:
    _fill(store_url)
    seen: list[int] = []
    with open_store(store_url) as store:
        report = _parallel(store, seen.append)
        assert report == _walked(store)
        assert report.ok and report.events == N and report.head_position == N
        assert report.head_hash == store.journal.head()[1]
        assert sum(seen) == N
        seen.clear()
        assert store.journal.verify(workers=WORKERS, parallel_from=0, progress=seen.append).ok
        assert sum(seen) == N


@pytest.mark.parametrize("position", EDGES)
def test_a_changed_payload_is_named_at_a_range_edge(store_url: str, position: int) -> None:
    _fill(store_url)
    payload = _payload(store_url, position)
    _set_payload(store_url, position, payload.replace(b'"amount":', b'"amount":9'))
    report = _check(store_url)
    assert not report.ok and report.broken_at == position
    assert report.events == position - 1 and "hash mismatch" in (report.reason or "")


@pytest.mark.parametrize("position", EDGES)
def test_a_deleted_entry_is_named_at_a_range_edge(store_url: str, position: int) -> None:
    _fill(store_url)
    delete_journal_entry(store_url, position)
    report = _check(store_url)
    if position == N:  # the chain simply ends one entry earlier
        assert report.ok and report.events == N - 1
    else:
        assert not report.ok and report.broken_at == position
        assert f"next stored position is {position + 1}" in (report.reason or "")


@pytest.mark.parametrize("position", [1, 25, 50, 75, 99])
def test_entries_swapped_across_a_range_edge_are_named(store_url: str, position: int) -> None:
    _fill(store_url)
    first, second = _payload(store_url, position), _payload(store_url, position + 1)
    _set_payload(store_url, position, second)
    _set_payload(store_url, position + 1, first)
    report = _check(store_url)
    assert not report.ok and report.broken_at == position


@pytest.mark.parametrize("position", [25, 26, 100])
def test_a_lost_seal_is_named_at_a_range_edge(store_url: str, position: int) -> None:
    _fill(store_url)
    _set_payload(store_url, position, _payload(store_url, position)[:-80] + b"}")
    report = _check(store_url)
    assert not report.ok and report.broken_at == position
    assert report.reason == "payload carries no hash seal"


def test_a_forged_link_breaks_the_next_range(store_url: str) -> None:
    """Entry 25 rewritten with a correctly recomputed hash: its own link holds, so the
    break is the first link of the next range, which starts from 25's stored hash."""
    from events.chain import link, seal, unseal

    _fill(store_url)
    body, _ = unseal(_payload(store_url, 25))
    _, previous = unseal(_payload(store_url, 24))
    forged = body.replace(b'"amount":', b'"amount":9')
    _set_payload(store_url, 25, seal(forged, link(previous, forged)))
    report = _check(store_url)
    assert not report.ok and report.broken_at == 26 and report.events == 25


def test_workers_open_a_relative_sqlite_path_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///data/relative.db"
    _fill(url)
    with open_store(url) as store:
        monkeypatch.chdir("/")  # the workers start in another directory
        report = store.journal.verify(batch=10, workers=WORKERS, parallel_from=0)
    assert report.ok and report.events == N
