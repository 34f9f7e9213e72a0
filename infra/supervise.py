"""Keep a long-running loop alive through outages of the store or the broker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["supervise"]


def supervise(
    stop: threading.Event,
    step: Callable[[], object],
    recover: Callable[[], object],
    *,
    name: str,
    log: logging.Logger,
    fatal: tuple[type[BaseException], ...] = (),
) -> None:
    """Call `step` until `stop` is set.

    A failing step is logged and retried with exponential backoff (0.1 s to 5 s); before
    the next step, `recover` rebuilds whatever the failure may have left inconsistent
    (and may itself fail, which is retried the same way). Exceptions in `fatal` end the
    loop: they mean going on would be wrong, not merely impossible for now.
    """
    backoff = 0.1
    failed = False
    while not stop.is_set():
        try:
            if failed:
                recover()
                failed = False
            step()
            backoff = 0.1
        except fatal:
            log.exception("%s cannot go on", name)
            raise
        except Exception:
            log.exception("%s failed; retrying in %.1f s", name, backoff)
            failed = True
            stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)
