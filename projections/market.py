"""Public market data: instruments and their day, order book depth, the tape, candles.

Candles: 1m and 1h buckets are built from continuous trades as they happen; the daily
candle is the engine's own ``TradingDayClosed`` (close = the day's VWAP, a day without
trades carries the previous close), so the chart and the next day's price band always
agree. Block trades are left out of the close, as on China's national carbon market:
RULES.md does not say either way, and a negotiated price of a large block would
otherwise move the next day's band for everyone. Block trades appear on the tape,
flagged, but not in candles.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson

from events import exchange as x
from events import market as m
from infra.sqldb import Cursor, SqlDatabase
from projections.base import Entry, Projection, Table
from services.exchange.prices import price_band, vwap

__all__ = ["INTERVALS", "Market", "book", "candles", "instruments", "trades"]

SHANGHAI = timezone(timedelta(hours=8))
MINUTE = 60_000_000
HOUR = 60 * MINUTE
INTERVALS = {"1m": MINUTE, "1h": HOUR, "1d": 24 * HOUR}
_LIVE_BUCKETS = (("1m", MINUTE), ("1h", HOUR))  # built from trades; 1d from the close

INSTRUMENTS = Table(
    "rm_instruments",
    (
        ("symbol", "TEXT NOT NULL"),
        ("vintage", "BIGINT NOT NULL"),
        ("reference_price", "BIGINT NOT NULL"),
        ("fee_bps", "BIGINT NOT NULL"),
        ("prev_close", "BIGINT NOT NULL"),
        ("last", "BIGINT"),
        ("open", "BIGINT"),
        ("high", "BIGINT"),
        ("low", "BIGINT"),
        ("volume", "BIGINT NOT NULL"),
        ("notional", "BIGINT NOT NULL"),
        ("trades", "BIGINT NOT NULL"),
        ("listed_position", "BIGINT NOT NULL"),
    ),
    key=("symbol",),
)
BOOK = Table(
    "rm_book",
    (
        ("instrument", "TEXT NOT NULL"),
        ("side", "TEXT NOT NULL"),
        ("price", "BIGINT NOT NULL"),
        ("quantity", "BIGINT NOT NULL"),
        ("orders", "BIGINT NOT NULL"),
    ),
    key=("instrument", "side", "price"),
)
RESTING = Table(
    "rm_resting",
    (
        ("order_id", "BIGINT NOT NULL"),
        ("instrument", "TEXT NOT NULL"),
        ("side", "TEXT NOT NULL"),
        ("price", "BIGINT NOT NULL"),
        ("remaining", "BIGINT NOT NULL"),
    ),
    key=("order_id",),
)
TRADES = Table(
    "rm_trades",
    (
        ("trade_id", "BIGINT NOT NULL"),
        ("position", "BIGINT NOT NULL"),
        ("time", "BIGINT NOT NULL"),
        ("instrument", "TEXT NOT NULL"),
        ("price", "BIGINT NOT NULL"),
        ("quantity", "BIGINT NOT NULL"),
        ("aggressor", "TEXT NOT NULL"),
        ("buy_order_id", "BIGINT NOT NULL"),
        ("sell_order_id", "BIGINT NOT NULL"),
        ("buyer_id", "TEXT NOT NULL"),
        ("seller_id", "TEXT NOT NULL"),
        ("buyer_fee", "BIGINT NOT NULL"),
        ("seller_fee", "BIGINT NOT NULL"),
        ("serials", "TEXT NOT NULL"),  # JSON [[first, last], ...] delivered to the buyer
    ),
    key=("trade_id",),
    indexes=(("instrument", "position"), ("time",)),
)
CANDLES = Table(
    "rm_candles",
    (
        ("instrument", "TEXT NOT NULL"),
        ("bucket", "TEXT NOT NULL"),
        ("start", "BIGINT NOT NULL"),
        ("open", "BIGINT NOT NULL"),
        ("high", "BIGINT NOT NULL"),
        ("low", "BIGINT NOT NULL"),
        ("close", "BIGINT NOT NULL"),
        ("volume", "BIGINT NOT NULL"),
        ("notional", "BIGINT NOT NULL"),
        ("trades", "BIGINT NOT NULL"),
    ),
    key=("instrument", "bucket", "start"),
)

_LAST, _OPEN, _HIGH, _LOW, _VOLUME, _NOTIONAL, _TRADES = 5, 6, 7, 8, 9, 10, 11


def day_start(day: str) -> int:
    """Midnight (Asia/Shanghai) of an ISO date, in µs since the epoch."""
    moment = datetime.combine(date.fromisoformat(day), datetime.min.time(), SHANGHAI)
    return int(moment.timestamp()) * 1_000_000


class Market(Projection):
    name = "market"
    cost = 19
    tables = (INSTRUMENTS, BOOK, RESTING, TRADES, CANDLES)

    def reset(self) -> None:
        self.instruments: dict[str, list[Any]] = {}
        self.levels: dict[tuple[str, str, int], list[int]] = {}  # -> [quantity, orders]
        self.resting: dict[int, list[Any]] = {}  # order id -> [instrument, side, price, remaining]
        self.candles: dict[tuple[str, str, int], list[int]] = {}  # current buckets only
        self._dirty_instruments: set[str] = set()
        self._dirty_levels: set[tuple[str, str, int]] = set()
        self._dirty_resting: set[int] = set()
        # Resting orders that have a row: most orders rest and leave within one batch,
        # and deleting rows that were never written costs as much as writing them.
        self._stored_resting: set[int] = set()
        self._dirty_candles: set[tuple[str, str, int]] = set()
        self._trades: list[tuple[Any, ...]] = []

    def load(self, db: SqlDatabase) -> None:
        for row in db.query("SELECT * FROM rm_instruments"):
            self.instruments[row[0]] = list(row)
        for symbol, side, price, quantity, count in db.query("SELECT * FROM rm_book"):
            self.levels[(symbol, side, price)] = [quantity, count]
        for order_id, symbol, side, price, remaining in db.query("SELECT * FROM rm_resting"):
            self.resting[order_id] = [symbol, side, price, remaining]
        self._stored_resting = set(self.resting)
        # Only each series' latest bucket can still change.
        for row in db.query(
            "SELECT c.* FROM rm_candles c JOIN (SELECT instrument, bucket, MAX(start) AS s "
            "FROM rm_candles GROUP BY instrument, bucket) l ON c.instrument = l.instrument "
            "AND c.bucket = l.bucket AND c.start = l.s"
        ):
            self.candles[(row[0], row[1], row[2])] = list(row[3:])

    def flush(self, cursor: Cursor) -> None:
        self.write_upserts(
            cursor,
            INSTRUMENTS,
            [tuple(self.instruments[s]) for s in sorted(self._dirty_instruments)],
        )
        levels = sorted(self._dirty_levels)
        self.write_upserts(
            cursor, BOOK, [(*k, *self.levels[k]) for k in levels if k in self.levels]
        )
        self.write_deletes(cursor, BOOK, [k for k in levels if k not in self.levels])
        resting, stored = sorted(self._dirty_resting), self._stored_resting
        kept = [i for i in resting if i in self.resting]
        gone = [i for i in resting if i not in self.resting and i in stored]
        self.write_upserts(cursor, RESTING, [(i, *self.resting[i]) for i in kept])
        self.write_deletes(cursor, RESTING, [(i,) for i in gone])
        stored.update(kept)
        stored.difference_update(gone)
        cursor.insert_rows(TRADES.name, TRADES.column_names, self._trades)
        self.write_upserts(
            cursor, CANDLES, [(*k, *self.candles[k]) for k in sorted(self._dirty_candles)]
        )
        # Finished buckets need not stay in memory: keep each series' latest.
        latest: dict[tuple[str, str], int] = {}
        for symbol, interval, start in self.candles:
            key = (symbol, interval)
            latest[key] = max(latest.get(key, start), start)
        self.candles = {k: v for k, v in self.candles.items() if latest[(k[0], k[1])] == k[2]}
        self._dirty_instruments.clear()
        self._dirty_levels.clear()
        self._dirty_resting.clear()
        self._dirty_candles.clear()
        self._trades = []

    # -- book

    def _level(self, symbol: str, side: str, price: int, quantity: int, orders: int) -> None:
        key = (symbol, side, price)
        level = self.levels.get(key)
        if level is None:
            level = self.levels[key] = [0, 0]
        level[0] += quantity
        level[1] += orders
        if level[1] <= 0:
            del self.levels[key]
        self._dirty_levels.add(key)

    def _reduce_resting(self, order_id: int, quantity: int | None) -> None:
        """Take `quantity` (None: all) of a resting order off the book."""
        rest = self.resting.get(order_id)
        if rest is None:
            return
        symbol, side, price, remaining = rest
        take = remaining if quantity is None else min(quantity, remaining)
        gone = take == remaining
        self._level(symbol, side, price, -take, -1 if gone else 0)
        self._dirty_resting.add(order_id)
        if gone:
            del self.resting[order_id]
        else:
            rest[3] -= take

    def on_InstrumentListed(self, entry: Entry) -> None:
        e: m.InstrumentListed = entry.event  # type: ignore[assignment]
        self.instruments[e.symbol] = [
            e.symbol, e.vintage, e.reference_price, e.fee_bps, e.reference_price,
            None, None, None, None, 0, 0, 0, entry.position,
        ]  # fmt: skip
        self._dirty_instruments.add(e.symbol)

    def on_OrderAccepted(self, entry: Entry) -> None:
        e: x.OrderAccepted = entry.event  # type: ignore[assignment]
        if e.order_type != "limit" or e.time_in_force in ("ioc", "fok"):
            return  # never rests
        # It rests unless its own fills or a cancel (in the same command) say otherwise.
        self.resting[e.order_id] = [e.instrument, e.side, e.price, e.quantity]
        self._dirty_resting.add(e.order_id)
        self._level(e.instrument, e.side, e.price, e.quantity, 1)

    def on_TradeExecuted(self, entry: Entry) -> None:
        t: x.TradeExecuted = entry.event  # type: ignore[assignment]
        self._reduce_resting(t.buy_order_id, t.quantity)
        self._reduce_resting(t.sell_order_id, t.quantity)
        block = t.aggressor == "block"
        self._trades.append(
            (t.trade_id, entry.position, entry.time, t.instrument, t.price, t.quantity,
             t.aggressor, t.buy_order_id, t.sell_order_id, t.buyer_id, t.seller_id,
             t.buyer_fee, t.seller_fee, orjson.dumps(t.serials).decode())
        )  # fmt: skip
        if block:
            return
        inst = self.instruments.get(t.instrument)
        if inst is not None:
            price = t.price
            inst[_LAST] = price
            if inst[_OPEN] is None:
                inst[_OPEN] = inst[_HIGH] = inst[_LOW] = price
            else:
                inst[_HIGH] = max(inst[_HIGH], price)
                inst[_LOW] = min(inst[_LOW], price)
            inst[_VOLUME] += t.quantity
            inst[_NOTIONAL] += price * t.quantity
            inst[_TRADES] += 1
            self._dirty_instruments.add(t.instrument)
        price, quantity, time, candles = t.price, t.quantity, entry.time, self.candles
        for interval, size in _LIVE_BUCKETS:
            key = (t.instrument, interval, time - time % size)
            candle = candles.get(key)
            if candle is None:
                candles[key] = [price, price, price, price, quantity, price * quantity, 1]
            else:
                if price > candle[1]:
                    candle[1] = price
                elif price < candle[2]:
                    candle[2] = price
                candle[3] = price
                candle[4] += quantity
                candle[5] += price * quantity
                candle[6] += 1
            self._dirty_candles.add(key)

    def on_OrderCancelled(self, entry: Entry) -> None:
        self._reduce_resting(entry.event.order_id, None)  # type: ignore[attr-defined]

    def on_OrderExpired(self, entry: Entry) -> None:
        self._reduce_resting(entry.event.order_id, None)  # type: ignore[attr-defined]

    def on_OrderReduced(self, entry: Entry) -> None:
        e: x.OrderReduced = entry.event  # type: ignore[assignment]
        rest = self.resting.get(e.order_id)
        if rest is not None:
            self._reduce_resting(e.order_id, rest[3] - e.remaining_quantity)

    def on_OrderRepriced(self, entry: Entry) -> None:
        e: x.OrderRepriced = entry.event  # type: ignore[assignment]
        rest = self.resting.get(e.order_id)
        if rest is None:
            return
        symbol, side, _, remaining = rest
        self._reduce_resting(e.order_id, None)
        self.resting[e.order_id] = [symbol, side, e.price, remaining]
        self._dirty_resting.add(e.order_id)
        self._level(symbol, side, e.price, remaining, 1)

    def on_TradingDayClosed(self, entry: Entry) -> None:
        e: x.TradingDayClosed = entry.event  # type: ignore[assignment]
        key = (e.instrument, "1d", day_start(e.day))
        self.candles[key] = [e.open, e.high, e.low, e.close, e.volume, e.notional, e.trades]
        self._dirty_candles.add(key)
        inst = self.instruments.get(e.instrument)
        if inst is not None:
            inst[4] = e.close
            inst[_OPEN] = inst[_HIGH] = inst[_LOW] = None
            inst[_VOLUME] = inst[_NOTIONAL] = inst[_TRADES] = 0
            self._dirty_instruments.add(e.instrument)


# ---------------------------------------------------------------------------- queries


def instruments(db: SqlDatabase, band_bps: int, symbol: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM rm_instruments"
    rows = (
        db.query(sql + " WHERE symbol = %s", (symbol,))
        if symbol
        else db.query(sql + " ORDER BY symbol")
    )
    found = []
    for row in rows:
        data = dict(zip(INSTRUMENTS.column_names, row, strict=True))
        # The day's close rolls the row over to the next day at once (on_TradingDayClosed),
        # so the latest official close is always the next session's previous close.
        data["close"] = data["prev_close"]
        data["band_low"], data["band_high"] = price_band(data["prev_close"], band_bps)
        data["vwap"] = vwap(data["notional"], data["volume"]) if data["volume"] else None
        found.append(data)
    return found


def book(db: SqlDatabase, symbol: str, depth: int) -> dict[str, Any]:
    """Best first: bids by price descending, asks ascending; [price, quantity, orders]."""
    bids = db.query(
        "SELECT price, quantity, orders FROM rm_book WHERE instrument = %s AND side = 'buy' "
        "ORDER BY price DESC LIMIT %s",
        (symbol, depth),
    )
    asks = db.query(
        "SELECT price, quantity, orders FROM rm_book WHERE instrument = %s AND side = 'sell' "
        "ORDER BY price ASC LIMIT %s",
        (symbol, depth),
    )
    return {"symbol": symbol, "bids": [list(r) for r in bids], "asks": [list(r) for r in asks]}


def trades(
    db: SqlDatabase, symbol: str, after: int | None = None, limit: int = 100, parties: bool = False
) -> list[dict[str, Any]]:
    """The tape; parties only for regulators.

    Without `after`: the latest `limit` trades, newest first (what a screen shows).
    With `after`: the next `limit` trades after that journal position, oldest first, so
    that paging on from the last one seen misses none.
    """
    if after is None:
        rows = db.query(
            "SELECT * FROM rm_trades WHERE instrument = %s ORDER BY position DESC LIMIT %s",
            (symbol, limit),
        )
    else:
        rows = db.query(
            "SELECT * FROM rm_trades WHERE instrument = %s AND position > %s "
            "ORDER BY position LIMIT %s",
            (symbol, after, limit),
        )
    found = []
    for row in rows:
        data = dict(zip(TRADES.column_names, row, strict=True))
        data["block"] = data["aggressor"] == "block"
        del data["serials"]  # custody is the export's and the holdings' business
        if not parties:
            for name in ("buy_order_id", "sell_order_id", "buyer_id", "seller_id",
                         "buyer_fee", "seller_fee"):  # fmt: skip
                del data[name]
        found.append(data)
    return found


def candles(db: SqlDatabase, symbol: str, interval: str, limit: int = 500) -> list[dict[str, Any]]:
    """Oldest first, the latest `limit` buckets."""
    rows = db.query(
        "SELECT start, open, high, low, close, volume, notional, trades FROM rm_candles "
        "WHERE instrument = %s AND bucket = %s ORDER BY start DESC LIMIT %s",
        (symbol, interval, limit),
    )
    names = ("start", "open", "high", "low", "close", "volume", "notional", "trades")
    return [dict(zip(names, row, strict=True)) for row in reversed(rows)]
