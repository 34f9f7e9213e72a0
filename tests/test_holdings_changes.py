"""The holdings projection writes only the ranges a batch changed: whatever the moves,
the recorded changes turn the rows as they were into the ranges as they are."""

from __future__ import annotations

import random

from projections.holdings import Changes, Ranges, _last_of, add_ranges, remove_ranges


def _apply(rows: dict[int, int], held: Ranges, changes: Changes) -> None:
    """What Holdings.flush does to the table, on a dict of serial_first -> serial_last."""
    for first, was in changes.items():
        now = _last_of(held, first)
        if now == was:
            continue
        if was is not None:
            assert rows.pop(first) == was
        if now is not None:
            assert first not in rows
            rows[first] = now


def test_recorded_changes_rewrite_exactly_the_changed_rows() -> None:
    rng = random.Random(11)
    held: Ranges = [[1, 1_000]]
    rows = {1: 1_000}
    out: Ranges = []  # serials moved away, to come back later
    for _ in range(300):  # batches
        changes: Changes = {}
        for _ in range(rng.randint(1, 12)):
            if out and rng.random() < 0.5:
                first, last = out.pop(rng.randrange(len(out)))
                add_ranges(held, [(first, last)], changes)
            elif held:
                start, end = held[rng.randrange(len(held))]
                first = rng.randint(start, end)
                last = rng.randint(first, end)
                remove_ranges(held, [(first, last)], changes)
                out.append([first, last])
        _apply(rows, held, changes)
        assert sorted(rows.items()) == [(first, last) for first, last in held]
    assert len(held) > 5  # the history did fragment
