"""The clock's only way into the exchange: Tick commands on the intake log.

The engine never reads a clock; day orders expire, good-till-date orders lapse and the
trading day closes when a command carrying a later time arrives. On a quiet market
there may be no such command for hours, so this writer appends a Tick at a fixed
interval. Its wall-clock time becomes part of the log like any command's, which keeps
every replay exact.
"""

from __future__ import annotations

import logging
import threading
import time

from events.codec import frame
from events.commands import Tick
from infra.store import Store

__all__ = ["Ticker", "now_us"]

log = logging.getLogger("carbonx.ticker")


def now_us() -> int:
    """Wall-clock time in µs since the epoch (for command time stamps, never the engine)."""
    return time.time_ns() // 1_000


class Ticker:
    def __init__(self, store: Store, interval: float) -> None:
        self.store = store
        self.interval = interval

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.store.intake.append([frame(Tick(), now_us())])
            except Exception:  # the store may be briefly unreachable; try next time
                log.exception("tick not appended")
