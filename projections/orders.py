"""Orders and their states, with every fill; and each command's outcome.

An order's id is the intake position of the command that placed it, so a client that
submitted a command knows where to look. ``rm_outcomes`` answers "what became of the
command at intake position P": the journal positions of its results and, when the
engine refused it, the reason. The gateway reads it to answer writes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from events import accounts as a
from events import exchange as x
from infra.sqldb import Cursor, SqlDatabase, array_literal
from projections.base import Entry, Projection, Table

__all__ = [
    "OPEN_STATUSES",
    "Orders",
    "Outcomes",
    "answered",
    "fills_of_enterprise",
    "order",
    "orders",
    "orders_by_ids",
    "outcome",
    "outcomes_of",
]

ORDER_COLUMNS = (
    ("order_id", "BIGINT NOT NULL"),
    ("client_order_id", "TEXT NOT NULL"),
    ("enterprise_id", "TEXT NOT NULL"),
    ("instrument", "TEXT NOT NULL"),
    ("side", "TEXT NOT NULL"),
    ("type", "TEXT NOT NULL"),
    ("price", "BIGINT NOT NULL"),
    ("quantity", "BIGINT NOT NULL"),
    ("filled_quantity", "BIGINT NOT NULL"),
    ("remaining_quantity", "BIGINT NOT NULL"),
    ("time_in_force", "TEXT NOT NULL"),
    ("post_only", "BOOLEAN NOT NULL"),
    ("expire_at", "BIGINT NOT NULL"),
    ("status", "TEXT NOT NULL"),
    ("reject_reason", "TEXT"),
    ("held_cash", "BIGINT NOT NULL"),
    ("created_time", "BIGINT NOT NULL"),
    ("updated_position", "BIGINT NOT NULL"),
)
ORDERS = Table(
    "rm_orders",
    ORDER_COLUMNS,
    key=("order_id",),
    indexes=(("enterprise_id", "status"), ("enterprise_id", "client_order_id")),
)
FILLS = Table(
    "rm_fills",
    (
        ("order_id", "BIGINT NOT NULL"),
        ("trade_id", "BIGINT NOT NULL"),
        ("position", "BIGINT NOT NULL"),
        ("price", "BIGINT NOT NULL"),
        ("quantity", "BIGINT NOT NULL"),
        ("fee", "BIGINT NOT NULL"),
        ("counterparty_side", "TEXT NOT NULL"),
    ),
    key=("order_id", "trade_id"),
)
#: Orders that are not done: on the book, or queued for the next session.
OPEN_STATUSES = ("open", "partially_filled", "queued")
_ENDED = {"filled", "cancelled", "expired", "rejected"}

# Column indexes into an order row (a list, for cheap in-place updates).
_QTY, _FILLED, _REMAINING, _STATUS, _HELD, _UPDATED = 7, 8, 9, 13, 15, 17


class Orders(Projection):
    name = "orders"
    cost = 30
    tables = (ORDERS, FILLS)

    def reset(self) -> None:
        self.open: dict[int, list[Any]] = {}  # orders that can still change
        self._dirty: dict[int, list[Any]] = {}
        self._fills: list[tuple[Any, ...]] = []

    def load(self, db: SqlDatabase) -> None:
        for row in db.query(
            "SELECT * FROM rm_orders WHERE status IN ('open', 'partially_filled', 'queued')"
        ):
            self.open[row[0]] = list(row)

    def flush(self, cursor: Cursor) -> None:
        self.write_upserts(cursor, ORDERS, [tuple(r) for _, r in sorted(self._dirty.items())])
        cursor.insert_rows(FILLS.name, FILLS.column_names, self._fills)
        self._dirty.clear()
        self._fills = []

    def _touch(self, order_id: int, position: int) -> list[Any] | None:
        row = self.open.get(order_id)
        if row is not None:
            row[_UPDATED] = position
            self._dirty[order_id] = row
        return row

    def _end(self, order_id: int, row: list[Any], status: str) -> None:
        row[_STATUS] = status
        del self.open[order_id]

    def on_OrderAccepted(self, entry: Entry) -> None:
        e: x.OrderAccepted = entry.event  # type: ignore[assignment]
        row = [
            e.order_id, e.client_order_id, e.enterprise_id, e.instrument, e.side,
            e.order_type, e.price, e.quantity, 0, e.quantity, e.time_in_force,
            e.post_only, e.expire_at, "open", None, e.held_cash, entry.time, entry.position,
        ]  # fmt: skip
        self.open[e.order_id] = row
        self._dirty[e.order_id] = row

    def on_OrderQueued(self, entry: Entry) -> None:
        e: x.OrderQueued = entry.event  # type: ignore[assignment]
        row = [
            e.order_id, e.client_order_id, e.enterprise_id, e.instrument, e.side,
            "limit", e.price, e.quantity, 0, e.quantity, e.time_in_force,
            e.post_only, e.expire_at, "queued", None, 0, entry.time, entry.position,
        ]  # fmt: skip
        self.open[e.order_id] = row
        self._dirty[e.order_id] = row

    def on_OrderRejected(self, entry: Entry) -> None:
        e: x.OrderRejected = entry.event  # type: ignore[assignment]
        self.open.pop(e.order_id, None)  # a queued order its session refused
        self._dirty[e.order_id] = [
            e.order_id, e.client_order_id, e.enterprise_id, e.instrument, e.side,
            "market" if e.price == 0 else "limit", e.price, e.quantity, 0, 0, "",
            False, 0, "rejected", e.reason, 0, entry.time, entry.position,
        ]  # fmt: skip

    def on_TradeExecuted(self, entry: Entry) -> None:
        t: x.TradeExecuted = entry.event  # type: ignore[assignment]
        if not t.buy_order_id:  # a block trade: no orders involved
            return
        buyer_taker = t.aggressor == "buy"
        for order_id, fee, taker in (
            (t.buy_order_id, t.buyer_fee, buyer_taker),
            (t.sell_order_id, t.seller_fee, not buyer_taker),
        ):
            row = self._touch(order_id, entry.position)
            if row is None:
                continue
            row[_FILLED] += t.quantity
            row[_REMAINING] -= t.quantity
            if order_id == t.buy_order_id:
                row[_HELD] -= t.price * t.quantity + fee + t.buyer_released
            if row[_REMAINING] == 0:
                self._end(order_id, row, "filled")
            else:
                row[_STATUS] = "partially_filled"
            self._fills.append(
                (order_id, t.trade_id, entry.position, t.price, t.quantity, fee,
                 "taker" if taker else "maker")
            )  # fmt: skip

    def _finish(self, entry: Entry, status: str) -> None:
        e: x.OrderCancelled | x.OrderExpired = entry.event  # type: ignore[assignment]
        row = self._touch(e.order_id, entry.position)
        if row is not None:
            row[_HELD] = 0
            row[_REMAINING] = 0
            self._end(e.order_id, row, status)

    def on_OrderCancelled(self, entry: Entry) -> None:
        self._finish(entry, "cancelled")

    def on_OrderExpired(self, entry: Entry) -> None:
        self._finish(entry, "expired")

    def on_OrderReduced(self, entry: Entry) -> None:
        e: x.OrderReduced = entry.event  # type: ignore[assignment]
        row = self._touch(e.order_id, entry.position)
        if row is not None:
            row[_QTY] -= row[_REMAINING] - e.remaining_quantity
            row[_REMAINING] = e.remaining_quantity
            row[_HELD] -= e.released_cash

    def on_OrderRepriced(self, entry: Entry) -> None:
        e: x.OrderRepriced = entry.event  # type: ignore[assignment]
        row = self._touch(e.order_id, entry.position)
        if row is not None:
            row[6] = e.price
            row[_HELD] += e.held_cash_delta


OUTCOMES = Table(
    "rm_outcomes",
    (
        ("cause", "BIGINT NOT NULL"),
        ("first_position", "BIGINT NOT NULL"),
        ("last_position", "BIGINT NOT NULL"),
        ("result_type", "TEXT NOT NULL"),
        ("reject_reason", "TEXT"),
        ("detail", "TEXT"),
    ),
    key=("cause",),
)


class Outcomes(Projection):
    """One row per command that had results: where they are, and a refusal's reason."""

    name = "outcomes"
    cost = 9
    tables = (OUTCOMES,)

    def reset(self) -> None:
        self._rows: dict[int, list[Any]] = {}
        # The last command's row as written: a command with more results than a batch
        # holds goes on in the next one, which must continue its row, not start anew
        # (its first position and its answer are in the part already written).
        self._last: list[Any] | None = None

    def load(self, db: SqlDatabase) -> None:
        rows = db.query("SELECT * FROM rm_outcomes ORDER BY cause DESC LIMIT 1")
        self._last = list(rows[0]) if rows else None

    def flush(self, cursor: Cursor) -> None:
        self.write_upserts(cursor, OUTCOMES, [tuple(r) for _, r in sorted(self._rows.items())])
        if self._rows:
            self._last = self._rows[max(self._rows)]
        self._rows.clear()

    def apply(self, entry: Entry) -> None:
        cause = entry.cause
        if cause is None:
            return
        event = entry.event
        kind = event.type_name
        row = self._rows.get(cause)
        if row is None:
            last = self._last
            if last is not None and last[0] == cause:
                row = self._rows[cause] = last
            else:
                row = [cause, entry.position, entry.position, kind, None, None]
                self._rows[cause] = row
        row[2] = entry.position
        if kind == "QueuedOrdersReleased":
            # The results before this marker were the queued orders' that this command
            # found the session open for (and the time's): none of them answers it.
            row[3], row[4], row[5] = kind, None, None
            return
        # The answer to a command is its first result that is not a by-product of the
        # time it carried (expiries, the daily close and queued orders come first).
        if row[3] in _TIME_RESULTS and kind not in _TIME_RESULTS:
            row[3] = kind
        if row[4] is None and isinstance(event, a.CommandRejected | x.OrderRejected):
            row[4] = event.reason
            row[5] = getattr(event, "detail", None)


_TIME_RESULTS = {"OrderExpired", "TradingDayClosed", "QueuedOrdersReleased"}


# ---------------------------------------------------------------------------- queries

_ORDER_NAMES = tuple(n for n, _ in ORDER_COLUMNS)
_SELECT = f"SELECT {', '.join(_ORDER_NAMES)} FROM rm_orders"


def _order_dict(row: tuple[Any, ...], fills: list[dict[str, Any]]) -> dict[str, Any]:
    data = dict(zip(_ORDER_NAMES, row, strict=True))
    data["post_only"] = bool(data["post_only"])
    data["fills"] = fills
    return data


#: PostgreSQL: ids as an array within their range (see :func:`_keyed`), `{0}` the column.
_ID_RANGE = "{0} BETWEEN %s::bigint AND %s::bigint AND {0} = ANY(%s::bigint[])"


def _keyed(
    db: SqlDatabase, select: str, column: str, values: list[int], tail: str = ""
) -> list[tuple[str, Sequence[Any]]]:
    """The statements that read the rows of `select` whose (key) `column` is one of
    `values` (`tail` ends each: its ORDER BY holds within each statement).

    PostgreSQL: one statement, the ids as an array within their range. The range is
    what keeps the plan on the key's index: ids are intake positions, and a batch's are
    consecutive. By ``= ANY`` alone the planner scanned the whole table to pick a
    batch's 100 orders out of it (1.2-1.9 ms at 10,000 orders, growing with every
    order; 0.15 ms through the index). SQLite: 500 placeholders a statement.
    """
    if not values:
        return []
    if db.dialect == "postgres":
        sql = f"{select} WHERE {_ID_RANGE.format(column)}{tail}"
        return [(sql, (min(values), max(values), array_literal(values, quoted=False)))]
    statements: list[tuple[str, Sequence[Any]]] = []
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        marks = ", ".join(["%s"] * len(chunk))
        statements.append((f"{select} WHERE {column} IN ({marks}){tail}", chunk))
    return statements


def _where_in(
    db: SqlDatabase, select: str, column: str, values: list[int], tail: str = ""
) -> Iterator[tuple[Any, ...]]:
    """The rows of `select` whose (key) `column` is one of `values` (see :func:`_keyed`)."""
    for sql, params in _keyed(db, select, column, values, tail):
        yield from db.query(sql, params)


_FILLS = "SELECT * FROM rm_fills"
_FILLS_ORDER = " ORDER BY order_id, trade_id"


def _fills_from(
    order_ids: list[int], rows: Iterable[tuple[Any, ...]]
) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {i: [] for i in order_ids}
    for order_id, trade_id, position, price, quantity, fee, side in rows:
        found[order_id].append(
                {"trade_id": trade_id, "position": position, "price": price,
                 "quantity": quantity, "fee": fee, "counterparty_side": side}
            )  # fmt: skip
    return found


def _fills_of(db: SqlDatabase, order_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    return _fills_from(order_ids, _where_in(db, _FILLS, "order_id", order_ids, _FILLS_ORDER))


def orders_by_ids(db: SqlDatabase, order_ids: list[int]) -> list[dict[str, Any]]:
    """The orders with these ids (any that exist), with their fills: the fills' and the
    orders' statements go together (PostgreSQL: one round trip)."""
    fill_reads = _keyed(db, _FILLS, "order_id", order_ids, _FILLS_ORDER)
    order_reads = _keyed(db, _SELECT, "order_id", order_ids)
    results = db.queries([*fill_reads, *order_reads])
    fills = _fills_from(order_ids, itertools.chain(*results[: len(fill_reads)]))
    return [_order_dict(row, fills[row[0]]) for row in itertools.chain(*results[len(fill_reads) :])]


def owners_of(db: SqlDatabase, order_ids: list[int]) -> dict[int, str]:
    """The enterprise of each of these orders (any that exist): all a check of who may
    act on them needs, without their fills."""
    select = "SELECT order_id, enterprise_id FROM rm_orders"
    return dict(_where_in(db, select, "order_id", order_ids))


def order(db: SqlDatabase, order_id: int) -> dict[str, Any] | None:
    rows = db.query(f"{_SELECT} WHERE order_id = %s", (order_id,))
    if not rows:
        return None
    return _order_dict(rows[0], _fills_of(db, [order_id])[order_id])


def orders(
    db: SqlDatabase,
    enterprise_id: str | None = None,
    status: str | None = None,
    limit: int = 200,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first; `status` may be "open" (open and partially filled) or any status."""
    where: list[str] = []
    params: list[Any] = []
    if enterprise_id is not None:
        where.append("enterprise_id = %s")
        params.append(enterprise_id)
    if status == "open":
        where.append("status IN ('open', 'partially_filled', 'queued')")
    elif status is not None:
        where.append("status = %s")
        params.append(status)
    if before is not None:
        where.append("order_id < %s")
        params.append(before)
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    rows = db.query(sql + " ORDER BY order_id DESC LIMIT %s", (*params, limit))
    fills = _fills_of(db, [r[0] for r in rows])
    return [_order_dict(r, fills[r[0]]) for r in rows]


def fills_of_enterprise(
    db: SqlDatabase, enterprise_id: str, limit: int = 200, before: int | None = None
) -> list[dict[str, Any]]:
    """The enterprise's order fills, newest trade first, each with its order's id,
    instrument and side.

    Read from ``rm_fills`` itself rather than through the newest orders: an enterprise
    whose last few hundred orders were rejected or cancelled still has its older fills,
    and a page of orders would have lost them. `before` pages by trade id; a trade
    appears at most once per enterprise, since the engine never matches an enterprise
    with itself (``self_trade``), so no fill falls between two pages.
    """
    where = "o.enterprise_id = %s"
    params: list[Any] = [enterprise_id]
    if before is not None:
        where += " AND f.trade_id < %s"
        params.append(before)
    rows = db.query(
        "SELECT f.order_id, f.trade_id, f.position, o.instrument, o.side, f.price,"
        " f.quantity, f.fee, f.counterparty_side"
        " FROM rm_fills f JOIN rm_orders o ON o.order_id = f.order_id"
        f" WHERE {where} ORDER BY f.trade_id DESC, f.order_id DESC LIMIT %s",
        (*params, limit),
    )
    return [
        {"order_id": order_id, "trade_id": trade_id, "position": position,
         "instrument": instrument, "side": side, "price": price, "quantity": quantity,
         "fee": fee, "role": role}
        for order_id, trade_id, position, instrument, side, price, quantity, fee, role in rows
    ]  # fmt: skip


#: An outcome counts once every read model has reached it (read-your-writes; no read
#: model yet: MIN is NULL and nothing counts).
_REACHED = "last_position <= (SELECT MIN(position) FROM rm_tracking)"
_OUTCOME_NAMES = OUTCOMES.column_names


def answered(db: SqlDatabase, causes: list[int]) -> dict[int, dict[str, Any]]:
    """The outcomes of the commands at intake positions `causes` (ascending) that every
    read model has reached; a placed order's outcome carries the order, with its fills,
    under ``order``.

    PostgreSQL: the outcomes, the orders and the fills in one pipeline (one round trip;
    the HTTP path waits on it). The orders' and fills' statements name the answered
    outcomes again rather than wait for the first one's rows: they run after it, so they
    see at least what it saw, and whatever they return beyond it is dropped here.
    """
    lo, hi = causes[0], causes[-1]
    outcomes_sql = (
        f"SELECT {', '.join(_OUTCOME_NAMES)} FROM rm_outcomes "
        f"WHERE cause >= %s AND cause <= %s AND {_REACHED}"
    )
    if db.dialect == "postgres":
        ids = array_literal(causes, quoted=False)
        answered_order = (
            f"{_ID_RANGE.format('order_id')} AND EXISTS "
            f"(SELECT 1 FROM rm_outcomes WHERE cause = order_id AND {_REACHED})"
        )
        rows, fill_rows, order_rows = db.queries(
            [
                (outcomes_sql, (lo, hi)),
                (f"{_FILLS} WHERE {answered_order}{_FILLS_ORDER}", (lo, hi, ids)),
                (f"{_SELECT} WHERE {answered_order}", (lo, hi, ids)),
            ]
        )
    else:
        rows, fill_rows, order_rows = db.query(outcomes_sql, (lo, hi)), [], []
    wanted = set(causes)
    found = {
        row[0]: dict(zip(_OUTCOME_NAMES, row, strict=True)) for row in rows if row[0] in wanted
    }
    if db.dialect == "postgres":
        fills = _fills_from([row[0] for row in order_rows], fill_rows)
        for row in order_rows:
            outcome = found.get(row[0])
            if outcome is not None:
                outcome["order"] = _order_dict(row, fills[row[0]])
        return found
    # An order's id is its intake position: every answered order at once.
    placed = [c for c, row in found.items() if row["result_type"] in _ORDER_RESULTS]
    if placed:
        for order in orders_by_ids(db, placed):
            found[order["order_id"]]["order"] = order
    return found


#: The results that answer a PlaceOrder (the order's row then exists).
_ORDER_RESULTS = frozenset({"OrderAccepted", "OrderRejected", "OrderQueued"})


def outcome(db: SqlDatabase, cause: int) -> dict[str, Any] | None:
    return outcomes_of(db, [cause]).get(cause)


def outcomes_of(db: SqlDatabase, causes: list[int]) -> dict[int, dict[str, Any]]:
    """The recorded outcomes of the commands at these intake positions (any there are)."""
    select = f"SELECT {', '.join(_OUTCOME_NAMES)} FROM rm_outcomes"
    return {
        row[0]: dict(zip(_OUTCOME_NAMES, row, strict=True))
        for row in _where_in(db, select, "cause", causes)
    }
