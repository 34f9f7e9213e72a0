"""The event store, on SQLite and on PostgreSQL alike (every test runs on both)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from rawsql import delete_journal_entry, raw_sql

from events import ChainWalker, decode, frame
from events.accounts import CashDeposited
from events.codec import Pending
from infra.recorders import Claimed, TrackingConflict
from infra.store import Store, Tracking, open_store


def _pending(n: int, start: int = 0, tag: str = "E") -> list[Pending]:
    return [
        frame(CashDeposited(enterprise_id=f"{tag}{i % 200}", amount=i), 1_700_000_000_000_000 + i)
        for i in range(start, start + n)
    ]


def _in_two_writers(store_url: str, write: Callable[[Store, str], None]) -> None:
    """Run `write(store, tag)` for tags "A" and "B" at once, each in a thread with a
    store of its own (as two processes have); re-raise what either raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(tag: str) -> None:
        try:
            with open_store(store_url) as own:
                start.wait()
                write(own, tag)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as opened:
        yield opened


def test_100k_events_in_batches_read_back_identical_and_in_order(store: Store) -> None:
    pending = _pending(100_000)
    for start in range(0, 100_000, 5_000):
        appended = store.journal.append(pending[start : start + 5_000])
        assert appended is not None
        assert (appended.first, appended.last) == (start + 1, start + 5_000)

    read = [row for page in store.journal.pages(batch=7_777) for row in page]
    assert [row.position for row in read] == list(range(1, 100_001))
    assert [row.body for row in read] == [p.body(i + 1) for i, p in enumerate(pending)]
    assert decode(read[12_345].body).event == CashDeposited(enterprise_id="E145", amount=12_345)
    assert store.journal.verify().ok


def test_a_failure_inside_the_transaction_writes_nothing(store: Store) -> None:
    store.journal.append(_pending(10), Tracking("engine", 10))
    before = store.journal.head()

    def exploding() -> Iterator[Pending]:
        yield from _pending(500, start=10)
        raise RuntimeError("boom in the middle of the batch")

    with pytest.raises(RuntimeError, match="boom"):
        store.journal.append(exploding(), Tracking("engine", 20))
    assert store.journal.head() == before
    assert store.journal.tracking("engine") == 10
    assert len(store.journal.read(0, 1000)) == 10


def test_a_tracking_position_alone_moves_forward_only(store: Store) -> None:
    """An append with nothing to append but a position (a batch whose commands all
    produced nothing) records it; one that would not move it forward is refused."""
    assert store.journal.append([], Tracking("engine", 3)) is None
    assert store.journal.tracking("engine") == 3
    with pytest.raises(TrackingConflict):
        store.journal.append([], Tracking("engine", 3))
    assert store.journal.tracking("engine") == 3
    assert store.journal.head()[0] == 0
    store.journal.append(_pending(2), Tracking("engine", 4))
    assert store.journal.tracking("engine") == 4
    assert store.journal.head()[0] == 2


def test_tracking_that_does_not_advance_refuses_the_whole_batch(store: Store) -> None:
    store.journal.append(_pending(5), Tracking("engine", 7))
    with pytest.raises(TrackingConflict):
        store.journal.append(_pending(5, start=5), Tracking("engine", 7))
    assert store.journal.head()[0] == 5
    assert store.journal.tracking("engine") == 7
    # A new position goes through, and continues the chain without a gap.
    appended = store.journal.append(_pending(5, start=5), Tracking("engine", 8))
    assert appended is not None and (appended.first, appended.last) == (6, 10)
    assert store.journal.tracking("engine") == 8
    assert store.journal.tracking("projector") == 0


def test_two_writers_never_interleave_inside_a_batch_and_leave_no_gaps(store_url: str) -> None:
    batches, size = 30, 200

    def write(own: Store, tag: str) -> None:
        for b in range(batches):
            own.journal.append(_pending(size, start=b * size, tag=f"{tag}{b}-"))

    _in_two_writers(store_url, write)

    with open_store(store_url) as check:
        rows = [row for page in check.journal.pages() for row in page]
        assert [row.position for row in rows] == list(range(1, 2 * batches * size + 1))
        # Each aligned run of `size` entries belongs to exactly one writer's batch.
        for start in range(0, len(rows), size):
            owners = {
                decode(row.body).event.enterprise_id.split("-")[0]  # type: ignore[attr-defined]
                for row in rows[start : start + size]
            }
            assert len(owners) == 1, f"batch at {start + 1} interleaves {owners}"
        assert check.journal.verify().ok


def test_a_claim_is_taken_once_and_a_taken_one_refuses_the_whole_append(store: Store) -> None:
    first = store.intake.append(_pending(3), claims=[("E1", "a"), ("E1", "b")])
    assert first is not None
    head = store.intake.head()

    # "b" is taken: nothing of this append is written, "c" included.
    with pytest.raises(Claimed) as refused:
        store.intake.append(_pending(2, start=3), claims=[("E1", "c"), ("E1", "b")])
    assert refused.value.pairs == [("E1", "b")]
    assert store.intake.head() == head
    # Nor twice in one append.
    with pytest.raises(Claimed) as twice:
        store.intake.append(_pending(2, start=3), claims=[("E1", "d"), ("E1", "d")])
    assert twice.value.pairs == [("E1", "d")]
    assert store.intake.head() == head

    # "c" and "d" were left free; the same key in another scope is another claim.
    after = store.intake.append(_pending(2, start=3), claims=[("E1", "c"), ("E2", "b")])
    assert after is not None and (after.first, after.last) == (4, 5)
    assert store.intake.append(_pending(1, start=5), claims=[("E1", "d")]) is not None
    with pytest.raises(Claimed):
        store.intake.append(_pending(1, start=6), claims=[("E2", "b")])
    # Claims belong to their log, and an append without claims checks none.
    assert store.journal.append(_pending(1), claims=[("E1", "a")]) is not None
    assert store.intake.append(_pending(1, start=6)) is not None


def test_two_writers_claiming_the_same_keys_take_each_once(store_url: str) -> None:
    """Writers in separate processes' stores, racing for the same keys: each key goes
    to exactly one append, and the refused appends leave no entries behind."""
    rounds = 40
    won: dict[str, list[int]] = {"A": [], "B": []}

    def write(own: Store, tag: str) -> None:
        for r in range(rounds):
            try:
                own.intake.append(_pending(5, tag=f"{tag}{r}-"), claims=[("E", f"k{r}")])
            except Claimed:
                continue
            won[tag].append(r)

    _in_two_writers(store_url, write)
    assert sorted(won["A"] + won["B"]) == list(range(rounds))
    with open_store(store_url) as check:
        rows = [row for page in check.intake.pages() for row in page]
        assert [row.position for row in rows] == list(range(1, 5 * rounds + 1))
        assert check.intake.verify().ok


def test_the_chain_continues_across_reopening(store_url: str) -> None:
    with open_store(store_url) as first:
        first.journal.append(_pending(3))
        head = first.journal.head()
    with open_store(store_url) as second:
        assert second.journal.head() == head
        second.journal.append(_pending(3, start=3))
        report = second.journal.verify()
    assert report.ok and report.events == 6


def test_intake_and_journal_are_separate_logs(store: Store) -> None:
    store.intake.append(_pending(4))
    store.journal.append(_pending(2))
    assert store.intake.head()[0] == 4 and store.journal.head()[0] == 2
    assert store.intake.verify().ok and store.journal.verify().ok


def test_wait_and_follow_wake_on_new_positions(store: Store) -> None:
    assert not store.journal.wait(1, timeout=0.05)
    seen: list[int] = []
    stop = threading.Event()

    def follower() -> None:
        for page in store.journal.follow(after=0, stop=stop, idle=0.05):
            seen.extend(row.position for row in page)
            if len(seen) >= 30:
                stop.set()

    thread = threading.Thread(target=follower)
    thread.start()
    for start in range(0, 30, 10):
        store.journal.append(_pending(10, start=start))
    assert store.journal.wait(30, timeout=5)
    thread.join(timeout=10)
    assert seen == list(range(1, 31))


def test_verifier_names_a_payload_changed_in_the_database(store_url: str) -> None:
    with open_store(store_url) as store:
        store.journal.append(_pending(1_000))
    raw_sql(
        store_url,
        "UPDATE journal_events SET state = CAST(replace(CAST(state AS TEXT), "
        "'\"amount\":617', '\"amount\":716') AS BLOB) WHERE rowid = 618",
        "UPDATE journal_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
        "'\"amount\":617', '\"amount\":716'), 'UTF8') WHERE notification_id = 618",
    )
    with open_store(store_url) as store:
        report = store.journal.verify()
    assert not report.ok and report.broken_at == 618
    assert report.events == 617


def test_verifier_names_a_deleted_event(store_url: str) -> None:
    with open_store(store_url) as store:
        store.journal.append(_pending(100))
    delete_journal_entry(store_url, 40)
    with open_store(store_url) as store:
        report = store.journal.verify()
    assert not report.ok and report.broken_at == 40 and "missing" in (report.reason or "")


def test_walker_matches_store_verify_page_by_page(store: Store) -> None:
    store.journal.append(_pending(250))
    walker = ChainWalker()
    for page in store.journal.pages(batch=33):
        walker.feed((row.position, row.payload) for row in page)
    assert walker.report() == store.journal.verify(batch=100)


def test_verifier_names_two_reordered_events(store_url: str) -> None:
    with open_store(store_url) as store:
        store.journal.append(_pending(50))
    raw_sql(
        store_url,
        "CREATE TEMP TABLE swap AS SELECT rowid AS p, state FROM journal_events "
        "WHERE rowid IN (10, 11);"
        "UPDATE journal_events SET state = (SELECT state FROM swap WHERE p = 21 - "
        "journal_events.rowid) WHERE rowid IN (10, 11);",
        "UPDATE journal_events t SET state = o.state FROM journal_events o "
        "WHERE t.notification_id IN (10, 11) AND o.notification_id = 21 - t.notification_id",
    )
    with open_store(store_url) as store:
        rows = store.journal.read(9, 2)
        assert b'"position":11' in rows[0].payload  # really swapped
        report = store.journal.verify()
    assert not report.ok and report.broken_at == 10 and report.events == 9


def test_postgres_checks_every_link_inside_the_database(pg_url: str) -> None:
    """The one-pass SQL check agrees with the walker: intact, then a changed payload."""
    with open_store(pg_url) as store:
        store.journal.append(_pending(500))
        recorder = store.journal._recorder
        assert recorder.first_broken_link() == (500, None)  # type: ignore[attr-defined]
        walked = ChainWalker()
        walked.feed((row.position, row.payload) for page in store.journal.pages() for row in page)
        assert store.journal.verify() == walked.report()
    raw_sql(
        pg_url,
        "",
        "UPDATE journal_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
        "'\"amount\":249', '\"amount\":250'), 'UTF8') WHERE notification_id = 250",
    )
    with open_store(pg_url) as store:
        recorder = store.journal._recorder
        assert recorder.first_broken_link() == (500, 250)  # type: ignore[attr-defined]
        assert store.journal.verify().broken_at == 250
