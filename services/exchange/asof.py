"""Point-in-time state: the engine's view of every account as it stood at a moment.

The engine is deterministic, so the state after any prefix of the intake log is a
replay away: start from the latest snapshot at or before the point (or from empty),
apply the commands up to it, and read the state. A point is a journal position (the
state right after the command that entry answers), or a time (the state after the
commands up to the first one stamped later: the engine's own clock, which only moves
forward).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from events.codec import decode, frame
from events.exchange import EngineSnapshot
from infra.recorders import Row
from infra.store import Store
from services.exchange import serials
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine
from services.exchange.runner import ENGINE_READER

log = logging.getLogger("carbonx.asof")

__all__ = ["AsOf", "parse_point", "report", "state_as_of"]


@dataclass(frozen=True)
class AsOf:
    """A resolved point: the last intake command included, and what asked for it."""

    intake_position: int
    journal_position: int | None = None
    time: int | None = None


_UNENCODED_PLUS = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$")


def parse_point(text: str) -> AsOf:
    """A journal position ("1234": digits only) or an ISO 8601 time with a "T"
    ("2025-11-25T10:00:00+08:00"; without an offset it is UTC)."""
    if text.isdigit():
        return AsOf(intake_position=-1, journal_position=int(text))
    # "+08:00" typed into a URL without encoding arrives as " 08:00".
    text = _UNENCODED_PLUS.sub(r"\1+\2", text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return AsOf(intake_position=-1, time=micros)


def _resolve(store: Store, point: AsOf) -> AsOf:
    """Turn a journal position or a time into the last intake position it covers."""
    if point.journal_position is not None:
        if point.journal_position == 0:
            return AsOf(0, 0)
        rows = store.journal.read(point.journal_position - 1, 1)
        if not rows:
            raise ValueError(f"the journal has no position {point.journal_position}")
        cause = orjson.loads(rows[0].body).get("cause") or 0
        return AsOf(int(cause), point.journal_position)
    if point.time is not None:
        last = 0
        for page in store.intake.pages(0, None, 20_000):
            for row in page:
                if orjson.loads(row.body)["time"] > point.time:
                    return AsOf(last, time=point.time)
                last = row.position
        return AsOf(last, time=point.time)
    return point


_INTAKE_POSITION = re.compile(rb'"intake_position":(\d+)')


def _snapshot_intake_position(row: Row) -> int:
    """Where a snapshot stands, without parsing its (large) state: canonical JSON sorts
    keys, so `intake_position` comes first in `data`, near the start of the bytes."""
    found = _INTAKE_POSITION.search(row.payload, 0, 256)
    if found is None:
        return int(orjson.loads(row.body)["data"]["intake_position"])
    return int(found.group(1))


def state_as_of(store: Store, point: AsOf, config: EngineConfig | None = None) -> Engine:
    """The engine exactly as it was once the command at the resolved point was applied.

    A journal position in the middle of one command's results resolves to that whole
    command: the engine applies a command atomically. Every replayed result is checked
    against the journal, so a replay under other rules (say the wrong calendar) fails
    with ValueError instead of showing a state the engine never had. Points beyond what
    the engine has journaled are refused.
    """
    target = _resolve(store, point)
    consumed = store.journal.tracking(ENGINE_READER)
    if target.intake_position > consumed:
        if point.time is None:
            raise ValueError(f"the engine has only consumed intake up to {consumed}")
        target = AsOf(consumed, time=point.time)  # as far as the engine has got
    engine = Engine(config)
    start = journal_start = 0
    usable: list[int] = []  # snapshot log positions at or before the target
    for page in store.snapshots.pages(0, None, 100):
        for row in page:
            try:
                if _snapshot_intake_position(row) <= target.intake_position:
                    usable.append(row.position)
            except (ValueError, KeyError, TypeError):
                log.warning("snapshot %d is unreadable: not used", row.position)
    # The newest that loads and hashes to what it says; an unusable one costs only
    # time (the replay starts from an earlier one, or from the beginning), never the
    # answer. Only the snapshot we start from becomes objects and an engine.
    rules = engine.config.fingerprint()
    for at in reversed(usable):
        try:
            latest = decode(store.snapshots.read(at - 1, 1)[0].body).event
            assert isinstance(latest, EngineSnapshot)
        except (ValueError, KeyError, TypeError, AssertionError) as error:
            log.warning("snapshot %d not used: %s", at, error)
            continue
        if latest.state.get("rules") != rules:  # not corruption: the question is wrong
            raise ValueError(
                f"snapshot {at} was taken under rules {latest.state.get('rules')}, not "
                f"{rules}: replay under the rules the journal was produced with (--calendar)"
            )
        try:
            candidate = Engine.from_state(latest.state, config)
        except (ValueError, KeyError, TypeError) as error:
            log.warning("snapshot %d not used: %s", at, error)
            continue
        if candidate.state_hash() != latest.state_hash:
            log.warning("snapshot %d not used: its state does not match its hash", at)
            continue
        engine = candidate
        start, journal_start = latest.intake_position, latest.journal_position
        break
    journal = (row for page in store.journal.pages(journal_start, None, 20_000) for row in page)
    position = journal_start
    for page in store.intake.pages(start, target.intake_position, 20_000):
        for row in page:
            entry = decode(row.body)
            for result in engine.apply(entry.position, entry.time, entry.event):
                position += 1
                stored = next(journal, None)
                expected = frame(result, engine.time, entry.position).body(position)
                if stored is None or stored.body != expected:
                    raise ValueError(
                        f"replaying intake {entry.position} does not give journal position "
                        f"{position}: replay under the rules the journal was produced with "
                        "(--calendar), or run `carbonx verify`"
                    )
    return engine


def report(engine: Engine) -> dict[str, Any]:
    """Balances, holdings (with serial ranges), open and queued orders, compliance
    obligations, penalty debts (fen, every registered enterprise) and market terms."""
    accounts = {}
    for eid in sorted(engine.accounts):
        account = engine.accounts[eid]
        held_ranges: dict[str, list[list[int]]] = {}
        for order in engine.orders.values():
            if order.enterprise_id == eid and not order.is_buy:
                held_ranges.setdefault(order.instrument, []).extend(list(r) for r in order.credits)
        credits = {}
        for symbol in sorted(set(account.credits) | set(account.credits_held)):
            available = account.credits.get(symbol, [])
            if not available and not account.credits_held.get(symbol):
                continue
            credits[symbol] = {
                "available": serials.count(available),
                "held": account.credits_held.get(symbol, 0),
                "serials_available": [list(r) for r in available],
                "serials_held": sorted(held_ranges.get(symbol, [])),
            }
        accounts[eid] = {
            "status": account.status,
            "frozen": account.frozen,
            "cash": {"available": account.cash, "held": account.cash_held},
            "credits": credits,
        }
    orders = [
        {
            "order_id": o.id,
            "enterprise_id": o.enterprise_id,
            "instrument": o.instrument,
            "side": o.side,
            "price": o.price,
            "quantity": o.quantity,
            "remaining_quantity": o.remaining,
            "time_in_force": o.time_in_force,
            "held_cash": o.held_cash,
        }
        for o in engine.orders.values()
    ]
    # Orders waiting for the next session (the operator's queuing): nothing held yet.
    queued = [
        {
            "order_id": order_id,
            "enterprise_id": q.enterprise_id,
            "instrument": q.instrument,
            "side": q.side,
            "price": q.price,
            "quantity": q.quantity,
            "time_in_force": q.time_in_force,
        }
        for order_id, q in engine.queued.items()
    ]
    markets = {
        symbol: {"previous_close": inst.previous_close, "fee_bps": inst.fee_bps}
        for symbol, inst in sorted(engine.instruments.items())
    }
    obligations = [
        {
            "period": name,
            "enterprise_id": eid,
            "quantity": o["quantity"],
            "surrendered": o["surrendered"],
            "outstanding": o["quantity"] - o["surrendered"],
            "shortfall": o.get("shortfall", 0),
            "deadline": period.deadline,
            "period_status": period.status,
        }
        for name, period in sorted(engine.registry.periods.items())
        for eid, o in sorted(period.obligations.items())
    ]
    # What each enterprise still owes of its penalties (the engine keeps one debt per
    # enterprise, not per period): it blocks withdrawals until collected.
    debts = {eid: engine.registry.penalty_debt(eid) for eid in sorted(engine.registry.enterprises)}
    return {
        "time": engine.time,
        "accounts": accounts,
        "open_orders": orders,
        "queued_orders": queued,
        "obligations": obligations,
        "penalty_debts": debts,
        "markets": markets,
        "fees_collected": engine.fees_collected,
        "state_hash": engine.state_hash(),
    }
