"""Writers of one SQLite file take turns at the write gate: across threads, across
processes (separate open files of the lock), and with SQLite's error after the timeout."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from infra.writegate import WriteGate


def test_writers_take_turns_and_a_held_gate_times_out(tmp_path: Path) -> None:
    path = str(tmp_path / "db.write-lock")
    # Two gates on one lock file behave as two processes would (separate open files).
    mine, theirs = WriteGate(path, timeout=5), WriteGate(path, timeout=0.2)
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def other_process() -> None:
        with mine.held():
            order.append("first in")
            holding.set()
            release.wait(5)
            order.append("first out")

    thread = threading.Thread(target=other_process)
    thread.start()
    assert holding.wait(5)
    with pytest.raises(sqlite3.OperationalError, match="locked"), theirs.held():
        order.append("never")
    waiting = WriteGate(path, timeout=5)
    release_later = threading.Timer(0.1, release.set)
    release_later.start()
    with waiting.held():  # blocks until the holder lets go, then gets in
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]
    for gate in (mine, theirs, waiting):
        gate.close()


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "db.write-lock"), timeout=5)
    inside = 0
    most = 0
    lock = threading.Lock()

    def writer() -> None:
        nonlocal inside, most
        for _ in range(50):
            with gate.held():
                with lock:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.000_2)  # let the other threads try to get in meanwhile
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1
    gate.close()
