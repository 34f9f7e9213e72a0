"""The engine process: intake log in, journal out, exactly once.

The runner reads a page of commands from the intake log, lets the engine decide each,
and appends all their result events together with the intake position of the last
command in ONE transaction (the tracking record). A crash anywhere therefore leaves
either the whole batch and its tracking position, or neither; on restart the runner
resumes after the tracking position. A stale runner (or a second one) that tries to
append a batch whose commands were already consumed is refused by the tracking table
and resynchronises instead of writing twice.

Every `snapshot_every` commands it also stores the engine's state with its state hash
(in its own log, after the journal batch it reflects), so a restart loads the latest
snapshot and replays only the tail of the intake log, checking that the tail's results
equal what the journal already holds.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass

from events.codec import Pending, decode, frame
from events.exchange import EngineSnapshot
from infra.recorders import TrackingConflict
from infra.store import Store, Tracking
from infra.supervise import supervise
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine

__all__ = ["ENGINE_READER", "EngineRunner", "ReplayMismatch"]

log = logging.getLogger("carbonx.engine")

#: The tracking name under which the engine records the intake position it consumed.
ENGINE_READER = "engine"


class ReplayMismatch(RuntimeError):
    """Re-running the engine over the intake log gave results the journal does not hold."""


@dataclass
class RunnerStats:
    commands: int = 0
    results: int = 0
    batches: int = 0


class EngineRunner:
    def __init__(
        self,
        store: Store,
        config: EngineConfig | None = None,
        *,
        batch: int = 2_000,
        snapshot_every: int = 50_000,
    ) -> None:
        self.store = store
        self.config = config or EngineConfig()
        self.batch = batch
        self.snapshot_every = snapshot_every
        self.engine = Engine(self.config)
        self.position = 0  # last intake position applied to self.engine
        self.journal_position = 0  # journal head as of self.position
        self.stats = RunnerStats()
        self._since_snapshot = 0
        self._dirty = True  # the engine must be recovered before the next step

    # ------------------------------------------------------------------ recovery

    def recover(self) -> int:
        """Rebuild the engine from the latest usable snapshot and the intake tail.

        The tail's results are re-executed and compared with what the journal holds
        (byte for byte); a difference raises :class:`ReplayMismatch`, because an engine
        that disagrees with its own journal must not write another result.
        """
        # A frozen (gc.freeze) engine left behind would never be collected.
        gc.unfreeze()
        tracked = self.store.journal.tracking(ENGINE_READER)
        self.engine = Engine(self.config)
        self.position = self.journal_position = 0
        snapshot = self._latest_snapshot()
        if snapshot is not None and snapshot.intake_position <= tracked:
            try:
                engine = Engine.from_state(snapshot.state, self.config)
            except ValueError as error:
                log.warning("snapshot not used (%s); replaying from the start", error)
            else:
                if engine.state_hash() == snapshot.state_hash:
                    self.engine = engine
                    self.position = snapshot.intake_position
                    self.journal_position = snapshot.journal_position
                else:
                    log.error(
                        "snapshot at intake %s does not hash to its recorded state hash; "
                        "replaying from the start",
                        snapshot.intake_position,
                    )
        if tracked > self.position:
            self._replay_tail(tracked)
        self._since_snapshot = 0
        self._dirty = False
        return self.position

    def _latest_snapshot(self) -> EngineSnapshot | None:
        head, _ = self.store.snapshots.head()
        if head == 0:
            return None
        rows = self.store.snapshots.read(head - 1, 1)
        event = decode(rows[0].body).event
        assert isinstance(event, EngineSnapshot)
        return event

    def _replay_tail(self, upto: int) -> None:
        """Re-apply intake (position, upto], checking each result against the journal."""
        journal = (
            row
            for page in self.store.journal.pages(self.journal_position, None, 10_000)
            for row in page
        )
        position = self.journal_position
        for rows in self.store.intake.pages(self.position, upto, self.batch):
            for row in rows:
                entry = decode(row.body)
                for result in self.engine.apply(entry.position, entry.time, entry.event):
                    position += 1
                    expected = frame(result, self.engine.time, entry.position).body(position)
                    stored = next(journal, None)
                    if stored is None or stored.body != expected:
                        raise ReplayMismatch(
                            f"replaying intake {entry.position} gives journal position "
                            f"{position} as {expected.decode()!r}, the journal holds "
                            f"{None if stored is None else stored.body.decode()!r}; "
                            "were the rules (calendar, fees, bands) changed?"
                        )
                self.position = entry.position
        self.journal_position = position

    # ------------------------------------------------------------------ running

    def step(self) -> int:
        """Process one page of new commands; how many were consumed (0: none waiting).

        If the append fails for any reason, the engine (already moved on in memory) is
        marked for recovery before another step, so nothing is ever applied twice.
        """
        if self._dirty:
            self.recover()
        rows = self.store.intake.read(self.position, self.batch)
        if not rows:
            return 0
        engine = self.engine
        pending: list[Pending] = []
        for row in rows:
            entry = decode(row.body)
            results = engine.apply(entry.position, entry.time, entry.event)
            time = engine.time
            for result in results:
                pending.append(frame(result, time, entry.position))
        last = rows[-1].position
        self._dirty = True
        try:
            appended = self.store.journal.append(
                pending, Tracking(ENGINE_READER, last), follows=self.position
            )
        except TrackingConflict:
            # Another incarnation journaled (some of) these commands first: rebuild from
            # what it wrote and carry on after it.
            log.warning("intake %s..%s already consumed; recovering", rows[0].position, last)
            self.recover()
            return self.step()
        self._dirty = False
        self.position = last
        if appended is not None:
            self.journal_position = appended.last
        self.stats.commands += len(rows)
        self.stats.results += len(pending)
        self.stats.batches += 1
        self._since_snapshot += len(rows)
        if self.snapshot_every and self._since_snapshot >= self.snapshot_every:
            self.take_snapshot()
        return len(rows)

    def take_snapshot(self) -> None:
        snapshot = EngineSnapshot(
            intake_position=self.position,
            journal_position=self.journal_position,
            state_hash=self.engine.state_hash(),
            state=self.engine.state(),
        )
        self.store.snapshots.append([frame(snapshot, self.engine.time)])
        self._since_snapshot = 0

    def run(self, stop: threading.Event, idle: float = 0.5, tune_gc: bool = False) -> None:
        """Follow the intake log until `stop` is set, surviving store outages.

        Any error (database unreachable, lock timeout) is logged and retried with
        backoff; the engine is recovered from the store before it goes on. With
        `tune_gc` (a process that is only an engine), the collector is tuned for a
        large long-lived state: ~7% more commands/s.
        """

        def follow_once() -> None:
            if self._dirty:
                self.recover()
                log.info("engine recovered at intake position %s", self.position)
                if tune_gc:
                    gc.collect()
                    gc.freeze()
                    gc.set_threshold(100_000, 50, 100)
            seen = self.store.generation()
            if self.step() == 0:
                self.store.wait_for_change(seen, idle)

        def after_failure() -> None:
            self._dirty = True  # follow_once recovers before it steps again

        supervise(stop, follow_once, after_failure, name="engine", log=log, fatal=(ReplayMismatch,))

    def drain(self) -> int:
        """Process everything appended so far (tests, CLI tools); commands consumed."""
        total = 0
        while (n := self.step()) > 0:
            total += n
        return total
