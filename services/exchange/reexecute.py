"""Re-execution: run a fresh engine over the intake log and compare with the journal.

Because the engine is deterministic and the codec canonical, the journal must be
reproduced byte for byte: same events, same positions, same causes, same times. The
first entry that differs is reported with both versions, which tells an auditor where
history and the rules part ways (a tampered entry, or a journal produced under other
rules than the ones being replayed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from events.codec import decode, frame
from infra.recorders import Row
from infra.store import Store
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine
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
    journal = _rows(store, None)
    position = commands = results = 0
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
