"""Crash safety of the read models: `carbonx projector` killed with SIGKILL again and
again while it works, on PostgreSQL. Each incarnation resumes from the positions its
last committed batch recorded; at the end every table equals a clean rebuild: no gap,
no duplicate."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from infra.store import open_store
from projections import all_projections
from projections.projector import Projector, tracking_positions
from scripts.processes import carbonx
from scripts.workload import workload
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.intake import Intake
from services.exchange.runner import EngineRunner
from tests.test_projections import _checksums

KILLS = 8
COMMANDS = 30_000


def test_sigkill_mid_batch_leaves_tables_equal_to_a_clean_rebuild(
    pg_url: str, tmp_path: Path
) -> None:
    with open_store(pg_url) as store:
        # Enough work that the projector is still at it when the first kill comes: with
        # a batch in one round trip it projected 12,000 commands' results (18,570
        # entries) within the first window, and no incarnation had anything left to do.
        Intake(store).submit(workload(COMMANDS, enterprises=40, seed=5))
        EngineRunner(store, EngineConfig(calendar=ALWAYS), batch=1_000).drain()
        head = store.journal.head()[0]
    rng = random.Random(7)
    progress = []
    for _ in range(KILLS):
        process = carbonx("projector", "--db", pg_url, "--batch", "400")
        time.sleep(rng.uniform(1.5, 3.0))  # startup takes about a second
        assert process.poll() is None, process.stderr.read() if process.stderr else b""
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        with open_store(pg_url) as store:
            positions = tracking_positions(store.sql)
        # Every projection commits its rows with its position: all stand together.
        assert len(set(positions.values())) == 1, positions
        progress.append(min(positions.values()))
    assert progress[-1] > progress[0], f"the projector made no progress: {progress}"
    finished = carbonx("projector", "--db", pg_url, "--once")
    assert finished.wait(timeout=120) == 0
    with open_store(pg_url) as store:
        assert set(tracking_positions(store.sql).values()) == {head}
        crashed = _checksums(store)
        Projector(store, all_projections()).rebuild()
        assert _checksums(store) == crashed
