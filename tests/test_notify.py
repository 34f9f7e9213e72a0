"""Wake-ups between processes that share one SQLite file (SQLite has no NOTIFY)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from events import frame
from events.accounts import CashDeposited
from infra.notify import DatagramBroadcast, Notifier, _hint, sweep_stale
from infra.store import PROJECTIONS, PROJECTIONS_CHANNEL, Store, open_store
from projections import all_projections
from projections.projector import Projector
from services.gateway.submit import OutcomeWatcher


def _deposit(store: Store, amount: int) -> None:
    store.journal.append([frame(CashDeposited(enterprise_id="E1", amount=amount), amount)])


def test_an_append_in_one_store_wakes_a_reader_of_another(tmp_path: Path) -> None:
    """Two stores on one file stand for two processes: each has its own notifier. The
    reader's poll period is made far longer than its wait, so only a wake-up sent by
    the writer can end the wait in time."""
    url = f"sqlite:///{tmp_path}/shared.db"
    with open_store(url) as reader, open_store(url) as writer:
        reader._notifier.poll = 60.0  # only a wake-up can end the wait in time
        woke = threading.Event()

        def wait() -> None:
            if reader.journal.wait(2, timeout=20):
                woke.set()

        waiting = threading.Thread(target=wait)
        waiting.start()
        _deposit(writer, 1)
        _deposit(writer, 2)
        waiting.join(timeout=30)
        assert woke.is_set()
        generation = reader.generation()
        writer.poke()  # a change that is not an append (the projector's commits)
        assert reader.wait_for_change(generation, 20) != generation


def test_a_dead_peer_socket_is_removed_and_the_directory_cleared(tmp_path: Path) -> None:
    database = str(tmp_path / "shared.db")
    mine, theirs = Notifier(poll=60.0), Notifier(poll=60.0)
    broadcast = DatagramBroadcast(database, mine)
    peer = DatagramBroadcast(database, theirs)
    directory = broadcast.directory
    dead = directory / "999999999-0"
    gone = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    gone.bind(str(dead))
    gone.close()  # bound, then its process died: the file stays behind
    mine.poke()
    assert theirs.wait(0, 20) == 1  # the live peer woke
    assert not dead.exists()
    assert sorted(os.listdir(directory)) == sorted(Path(b.path).name for b in (broadcast, peer))
    peer.close()
    broadcast.close()
    assert not directory.exists()


def test_stale_sockets_of_dead_processes_are_swept_from_every_database(tmp_path: Path) -> None:
    """A process killed outright leaves its socket behind; the next process to start
    removes it (and the directory it leaves empty), whichever database it was for."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id that no longer runs
    stale = tmp_path / "carbonx-wake-0123456789abcdef"
    shared = tmp_path / "carbonx-wake-fedcba9876543210"
    for directory, pid in ((stale, gone.pid), (shared, gone.pid), (shared, os.getpid())):
        directory.mkdir(exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(directory / f"{pid}-0"))
        sock.close()
    (tmp_path / "unrelated").mkdir()
    assert sweep_stale(tmp_path) == 2
    assert not stale.exists()
    assert os.listdir(shared) == [f"{os.getpid()}-0"]  # a live process keeps its socket
    assert (tmp_path / "unrelated").exists()


def test_readers_wake_for_their_own_topic_only(store_url: str) -> None:
    """Across two stores on one database (two processes): an append to the journal
    wakes a journal reader and leaves an intake reader asleep, and the read models'
    progress wakes whoever waits for read-your-writes. Polling is made far longer than
    the waits, so only a wake-up can end one early."""
    with open_store(store_url) as reader, open_store(store_url) as writer:
        reader._notifier.poll = 60.0
        journal, intake = reader.generation("journal"), reader.generation("intake")
        projections = reader.generation(PROJECTIONS)
        _deposit(writer, 1)
        assert reader.wait_for_change(journal, 20, "journal") != journal
        assert reader.wait_for_change(intake, 0.5, "intake") == intake
        assert reader.generation(PROJECTIONS) == projections
        if store_url.startswith("postgresql"):
            # A projector in another process announces its commits with a NOTIFY.
            writer.sql.query(f"SELECT pg_notify('{PROJECTIONS_CHANNEL}', '')")
        else:
            writer.poke(PROJECTIONS)
        assert reader.wait_for_change(projections, 20, PROJECTIONS) != projections
        assert reader.wait_for_change(intake, 0.5, "intake") == intake


def test_a_change_without_a_topic_wakes_every_reader() -> None:
    notifier = Notifier(poll=60.0)
    seen = {topic: notifier.count(topic) for topic in ("intake", "journal", PROJECTIONS)}
    notifier.poke()
    for topic, count in seen.items():
        assert notifier.wait(count, 5, topic) == count + 1


def test_a_wake_up_keeps_the_highest_hint_of_its_topic() -> None:
    notifier = Notifier(poll=60.0)
    assert notifier.hint(PROJECTIONS) is None
    for hint in (5, 9, 7, None):
        notifier.wake(PROJECTIONS, hint)
    assert notifier.hint(PROJECTIONS) == 9  # notices may cross: it never goes back
    assert notifier.hint("journal") is None
    assert [_hint(p) for p in ("12", "", "x1", "²", "-3")] == [12, None, None, None, None]


def _await(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_projector_batch_announces_the_last_command_it_completed(pg_url: str) -> None:
    """On PostgreSQL a projector's commit tells every process how far it got: the intake
    position of the last command whose results the batch holds."""
    with open_store(pg_url) as reader, open_store(pg_url) as writer:
        projector = Projector(writer, all_projections())
        writer.journal.append(
            [frame(CashDeposited(enterprise_id="E1", amount=a), 1_000, cause=c)
             for a, c in ((5, 7), (6, 8))]
        )  # fmt: skip
        writer.journal.append([frame(CashDeposited(enterprise_id="E1", amount=7), 2_000)])
        assert projector.step() == 3
        assert _await(lambda: reader.hint(PROJECTIONS) == 8)  # the causeless entry: no news


def test_the_outcome_watcher_looks_only_once_a_batch_reached_its_commands(pg_url: str) -> None:
    """A gateway waiting for the outcome of intake position 100 is woken by every batch of
    the read models; one announced as ending at 50 (another worker's orders) has nothing
    for it and costs no lookup; one ending at 100 does. A request that starts waiting
    for position 200 once the read models are known to stand at 150 is not looked up
    for until a batch reaches it. Polling is made far longer than the test, so only
    wake-ups count."""
    with open_store(pg_url) as store:
        Projector(store, all_projections())  # the read models' tables
        lookups: list[list[int]] = []

        class Counting(OutcomeWatcher):
            def _lookup(self, causes: list[int]) -> dict[int, dict[str, Any]]:
                lookups.append(list(causes))
                return super()._lookup(causes)

        watcher = Counting(store, poll=60.0)

        def announce(hint: int) -> None:
            store.sql.query("SELECT pg_notify(%s, %s)", (PROJECTIONS_CHANNEL, str(hint)))

        async def heard(hint: int) -> None:
            """Announce a batch that got as far as `hint`, and wait till the hint is in."""
            announce(hint)
            assert await asyncio.to_thread(_await, lambda: store.hint(PROJECTIONS) == hint)

        async def looked(count: int) -> bool:
            return await asyncio.to_thread(_await, lambda: len(lookups) == count)

        async def looked_once_reached(cause: int, before: int) -> None:
            """No lookup for `cause` (`before` lookups so far) until a batch reaches it."""
            await asyncio.sleep(0.3)
            assert len(lookups) == before
            announce(cause)
            assert await looked(before + 1)
            assert lookups[-1] == [cause]

        async def scenario() -> None:
            first = asyncio.create_task(watcher.wait_many([100], 60))
            assert await looked(1)  # no hint yet: it looks at once
            await heard(50)
            await looked_once_reached(100, before=1)
            first.cancel()
            assert await asyncio.to_thread(_await, lambda: not watcher._pending)
            await heard(150)  # a wake-up with nothing waiting: it idles till a request
            await asyncio.sleep(0.2)
            second = asyncio.create_task(watcher.wait_many([200], 60))
            await looked_once_reached(200, before=2)
            second.cancel()

        try:
            asyncio.run(scenario())
        finally:
            watcher.close()
