"""The engine's market rules, as settings (defaults from RULES.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
