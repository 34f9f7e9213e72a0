"""Facts about the market itself: what is listed and on which terms."""

from __future__ import annotations

from typing import Any

from events.base import Event, event_type, upcaster

__all__ = ["InstrumentListed"]


@event_type("InstrumentListed", version=2)
class InstrumentListed(Event):
    """The operator listed a credit type of one vintage for trading.

    v2 added per-instrument fees (RULES.md: "Fees: per side, in basis points of
    notional, per instrument"). Instruments listed under v1 traded without fees, which
    is exactly what the upcaster says.
    """

    symbol: str
    vintage: int
    reference_price: int  # fen per tonne: the first day's band centre
    fee_bps: int


@upcaster("InstrumentListed", from_version=1)
def _instrument_listed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "fee_bps": 0}
