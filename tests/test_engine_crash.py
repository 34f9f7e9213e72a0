"""Crash safety: the engine process killed with SIGKILL, again and again, on PostgreSQL.

Each incarnation resumes from the latest snapshot and its tracking position; at the end
the journal must equal, byte for byte, an uninterrupted run over the same intake log:
nothing lost, nothing duplicated.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

from infra.store import open_store
from scripts.processes import carbonx
from scripts.workload import workload
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.intake import Intake
from services.exchange.runner import ENGINE_READER, EngineRunner

KILLS = 20


def _engine(url: str) -> subprocess.Popen[bytes]:
    return carbonx(
        "engine",
        "--db",
        url,
        "--calendar",
        "always",
        "--batch",
        "300",
        "--snapshot-every",
        "500",
    )


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    commands = workload(40_000, enterprises=50, seed=11)
    rng = random.Random(2026)

    with open_store(pg_url) as store:
        intake = Intake(store)

        def feed() -> None:
            # Paced over the whole kill loop (~20 s), so commands keep arriving while the
            # engine is killed, however fast the engine gets.
            for start in range(0, len(commands), 500):
                intake.submit(commands[start : start + 500])
                time.sleep(0.25)

        feeder = threading.Thread(target=feed)
        feeder.start()
        progress = []
        mid_stream_kills = 0
        for _ in range(KILLS):
            before = store.journal.tracking(ENGINE_READER)
            process = _engine(pg_url)
            # Kill a working engine: wait for its first journaled batch (it has started
            # and recovered), then let it run a random little while longer.
            deadline = time.monotonic() + 60
            while store.journal.tracking(ENGINE_READER) == before < len(commands):
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "engine made no progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.3))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            at_kill = store.journal.tracking(ENGINE_READER)
            progress.append(at_kill)
            if at_kill < len(commands):
                mid_stream_kills += 1
        feeder.join()

        final = _engine(pg_url)
        deadline = time.monotonic() + 120
        while store.journal.tracking(ENGINE_READER) < len(commands):
            assert final.poll() is None, final.stderr.read() if final.stderr else ""
            assert time.monotonic() < deadline, "engine did not catch up"
            time.sleep(0.1)
        final.send_signal(signal.SIGTERM)
        final.wait(timeout=20)

        journal = [row.payload for page in store.journal.pages() for row in page]
        assert store.journal.verify().ok and store.snapshots.verify().ok
        snapshots = store.snapshots.head()[0]

    # The kills really interrupted work in progress, many times over.
    assert mid_stream_kills >= 10, progress
    assert len(set(progress)) >= 10, progress
    assert snapshots >= 3

    with open_store(f"sqlite:///{tmp_path}/clean.db") as clean:
        Intake(clean).submit(commands)
        runner = EngineRunner(clean, EngineConfig(calendar=ALWAYS))
        runner.recover()
        runner.drain()
        expected = [row.payload for page in clean.journal.pages() for row in page]
    assert len(journal) == len(expected)
    assert journal == expected
