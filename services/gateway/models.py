"""Request and response bodies of the HTTP API (they are the OpenAPI schema).

Amounts are strict integers (fen, tonnes): ``"100"`` or ``100.5`` is refused, never
coerced. Unknown fields are refused too, so a typo cannot silently mean "default".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

__all__ = [
    "AuditEvent",
    "AuditEventsOut",
    "Balances",
    "BlockTradeIn",
    "Book",
    "CancelBatchAccepted",
    "CancelBatchIn",
    "CancelBatchOut",
    "CancelPending",
    "CancelResult",
    "CandlesOut",
    "CashIn",
    "InstrumentIn",
    "IssuanceIn",
    "LedgerOut",
    "Market",
    "MarketsOut",
    "OrderIn",
    "OrderOut",
    "OrderPatch",
    "OrdersOut",
    "Problem",
    "RetirementIn",
    "SurrenderIn",
    "TradesOut",
]


def _integral(value: object) -> object:
    """JSON has one number type: 100.0 is the integer 100 (as JSON Schema says), but
    100.5, "100" and true are not integers and stay refused by the strict check."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


_INT = BeforeValidator(_integral)
Money = Annotated[int, Field(strict=True, gt=0, le=10**15, description="fen (CNY 0.01)"), _INT]
Tonnes = Annotated[int, Field(strict=True, gt=0, le=10**10, description="tonnes CO2e"), _INT]
Price = Annotated[int, Field(strict=True, gt=0, le=10**8, description="fen per tonne"), _INT]
Id = Annotated[str, Field(min_length=1, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """application/problem+json"""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None
    reason: str | None = Field(None, description="the engine's reason code, when it refused")


class OrderIn(Strict):
    client_order_id: Id
    enterprise_id: Id
    instrument: Id
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"]
    quantity: Tonnes
    price: Price | None = Field(None, description="required for limit orders, absent for market")
    time_in_force: Literal["day", "gtc", "gtd", "ioc", "fok"] = "day"
    post_only: StrictBool = False
    expire_at: Annotated[int, Field(strict=True, gt=0), _INT] | None = Field(
        None, description="gtd only: when it lapses, µs since the epoch"
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "client_order_id": "c-1001",
                    "enterprise_id": "E-DEMO-1",
                    "instrument": "HCC-2025",
                    "side": "buy",
                    "type": "limit",
                    "quantity": 100,
                    "price": 6000,
                    "time_in_force": "day",
                }
            ]
        },
    )


#: Most orders one batch request may carry.
MAX_BATCH_ORDERS = 500


class OrderBatchIn(Strict):
    """Orders placed together: validated together (one bad order refuses the whole
    batch, nothing is appended) and appended in one transaction at consecutive intake
    positions, in the order given. Each is then decided by the engine on its own: some
    may trade, some rest, some be rejected."""

    orders: list[OrderIn] = Field(min_length=1, max_length=MAX_BATCH_ORDERS)


class CancelBatchIn(Strict):
    """Orders cancelled together (a market maker pulling its quotes): all of them must
    exist and belong to enterprises the token trades for, or nothing is appended; the
    cancels are appended in one transaction, in the order given."""

    order_ids: list[Annotated[int, Field(strict=True, ge=1, le=2**63 - 1), _INT]] = Field(
        min_length=1, max_length=MAX_BATCH_ORDERS, json_schema_extra={"uniqueItems": True}
    )


class OrderPatch(Strict):
    """Exactly one of: `quantity` (reduce, keeps priority) or `price` (loses priority)."""

    quantity: Tonnes | None = Field(
        None,
        description="the new REMAINING quantity (below the current remaining one): an "
        "order of 100 t with 60 t filled, reduced to 30, has quantity 90 and 30 remaining",
    )
    price: Price | None = None


class Fill(BaseModel):
    trade_id: int
    position: int
    price: int
    quantity: int
    fee: int
    counterparty_side: Literal["maker", "taker"] = Field(
        description="this order's own role in the fill: `maker` when it was resting on "
        "the book, `taker` when it was the incoming order (the name is kept for API "
        "stability)"
    )


class OrderOut(BaseModel):
    order_id: int
    client_order_id: str
    enterprise_id: str
    instrument: str
    side: str
    type: str
    price: int
    quantity: int
    filled_quantity: int
    remaining_quantity: int
    time_in_force: str
    post_only: bool
    expire_at: int
    status: Literal[
        "open", "partially_filled", "queued", "filled", "cancelled", "rejected", "expired"
    ] = Field(
        description="`queued`: placed outside the trading sessions while the operator has "
        "queuing on; it enters the book when the next session opens, holding nothing "
        "until then (it may be cancelled, not amended)"
    )
    reject_reason: str | None
    held_cash: int
    created_time: int
    updated_position: int
    fills: list[Fill]


class OrderAccepted(BaseModel):
    """202: appended to the intake log (the order id is known), or handed to the command
    topic (it is not yet: find the order by its client order id); the engine decides
    soon (`?wait=false`)."""

    order_id: int | None = None
    status: Literal["pending"]
    intake_position: int | None = None
    client_order_id: str


class OrderBatchOut(BaseModel):
    """The engine's answer to each order of a batch, in the order sent (a rejected
    order has status `rejected` and its `reject_reason`)."""

    orders: list[OrderOut]


class OrderBatchAccepted(BaseModel):
    orders: list[OrderAccepted]


class CancelResult(BaseModel):
    """What became of one cancel: `cancelled` false with the engine's `reason` when the
    order had nothing left to cancel; `order` is the order as it stands after it."""

    order_id: int
    cancelled: bool
    reason: str | None = None
    order: OrderOut


class CancelBatchOut(BaseModel):
    results: list[CancelResult]


class CancelPending(BaseModel):
    order_id: int
    status: Literal["pending"]
    intake_position: int | None = None


class CancelBatchAccepted(BaseModel):
    """202: the cancels are appended (or handed to the command topic); `?wait=false`."""

    results: list[CancelPending]


class EnterpriseFill(BaseModel):
    order_id: int
    trade_id: int
    position: int = Field(description="journal position of the trade")
    instrument: str
    side: Literal["buy", "sell"]
    price: int
    quantity: int
    fee: int
    role: Literal["maker", "taker"] = Field(
        description="the order's role in the fill: `maker` when it was resting on the "
        "book, `taker` when it was the incoming order"
    )


class FillsOut(BaseModel):
    enterprise_id: str
    fills: list[EnterpriseFill] = Field(description="newest trade first")


class OrdersOut(BaseModel):
    orders: list[OrderOut]


class Market(BaseModel):
    symbol: str
    vintage: int
    reference_price: int
    fee_bps: int
    prev_close: int = Field(description="the close the current session's band is based on")
    close: int = Field(
        description="the latest official daily close (fen/t): the VWAP of the most recent "
        "closed trading day, carried over days without trades; the reference price until "
        "the first close. A close starts the next session at once, so during a session "
        "this is the previous day's close and equals `prev_close`"
    )
    last: int | None
    open: int | None
    high: int | None
    low: int | None
    volume: int
    notional: int
    trades: int
    vwap: int | None
    band_low: int
    band_high: int
    listed_position: int


class MarketsOut(BaseModel):
    markets: list[Market]


class Book(BaseModel):
    symbol: str
    bids: list[tuple[int, int, int]] = Field(description="[price, quantity, orders], best first")
    asks: list[tuple[int, int, int]]


class Trade(BaseModel):
    trade_id: int
    position: int
    time: int
    instrument: str
    price: int
    quantity: int
    aggressor: str
    block: bool


class TradesOut(BaseModel):
    trades: list[Trade] = Field(
        description="without `after`: the latest trades, newest first; with `after`: the "
        "trades after that position, oldest first"
    )
    next_after: int = Field(
        description="the newest journal position in `trades` (else `after`, or 0): pass it "
        "as `after` to get the trades that follow"
    )


class Candle(BaseModel):
    start: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    notional: int
    trades: int


class CandlesOut(BaseModel):
    symbol: str
    interval: Literal["1m", "1h", "1d"]
    candles: list[Candle]


class Held(BaseModel):
    available: int
    held: int


class Balances(BaseModel):
    enterprise_id: str
    cash: Held
    credits: dict[str, Held]
    serials: dict[str, list[tuple[int, int]]] = Field(
        default_factory=dict, description="serial ranges held, per instrument"
    )


class Posting(BaseModel):
    position: int
    seq: int
    time: int
    event_type: str
    owner: str
    asset: str
    bucket: str
    amount: int


class LedgerOut(BaseModel):
    enterprise_id: str
    entries: list[Posting] = Field(
        description="oldest first, by (position, seq); a page holds whole positions only"
    )
    next_after: int = Field(
        description="the last journal position in `entries` (else `after`): pass it as "
        "`after` to get the postings that follow"
    )


class CashIn(Strict):
    enterprise_id: Id
    amount: Money
    reference: Annotated[str, Field(max_length=200)] = ""


class IssuanceIn(Strict):
    enterprise_id: Id
    instrument: Id
    quantity: Tonnes
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class InstrumentIn(Strict):
    symbol: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Z0-9][A-Z0-9._-]*$")]
    vintage: Annotated[int, Field(strict=True, ge=2000, le=2100), _INT]
    reference_price: Price
    fee_bps: Annotated[int, Field(strict=True, ge=0, lt=10_000), _INT] = 0


class QueuingIn(Strict):
    enabled: StrictBool = Field(
        description="true: limit orders (day, gtc, gtd) that arrive outside the trading "
        "sessions are queued and enter the book when the next session opens, oldest "
        "first; false: they are refused (`market_closed`)"
    )


class SurrenderIn(Strict):
    enterprise_id: Id
    period: Annotated[str, Field(min_length=1, max_length=16)]
    instrument: Id
    quantity: Tonnes


class RetirementIn(Strict):
    enterprise_id: Id
    instrument: Id
    quantity: Tonnes
    beneficiary: Annotated[str, Field(min_length=1, max_length=200)]
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class BlockTradeIn(Strict):
    instrument: Id
    seller_id: Id
    buyer_id: Id
    quantity: Tonnes
    price: Price


class AuditEvent(BaseModel):
    position: int = Field(description="journal (or intake) position")
    type: str
    version: int = Field(description="the event type's schema version")
    time: int = Field(description="µs since the epoch")
    cause: int | None = Field(description="the intake position that caused it")
    payload: dict[str, Any] = Field(description="the event's fields")
    data: dict[str, Any] = Field(description="the same as `payload` (the original name)")
    hash: str = Field(description="the entry's hash in the chain")


class AuditEventsOut(BaseModel):
    events: list[AuditEvent] = Field(description="oldest first")
    next_after: int = Field(description="pass as `after` to continue")
