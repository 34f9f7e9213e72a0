"""The engine's market rules, as settings (defaults from RULES.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.exchange.calendar import CN_ETS, SessionCalendar

__all__ = ["EngineConfig"]


@dataclass(frozen=True)
class EngineConfig:
    calendar: SessionCalendar = field(default=CN_ETS)
    #: Listing orders within ±band of the previous close (basis points).
    band_bps: int = 1_000
    #: Block trades within ±block band of the previous close.
    block_band_bps: int = 3_000
    #: The smallest block trade, tonnes.
    block_min_quantity: int = 100_000
    #: Credits bought on a trading day cannot be sold the same day.
    resale_next_day: bool = True
    #: Fee override for every instrument (None: each instrument's listed fee).
    fee_bps: int | None = None
    #: Self-trade prevention when an incoming order meets a resting order of the same
    #: enterprise: "cancel_incoming" (RULES.md default: the incoming remainder is
    #: cancelled) or "cancel_resting" (the resting order is cancelled, matching goes on).
    self_trade: str = "cancel_incoming"

    def fingerprint(self) -> dict[str, Any]:
        """The rules as plain data: part of every snapshot, so that a restart under
        other rules is noticed instead of silently diverging from the journal."""
        return {
            "calendar": self.calendar.name,
            "holidays": sorted(self.calendar.holidays),
            "band_bps": self.band_bps,
            "block_band_bps": self.block_band_bps,
            "block_min_quantity": self.block_min_quantity,
            "resale_next_day": self.resale_next_day,
            "fee_bps": self.fee_bps,
            "self_trade": self.self_trade,
        }

    def __post_init__(self) -> None:
        if self.self_trade not in ("cancel_incoming", "cancel_resting"):
            raise ValueError(
                f"self_trade must be cancel_incoming or cancel_resting, not {self.self_trade!r}"
            )
