"""Credit holdings as serial ranges, and the registry of issued and cancelled serials.

The engine publishes the exact serials of every movement (issuance blocks, each fill's
delivery, transfers, surrenders, retirements), so who holds which serial is a fold over
the journal. A serial that would be added to a holder who already has it, or removed
from one who does not, means the journal contradicts itself: the projection refuses
(:class:`SerialConflict`) rather than publish a double count.
"""

from __future__ import annotations

import bisect
from typing import Any

import orjson

from events import accounts as a
from events import exchange as x
from infra.sqldb import Cursor, SqlDatabase
from projections.base import Entry, Projection, Table

__all__ = ["Holdings", "SerialConflict", "holdings_of"]

Ranges = list[list[int]]

HOLDINGS = Table(
    "rm_holdings",
    (
        ("enterprise_id", "TEXT NOT NULL"),
        ("instrument", "TEXT NOT NULL"),
        ("serial_first", "BIGINT NOT NULL"),
        ("serial_last", "BIGINT NOT NULL"),
    ),
    # Keyed by holder first: each batch rewrites a holder's ranges of an instrument.
    key=("enterprise_id", "instrument", "serial_first"),
    indexes=(("instrument", "serial_first"),),
)
ISSUANCES = Table(
    "rm_issuances",
    (
        ("position", "BIGINT NOT NULL"),
        ("time", "BIGINT NOT NULL"),
        ("enterprise_id", "TEXT NOT NULL"),
        ("instrument", "TEXT NOT NULL"),
        ("quantity", "BIGINT NOT NULL"),
        ("serial_first", "BIGINT NOT NULL"),
        ("serial_last", "BIGINT NOT NULL"),
        ("reason", "TEXT NOT NULL"),
    ),
    key=("position",),
)
CANCELLATIONS = Table(
    "rm_cancellations",
    (
        ("position", "BIGINT NOT NULL"),
        ("time", "BIGINT NOT NULL"),
        ("kind", "TEXT NOT NULL"),  # surrender | retirement
        ("enterprise_id", "TEXT NOT NULL"),
        ("instrument", "TEXT NOT NULL"),
        ("quantity", "BIGINT NOT NULL"),
        ("serials", "TEXT NOT NULL"),  # JSON [[first, last], ...]
        ("period", "TEXT"),
        ("beneficiary", "TEXT"),
        ("reason", "TEXT"),
    ),
    key=("position",),
)
TRANSFERS = Table(
    "rm_transfers",
    (
        ("position", "BIGINT NOT NULL"),
        ("time", "BIGINT NOT NULL"),
        ("from_enterprise_id", "TEXT NOT NULL"),
        ("to_enterprise_id", "TEXT NOT NULL"),
        ("instrument", "TEXT NOT NULL"),
        ("quantity", "BIGINT NOT NULL"),
        ("serials", "TEXT NOT NULL"),  # JSON [[first, last], ...]
        ("reason", "TEXT NOT NULL"),
    ),
    key=("position",),
    indexes=(("time",),),
)


class SerialConflict(ValueError):
    """The journal moves a serial its holder does not have, or gives one twice."""


Changes = dict[int, int | None]  # serial_first -> its serial_last before (None: absent)


def add_ranges(held: Ranges, ranges: Any, changes: Changes | None = None) -> None:
    """Merge `ranges` into the sorted, disjoint `held` (in place), joining neighbours.

    Binary search keeps this O(log n) per range plus the list insert: a holder's
    ranges fragment with every partial fill, and a rebuild applies millions of them.
    `changes` collects, for every range start this touches, what it was before the
    first change (so a flush writes just those rows).
    """
    log = {} if changes is None else changes
    for first, last in ranges:
        index = bisect.bisect_left(held, [first])
        before = held[index - 1] if index else None
        after = held[index] if index < len(held) else None
        if (before is not None and before[1] >= first) or (after is not None and after[0] <= last):
            clash = before if before is not None and before[1] >= first else after
            assert clash is not None
            raise SerialConflict(f"serials {first}-{last} overlap held {clash[0]}-{clash[1]}")
        joins_before = before is not None and before[1] + 1 == first
        joins_after = after is not None and last + 1 == after[0]
        if joins_before and joins_after:
            assert before is not None and after is not None
            log.setdefault(before[0], before[1])
            log.setdefault(after[0], after[1])
            before[1] = after[1]
            del held[index]
        elif joins_before:
            assert before is not None
            log.setdefault(before[0], before[1])
            before[1] = last
        elif joins_after:
            assert after is not None
            log.setdefault(after[0], after[1])
            log.setdefault(first, None)
            after[0] = first
        else:
            log.setdefault(first, None)
            held.insert(index, [first, last])


_INF = float("inf")  # sorts after any serial: [first, _INF] after every range at `first`


def remove_ranges(held: Ranges, ranges: Any, changes: Changes | None = None) -> None:
    """Cut `ranges` out of `held` (in place); every serial must be there. `changes`:
    as for :func:`add_ranges`."""
    log = {} if changes is None else changes
    for first, last in ranges:
        index = bisect.bisect_right(held, [first, _INF]) - 1
        if index < 0 or not (held[index][0] <= first and last <= held[index][1]):
            raise SerialConflict(f"serials {first}-{last} are not held")
        start, end = held[index]
        log.setdefault(start, end)
        pieces = [[start, first - 1]] if start < first else []
        if last < end:
            log.setdefault(last + 1, None)
            pieces.append([last + 1, end])
        held[index : index + 1] = pieces


def _last_of(held: Ranges, first: int) -> int | None:
    index = bisect.bisect_left(held, [first])
    if index < len(held) and held[index][0] == first:
        return held[index][1]
    return None


class Holdings(Projection):
    name = "holdings"
    cost = 21
    tables = (HOLDINGS, ISSUANCES, CANCELLATIONS, TRANSFERS)

    def reset(self) -> None:
        self.held: dict[tuple[str, str], Ranges] = {}
        # Per holder and instrument, the ranges this batch changed, as they were before:
        # the flush rewrites only those rows. (Holdings fragment into many ranges; even
        # comparing all of a holder's ranges once per batch grows with the history.)
        self._changes: dict[tuple[str, str], Changes] = {}
        self._issued: list[tuple[Any, ...]] = []
        self._cancelled: list[tuple[Any, ...]] = []
        self._transferred: list[tuple[Any, ...]] = []

    def load(self, db: SqlDatabase) -> None:
        for eid, symbol, first, last in db.query(
            "SELECT * FROM rm_holdings ORDER BY enterprise_id, instrument, serial_first"
        ):
            self.held.setdefault((eid, symbol), []).append([first, last])

    def flush(self, cursor: Cursor) -> None:
        removed: list[tuple[str, str, int]] = []
        added: list[tuple[str, str, int, int]] = []
        for key in sorted(self._changes):
            held = self.held.get(key, [])
            for first, was in sorted(self._changes[key].items()):
                now = _last_of(held, first)
                if now == was:
                    continue
                if was is not None:
                    removed.append((*key, first))
                if now is not None:
                    added.append((*key, first, now))
        self.write_deletes(cursor, HOLDINGS, removed)
        cursor.insert_rows(HOLDINGS.name, HOLDINGS.column_names, added)
        cursor.insert_rows(ISSUANCES.name, ISSUANCES.column_names, self._issued)
        cursor.insert_rows(CANCELLATIONS.name, CANCELLATIONS.column_names, self._cancelled)
        cursor.insert_rows(TRANSFERS.name, TRANSFERS.column_names, self._transferred)
        self._changes.clear()
        self._issued = []
        self._cancelled = []
        self._transferred = []

    def _ranges(self, eid: str, symbol: str) -> tuple[Ranges, Changes]:
        key = (eid, symbol)
        held = self.held.get(key)
        if held is None:
            held = self.held[key] = []
        changes = self._changes.get(key)
        if changes is None:
            changes = self._changes[key] = {}
        return held, changes

    def on_CreditsIssued(self, entry: Entry) -> None:
        e: a.CreditsIssued = entry.event  # type: ignore[assignment]
        held, changes = self._ranges(e.enterprise_id, e.instrument)
        add_ranges(held, [(e.serial_first, e.serial_last)], changes)
        self._issued.append(
            (entry.position, entry.time, e.enterprise_id, e.instrument, e.quantity,
             e.serial_first, e.serial_last, e.reason)
        )  # fmt: skip

    def _move(self, source: str, target: str, symbol: str, serials: Any) -> None:
        held, changes = self._ranges(source, symbol)
        remove_ranges(held, serials, changes)
        held, changes = self._ranges(target, symbol)
        add_ranges(held, serials, changes)

    def on_TradeExecuted(self, entry: Entry) -> None:
        t: x.TradeExecuted = entry.event  # type: ignore[assignment]
        self._move(t.seller_id, t.buyer_id, t.instrument, t.serials)

    def on_CreditsTransferred(self, entry: Entry) -> None:
        e: a.CreditsTransferred = entry.event  # type: ignore[assignment]
        self._move(e.from_enterprise_id, e.to_enterprise_id, e.instrument, e.serials)
        self._transferred.append(
            (entry.position, entry.time, e.from_enterprise_id, e.to_enterprise_id, e.instrument,
             e.quantity, orjson.dumps(e.serials).decode(), e.reason)
        )  # fmt: skip

    def on_CreditsSurrendered(self, entry: Entry) -> None:
        e: a.CreditsSurrendered = entry.event  # type: ignore[assignment]
        held, changes = self._ranges(e.enterprise_id, e.instrument)
        remove_ranges(held, e.serials, changes)
        self._cancelled.append(
            (entry.position, entry.time, "surrender", e.enterprise_id, e.instrument, e.quantity,
             orjson.dumps(e.serials).decode(), e.period, None, None)
        )  # fmt: skip

    def on_CreditsRetired(self, entry: Entry) -> None:
        e: a.CreditsRetired = entry.event  # type: ignore[assignment]
        held, changes = self._ranges(e.enterprise_id, e.instrument)
        remove_ranges(held, e.serials, changes)
        self._cancelled.append(
            (entry.position, entry.time, "retirement", e.enterprise_id, e.instrument,
             e.quantity, orjson.dumps(e.serials).decode(), None, e.beneficiary, e.reason)
        )  # fmt: skip


def holdings_of(db: SqlDatabase, enterprise_id: str) -> dict[str, list[list[int]]]:
    """Serial ranges held (available and held for orders), per instrument."""
    found: dict[str, list[list[int]]] = {}
    for symbol, first, last in db.query(
        "SELECT instrument, serial_first, serial_last FROM rm_holdings "
        "WHERE enterprise_id = %s ORDER BY instrument, serial_first",
        (enterprise_id,),
    ):
        found.setdefault(symbol, []).append([first, last])
    return found
