"""Re-execution: run a fresh engine over the intake log and compare with the journal.

Because the engine is deterministic and the codec canonical, the journal must be
reproduced byte for byte: same events, same positions, same causes, same times. The
first entry that differs is reported with both versions, which tells an auditor where
history and the rules part ways (a tampered entry, or a journal produced under other
rules than the ones being replayed).

Snapshots are checked on the way: each must hold exactly the state the re-run reaches
at its intake position. A snapshot changes no journal entry, so without this a forged
one (its state and its state hash rewritten together, the snapshot log re-chained)
would pass unnoticed, and point-in-time replay, which starts from snapshots, would
show the forged state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from events.codec import decode, frame
from events.exchange import EngineSnapshot
from infra.recorders import Row
from infra.store import Store
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine, hash_state
from services.exchange.runner import ENGINE_READER

__all__ = ["Reexecution", "reexecute"]


@dataclass(frozen=True)
class Reexecution:
    ok: bool
    commands: int
    results: int
    state_hash: str
    differs_at: int | None = None  # journal position
    expected: str | None = None  # what re-execution produced there
    found: str | None = None  # what the journal holds there
    #: A difference that is not one journal entry (a snapshot, a truncated intake log).
    problem: str | None = None
    snapshot_at: int | None = None  # the snapshot log position it concerns


Snapshots = Iterator[tuple[int, EngineSnapshot | None]]


def _snapshots(store: Store) -> Snapshots:
    """Every snapshot entry, oldest first: (its position, the snapshot or None if it
    cannot be read as one)."""
    for page in store.snapshots.pages(0, None, 20):
        for row in page:
            try:
                event = decode(row.body).event
            except Exception:  # the chain check names a broken entry; this, a forged one
                yield row.position, None
                continue
            yield row.position, event if isinstance(event, EngineSnapshot) else None


def _snapshot_problem(
    position: int, snapshot: EngineSnapshot | None, engine: Engine, journal: int
) -> str | None:
    """What is wrong with the snapshot at `position`, compared with `engine` after the
    command it names (`journal`: the journal's head then)."""
    if snapshot is None:
        return f"snapshot {position} is not an engine snapshot"
    at = snapshot.intake_position
    reached = engine.state_hash()
    if snapshot.state_hash != reached:
        return (
            f"snapshot {position} (after intake position {at}) has state hash "
            f"{snapshot.state_hash}; re-execution reaches {reached} there"
        )
    if hash_state(snapshot.state) != snapshot.state_hash:
        return f"snapshot {position}'s state does not hash to its own state hash"
    if snapshot.journal_position != journal:
        return (
            f"snapshot {position} says the journal stood at {snapshot.journal_position} "
            f"after intake position {at}; it stood at {journal}"
        )
    return None


def _rows(store: Store, upto: int | None) -> Iterator[Row]:
    for page in store.journal.pages(0, upto, 20_000):
        yield from page


def _cause(row: Row) -> int:
    """The intake position a journal entry answers (0 if unreadable: a difference)."""
    try:
        cause = orjson.loads(row.body).get("cause")
    except orjson.JSONDecodeError:
        return 0
    return cause if isinstance(cause, int) else 0


def reexecute(
    store: Store,
    config: EngineConfig | None = None,
    progress: Callable[[int], None] | None = None,
    upto: int | None = None,
) -> Reexecution:
    """Re-run intake positions 1..`upto` (default: all the engine has consumed).

    Journal entries answering later commands (an engine still running while this
    reads) are not part of the comparison.
    """
    engine = Engine(config)
    consumed = store.journal.tracking(ENGINE_READER) if upto is None else upto
    if store.intake.position < consumed:
        return Reexecution(
            False, 0, 0, engine.state_hash(),
            problem=f"the engine recorded consuming the intake log up to position "
            f"{consumed}, but it ends at {store.intake.position}: commands are missing",
        )  # fmt: skip
    journal = _rows(store, None)
    snapshots = _snapshots(store)
    snapshot = next(snapshots, None)
    position = commands = results = 0

    def snapshot_due(intake_position: int) -> Reexecution | None:
        """Check every snapshot taken after `intake_position`; a failure, or None."""
        nonlocal snapshot
        while snapshot is not None and (
            snapshot[1] is None or snapshot[1].intake_position <= intake_position
        ):
            at, taken = snapshot
            problem: str | None
            if taken is not None and taken.intake_position < intake_position:
                problem = f"snapshot {at} names intake position {taken.intake_position}, "
                problem += "out of order"
            else:
                problem = _snapshot_problem(at, taken, engine, position)
            if problem is not None:
                return Reexecution(
                    False, commands, results, engine.state_hash(),
                    problem=problem, snapshot_at=at,
                )  # fmt: skip
            snapshot = next(snapshots, None)
        return None

    failed = snapshot_due(0)
    if failed is not None:
        return failed
    for page in store.intake.pages(0, consumed, 20_000):
        for row in page:
            entry = decode(row.body)
            commands += 1
            for result in engine.apply(entry.position, entry.time, entry.event):
                position += 1
                results += 1
                expected = frame(result, engine.time, entry.position).body(position)
                stored = next(journal, None)
                if stored is None or stored.position != position or stored.body != expected:
                    if stored is not None and _cause(stored) > consumed:
                        stored = None  # answers a later command: ours is missing
                    return Reexecution(
                        False,
                        commands,
                        results,
                        engine.state_hash(),
                        position,
                        expected.decode(),
                        None if stored is None else stored.body.decode(),
                    )
            if snapshot is not None:
                failed = snapshot_due(entry.position)
                if failed is not None:
                    return failed
        if progress is not None:
            progress(len(page))
    extra = next(journal, None)
    if extra is not None and _cause(extra) <= consumed:
        return Reexecution(
            False,
            commands,
            results,
            engine.state_hash(),
            extra.position,
            None,
            extra.body.decode(),
        )
    return Reexecution(True, commands, results, engine.state_hash())
