"""The market's two price formulas, in one place for the engine and the read models.

Both are integer arithmetic on fen: the daily close (and any average price) is the
volume-weighted average rounded half-up; the price band is ±bps of the previous close,
rounded inwards so that a band never admits a price the rule would not.
"""

from __future__ import annotations

__all__ = ["price_band", "vwap"]


def vwap(notional: int, volume: int) -> int:
    """Volume-weighted average price, rounded half-up to the fen (`volume` > 0)."""
    return (2 * notional + volume) // (2 * volume)


def price_band(close: int, bps: int) -> tuple[int, int]:
    """(lowest, highest) admissible price: ±`bps` of `close`, rounded inwards, at least 1."""
    lower = -((-close * (10_000 - bps)) // 10_000)  # ceiling
    return max(lower, 1), close * (10_000 + bps) // 10_000
