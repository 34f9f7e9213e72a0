"""Commands: what arrives on the intake log for the exchange engine to decide.

A command is a request, not a fact: the engine may refuse it. Validation that needs no
state (schema, tick, lot, known instrument) happens before a command is appended;
everything that needs state (balances, holds, sessions, bands) happens in the engine,
which answers every command with at least one result event on the journal.

Money is integer fen, quantities integer tonnes. A command's time travels in the log
envelope, never read from a clock by the engine.
"""

from __future__ import annotations

from events.base import Event, event_type

__all__ = [
    "BlockTrade",
    "CancelOrder",
    "DepositCash",
    "FreezeAccount",
    "IssueCredits",
    "ListInstrument",
    "OpenAccount",
    "PlaceOrder",
    "ReduceOrder",
    "RepriceOrder",
    "RetireCredits",
    "SetEnterpriseStatus",
    "SetOrderQueuing",
    "SetPositionLimit",
    "SurrenderCredits",
    "Tick",
    "TransferCredits",
    "WithdrawCash",
]


@event_type("OpenAccount")
class OpenAccount(Event):
    """Open exchange accounts (cash and credits) for an approved enterprise."""

    enterprise_id: str


@event_type("SetEnterpriseStatus")
class SetEnterpriseStatus(Event):
    """The registry's status of an enterprise: `active` or `suspended` (no new orders)."""

    enterprise_id: str
    status: str


@event_type("FreezeAccount")
class FreezeAccount(Event):
    """A regulator freezes (or unfreezes) an account: no orders, no withdrawals."""

    enterprise_id: str
    frozen: bool
    reason: str = ""


@event_type("ListInstrument")
class ListInstrument(Event):
    """The operator lists a credit type of one vintage, with its first-day reference price."""

    symbol: str
    vintage: int
    reference_price: int
    fee_bps: int = 0


@event_type("DepositCash")
class DepositCash(Event):
    enterprise_id: str
    amount: int
    reference: str = ""


@event_type("WithdrawCash")
class WithdrawCash(Event):
    """Only ever from available cash: held cash backs open orders."""

    enterprise_id: str
    amount: int
    reference: str = ""


@event_type("IssueCredits")
class IssueCredits(Event):
    """Create credits for an enterprise; the engine assigns the next block of serials."""

    enterprise_id: str
    instrument: str
    quantity: int
    reason: str


@event_type("TransferCredits")
class TransferCredits(Event):
    """Move available credits between enterprises outside the market (lowest serials)."""

    from_enterprise_id: str
    to_enterprise_id: str
    instrument: str
    quantity: int
    reason: str


@event_type("SurrenderCredits")
class SurrenderCredits(Event):
    """Cancel available credits against a compliance period's obligation."""

    enterprise_id: str
    instrument: str
    quantity: int
    period: str


@event_type("RetireCredits")
class RetireCredits(Event):
    """Voluntary retirement: the credits leave circulation for a named beneficiary."""

    enterprise_id: str
    instrument: str
    quantity: int
    beneficiary: str
    reason: str


@event_type("SetOrderQueuing")
class SetOrderQueuing(Event):
    """The operator turns on (or off) queuing of limit orders that arrive outside the
    trading sessions, for the next session (RULES.md); off, they are refused
    (`market_closed`)."""

    enabled: bool


@event_type("SetPositionLimit")
class SetPositionLimit(Event):
    """Cap on an enterprise's total credit holdings plus open buys; 0 removes the cap."""

    enterprise_id: str
    limit: int


@event_type("PlaceOrder")
class PlaceOrder(Event):
    """A new order. Its order id is the intake position of this command.

    `order_type` is `limit` or `market` (`price` 0); `time_in_force` is one of
    `day`, `gtc`, `gtd` (with `expire_at`, µs), `ioc`, `fok`.
    """

    client_order_id: str
    enterprise_id: str
    instrument: str
    side: str
    order_type: str
    quantity: int
    price: int = 0
    time_in_force: str = "day"
    post_only: bool = False
    expire_at: int = 0


@event_type("CancelOrder")
class CancelOrder(Event):
    order_id: int
    enterprise_id: str


@event_type("ReduceOrder")
class ReduceOrder(Event):
    """Lower an open order's remaining quantity to `quantity`; it keeps its priority."""

    order_id: int
    enterprise_id: str
    quantity: int


@event_type("RepriceOrder")
class RepriceOrder(Event):
    """Move an open limit order to a new price; it loses its time priority."""

    order_id: int
    enterprise_id: str
    price: int


@event_type("BlockTrade")
class BlockTrade(Event):
    """A negotiated trade both parties confirmed; settled like any trade."""

    instrument: str
    seller_id: str
    buyer_id: str
    quantity: int
    price: int


@event_type("Tick")
class Tick(Event):
    """The passage of time: lets the engine expire orders and close the trading day."""
