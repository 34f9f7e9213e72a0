"""Facts about enterprises' cash and credit accounts."""

from __future__ import annotations

from events.base import Event, event_type

__all__ = ["CashDeposited", "CashWithdrawn", "CreditsIssued"]


@event_type("CashDeposited")
class CashDeposited(Event):
    """Cash (fen) arrived in an enterprise's exchange account."""

    enterprise_id: str
    amount: int
    reference: str = ""


@event_type("CashWithdrawn")
class CashWithdrawn(Event):
    """Cash (fen) left an enterprise's exchange account (only ever from available cash)."""

    enterprise_id: str
    amount: int
    reference: str = ""


@event_type("CreditsIssued")
class CreditsIssued(Event):
    """Credits were created for an enterprise as a contiguous block of serial numbers.

    `serial_first`..`serial_last` (inclusive) are this issuance's serials within the
    instrument; serials are never reused, which is what rules out double counting.
    """

    enterprise_id: str
    instrument: str
    quantity: int
    serial_first: int
    serial_last: int
    reason: str
