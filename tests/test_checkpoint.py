"""An SQLite store's WAL is checkpointed by the store's own thread, not by its writers.

A writer that checkpoints pays for copying the WAL back and its fsync inside its
commit: every request waiting on that writer waits too. Nor may the WAL grow without
end once the writers stopped checkpointing.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from events import frame
from events.accounts import CashDeposited
from infra.checkpoint import Checkpointer
from infra.store import open_store


def test_writers_leave_checkpoints_to_the_store_and_the_wal_is_copied_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "carbonx.db"
    with open_store(f"sqlite:///{path}") as store:
        with store.sql.transaction() as cursor:
            cursor.execute("CREATE TABLE filler (k INTEGER PRIMARY KEY, payload TEXT)")
        # Writers' connections: read models' and logs' alike never checkpoint.
        (pages,) = store.sql.query("PRAGMA wal_autocheckpoint")[0]
        assert pages == 0
        store.journal.append([frame(CashDeposited(enterprise_id="E1", amount=1), 1)])
        # ~12 MB, well past the 1,000 pages (4 MB) at which a writer would checkpoint.
        for batch in range(60):
            rows = [(batch * 100 + i, "x" * 2_000) for i in range(100)]
            with store.sql.transaction() as cursor:
                cursor.executemany("INSERT INTO filler VALUES (%s, %s)", rows)
        deadline = time.monotonic() + 10
        while path.stat().st_size < 10_000_000:
            assert time.monotonic() < deadline, "the WAL was not copied back into the file"
            time.sleep(0.05)
        assert store.journal.read(0, 10)[0].position == 1


def test_a_checkpointer_copies_the_wal_of_a_file_no_one_else_checkpoints(tmp_path: Path) -> None:
    path = str(tmp_path / "plain.db")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE t (payload TEXT)")
    writer.executemany("INSERT INTO t VALUES (?)", [("y" * 1_000,)] * 3_000)
    assert os.path.getsize(path) < 100_000  # everything still sits in the WAL
    checkpointer = Checkpointer(path, interval=0.05)
    try:
        deadline = time.monotonic() + 10
        while os.path.getsize(path) < 3_000_000:
            assert time.monotonic() < deadline, "no checkpoint ran"
            time.sleep(0.05)
        assert checkpointer.checkpoints >= 1
    finally:
        checkpointer.close()
        writer.close()
