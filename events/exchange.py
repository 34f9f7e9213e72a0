"""Facts of the exchange: orders, trades, trading days.

Every order event carries the cash and credits it held or released, so balances can be
projected from the journal alone and an auditor can follow every fen of a hold.
"""

from __future__ import annotations

from typing import Any

from events.base import Event, event_type

__all__ = [
    "EngineSnapshot",
    "OrderAccepted",
    "OrderCancelled",
    "OrderExpired",
    "OrderQueued",
    "OrderQueuingSet",
    "OrderReduced",
    "OrderRejected",
    "OrderRepriced",
    "QueuedOrdersReleased",
    "TradeExecuted",
    "TradingDayClosed",
]


@event_type("OrderAccepted")
class OrderAccepted(Event):
    """An order passed risk checks; its hold is taken (cash for buys, credits for sells).

    A buy holds price × quantity + fee + a rounding reserve of 1 fen per tonne (each
    fill's fee is rounded on its own, so a partly filled order may need up to 1 fen per
    fill more than the fee on the whole); whatever a fill does not need is released.
    """

    order_id: int
    client_order_id: str
    enterprise_id: str
    instrument: str
    side: str
    order_type: str
    price: int
    quantity: int
    time_in_force: str
    post_only: bool
    expire_at: int
    held_cash: int
    held_credits: int


@event_type("OrderQueued")
class OrderQueued(Event):
    """A limit order that arrived outside the trading sessions while the operator has
    queuing on (RULES.md): kept for the next session, where it is decided like an order
    arriving then (its checks, its hold, its place in the book, in arrival order). It
    holds nothing while it waits: the cash or credits it will need are checked when it
    is released, and it can be cancelled meanwhile."""

    order_id: int
    client_order_id: str
    enterprise_id: str
    instrument: str
    side: str
    price: int
    quantity: int
    time_in_force: str
    post_only: bool
    expire_at: int


@event_type("OrderQueuingSet")
class OrderQueuingSet(Event):
    """The operator turned queuing of out-of-session limit orders on or off."""

    enabled: bool


@event_type("QueuedOrdersReleased")
class QueuedOrdersReleased(Event):
    """The session opened: the queued orders were placed, oldest first. The `results`
    events just before this one in the journal are theirs (their orders' acceptances,
    trades, refusals), not the command's during which the session was found open, whose
    own results follow: so a reader that answers commands can tell the two apart."""

    orders: int
    results: int


@event_type("OrderRejected")
class OrderRejected(Event):
    """An order refused before it held anything; `reason` is a code (see API.md)."""

    order_id: int
    client_order_id: str
    enterprise_id: str
    instrument: str
    side: str
    quantity: int
    price: int
    reason: str


@event_type("TradeExecuted")
class TradeExecuted(Event):
    """Both legs settled in one step: credits to the buyer, cash to the seller, fees taken.

    `aggressor` is the side of the incoming order (`buy` or `sell`), or `block` for a
    negotiated block trade. `buyer_released` is the cash the buy order's hold no longer
    needs after this fill (price improvement and fee rounding reserve).
    """

    trade_id: int
    instrument: str
    price: int
    quantity: int
    buy_order_id: int
    sell_order_id: int
    buyer_id: str
    seller_id: str
    aggressor: str
    buyer_fee: int
    seller_fee: int
    buyer_released: int
    serials: tuple[tuple[int, int], ...]


@event_type("OrderCancelled")
class OrderCancelled(Event):
    """An order's remainder was cancelled and its hold released.

    `reason`: `requested`, `ioc_remainder`, `market_remainder`, `self_trade`,
    `outside_price_band` (a resting order the next day's band no longer admits),
    `enterprise_suspended` or `account_frozen` (every open order of an enterprise that
    was just suspended or frozen).
    """

    order_id: int
    enterprise_id: str
    remaining_quantity: int
    released_cash: int
    released_credits: int
    reason: str


@event_type("OrderExpired")
class OrderExpired(Event):
    """A day order at the session's end, or a good-till-date order at its date."""

    order_id: int
    enterprise_id: str
    remaining_quantity: int
    released_cash: int
    released_credits: int


@event_type("OrderReduced")
class OrderReduced(Event):
    """The remaining quantity was lowered (priority kept); the excess hold released."""

    order_id: int
    enterprise_id: str
    remaining_quantity: int
    released_cash: int
    released_credits: int


@event_type("OrderRepriced")
class OrderRepriced(Event):
    """The order moved to a new price and the back of its queue; the hold follows it.

    `held_cash_delta` is positive when a buy needs more cash at the new price.
    """

    order_id: int
    enterprise_id: str
    price: int
    remaining_quantity: int
    held_cash_delta: int


@event_type("TradingDayClosed")
class TradingDayClosed(Event):
    """End of a trading day for one instrument: the day's prices and the next band's centre.

    `close` is the volume-weighted average price of the day's continuous trades (block
    trades excluded), or the previous close when there were none; `day` is an ISO date
    (Asia/Shanghai).
    """

    instrument: str
    day: str
    open: int
    high: int
    low: int
    close: int
    volume: int
    notional: int
    trades: int


@event_type("EngineSnapshot")
class EngineSnapshot(Event):
    """The engine's whole state after the command at `intake_position` (for fast restart).

    `journal_position` is the journal's head at that point (where the results of later
    commands begin); `state_hash` is sha256 of the canonical state, which a restart or
    a replay that reaches the same position must reproduce.
    """

    intake_position: int
    journal_position: int
    state_hash: str
    #: The state. A writer that has its canonical bytes already may pass them as an
    #: ``orjson.Fragment``, which the codec writes as they are (the state is then
    #: encoded once); decoded, it is always the mapping.
    state: dict[str, Any]
