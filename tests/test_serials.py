"""Serial-range holdings (services/exchange/serials.py), compiled and pure.

The engine moves an order's ranges with :func:`serials.take_ranges` and
:func:`serials.add_ranges`, which keep the list objects they move; they must leave every
holding exactly as :func:`serials.take` and :func:`serials.add` (copies) would, and the
compiled module's search must find the places bisect finds.
"""

from __future__ import annotations

from bisect import bisect_left
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.exchange import native, serials

PURE = native.load_sources()["serials"]
MODULES = [pytest.param(serials, id=native.implementation()), pytest.param(PURE, id="pure")]


def holding(serial_set: set[int]) -> serials.Ranges:
    """The canonical ranges of a set of serials (sorted, disjoint, non-adjacent)."""
    out: serials.Ranges = []
    for serial in sorted(serial_set):
        if out and out[-1][1] + 1 == serial:
            out[-1][1] = serial
        else:
            out.append([serial, serial])
    return out


serial_sets = st.sets(st.integers(1, 400), max_size=120)


@pytest.mark.parametrize("module", MODULES)
@settings(max_examples=300, deadline=None, derandomize=True)
@given(owned=serial_sets, want=st.integers(1, 400))
def test_take_ranges_takes_what_take_takes(module: ModuleType, owned: set[int], want: int) -> None:
    want = min(want, len(owned)) or 1
    if not owned:
        return
    copied, moved = holding(owned), holding(owned)
    taken = module.take(copied, want)
    kept = module.take_ranges(moved, want)
    assert [list(r) for r in taken] == kept
    assert copied == moved
    assert module.as_tuples(kept) == tuple(taken)


@pytest.mark.parametrize("module", MODULES)
@settings(max_examples=300, deadline=None, derandomize=True)
@given(owned=serial_sets, received=serial_sets)
def test_add_ranges_gives_what_add_gives(
    module: ModuleType, owned: set[int], received: set[int]
) -> None:
    received -= owned  # a serial is in one holding at a time
    by_copy, by_move = holding(owned), holding(owned)
    module.add(by_copy, [tuple(r) for r in holding(received)])
    module.add_ranges(by_move, holding(received))
    assert by_copy == by_move == holding(owned | received)


@pytest.mark.parametrize("module", MODULES)
@settings(max_examples=300, deadline=None, derandomize=True)
@given(owned=serial_sets, first=st.integers(0, 401), low=st.integers(0, 130))
def test_position_is_bisect(module: ModuleType, owned: set[int], first: int, low: int) -> None:
    ranges = holding(owned - {first})
    low = min(low, len(ranges))
    assert module._position(ranges, first, low) == bisect_left(ranges, [first, first], low)
