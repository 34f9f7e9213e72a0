"""Facts about enterprises' cash and credit accounts."""

from __future__ import annotations

from events.base import Event, event_type

__all__ = [
    "AccountFreezeChanged",
    "AccountOpened",
    "CashDeposited",
    "CashWithdrawn",
    "CommandRejected",
    "CreditsIssued",
    "CreditsRetired",
    "CreditsSurrendered",
    "CreditsTransferred",
    "EnterpriseStatusChanged",
    "PositionLimitSet",
]


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


@event_type("AccountOpened")
class AccountOpened(Event):
    enterprise_id: str


@event_type("EnterpriseStatusChanged")
class EnterpriseStatusChanged(Event):
    enterprise_id: str
    status: str


@event_type("AccountFreezeChanged")
class AccountFreezeChanged(Event):
    enterprise_id: str
    frozen: bool
    reason: str


@event_type("PositionLimitSet")
class PositionLimitSet(Event):
    enterprise_id: str
    limit: int


@event_type("CreditsTransferred")
class CreditsTransferred(Event):
    """Credits moved between enterprises; `serials` are the exact (first, last) ranges."""

    from_enterprise_id: str
    to_enterprise_id: str
    instrument: str
    quantity: int
    serials: tuple[tuple[int, int], ...]
    reason: str


@event_type("CreditsSurrendered")
class CreditsSurrendered(Event):
    """Credits cancelled against an obligation; the serials can never circulate again."""

    enterprise_id: str
    instrument: str
    quantity: int
    serials: tuple[tuple[int, int], ...]
    period: str


@event_type("CreditsRetired")
class CreditsRetired(Event):
    """Credits retired voluntarily; the serials are published with the beneficiary."""

    enterprise_id: str
    instrument: str
    quantity: int
    serials: tuple[tuple[int, int], ...]
    beneficiary: str
    reason: str


@event_type("CommandRejected")
class CommandRejected(Event):
    """A non-order command the engine refused, with a reason code; nothing changed."""

    command: str
    enterprise_id: str
    reason: str
    detail: str = ""
