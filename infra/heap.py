"""The garbage collector, tuned for long-running processes with a large long-lived heap.

CPython's cyclic collector walks every tracked object of a generation when it runs; a
full collection in a process holding an engine's book or a web framework's import
graph (80k to 250k objects here) takes 40 to 75 ms, during which every request in
flight waits. What a service builds at start-up lives as long as the process, so
:func:`settle` collects once, moves everything alive into the permanent generation
(``gc.freeze``, never walked again) and makes collections rarer; objects freed by
reference counting, which is nearly all of them, are unaffected.
"""

from __future__ import annotations

import gc

__all__ = ["settle"]


def settle() -> None:
    """Freeze what is alive now and collect less often (call after start-up or recovery)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
