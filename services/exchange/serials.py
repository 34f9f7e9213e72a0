"""Credit holdings as serial-number ranges.

A holding is a sorted list of disjoint, non-adjacent inclusive ranges ``[first, last]``.
Moving credits always takes the lowest serials first and splits a range where needed,
so every serial is in exactly one place at a time: that is what makes double counting
impossible rather than merely detected.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["Ranges", "add", "add_ranges", "as_tuples", "count", "take", "take_ranges"]

Ranges = list[list[int]]


def count(ranges: Ranges) -> int:
    return sum(last - first + 1 for first, last in ranges)


def take(ranges: Ranges, quantity: int) -> list[tuple[int, int]]:
    """Remove the lowest `quantity` serials from `ranges` (in place) and return them.

    The caller has checked that `ranges` holds at least `quantity`.
    """
    if not quantity:
        return []
    first, last = head = ranges[0]
    if last - first >= quantity:  # the common case: part of the lowest range
        head[0] = first + quantity
        return [(first, first + quantity - 1)]
    taken: list[tuple[int, int]] = []
    whole = 0  # ranges taken whole, removed at once at the end
    for first, last in ranges:
        size = last - first + 1
        if size <= quantity:
            taken.append((first, last))
            whole += 1
            quantity -= size
            if not quantity:
                break
        else:
            taken.append((first, first + quantity - 1))
            ranges[whole][0] = first + quantity
            break
    del ranges[:whole]
    return taken


def take_ranges(ranges: Ranges, quantity: int) -> Ranges:
    """:func:`take`, the serials given as ranges (lists) for another holding to keep.

    The ranges taken whole are moved, not copied: the same list objects leave `ranges`
    (nothing else may refer to them). A trade or an order's hold moves several ranges,
    each of which would otherwise be unpacked, copied into a tuple and copied again
    into a new list by :func:`add`. The caller has checked that `ranges` holds at
    least `quantity` (> 0).
    """
    head = ranges[0]
    first = head[0]
    if head[1] - first >= quantity:  # the common case: part of the lowest range
        head[0] = first + quantity
        return [[first, first + quantity - 1]]
    whole = 0  # ranges taken whole, moved at once at the end
    for current in ranges:
        size = current[1] - current[0] + 1
        if size > quantity:
            break
        whole += 1
        quantity -= size
        if not quantity:
            break
    taken = ranges[:whole]
    if quantity:  # part of the next range
        rest = ranges[whole]
        first = rest[0]
        taken.append([first, first + quantity - 1])
        rest[0] = first + quantity
    del ranges[:whole]
    return taken


def as_tuples(ranges: Ranges) -> tuple[tuple[int, int], ...]:
    """`ranges` as events carry them: a tuple of (first, last) tuples."""
    # tuple(r) shares each list's two int objects; typed Any, the compiled module does
    # not unbox them and box them again (as new objects).
    pairs: list[Any] = [tuple(r) for r in ranges]
    return tuple(pairs)


#: True in the mypyc-compiled build of this module (its file is then the extension).
COMPILED: Final = not __file__.endswith(".py")


def _position(ranges: Ranges, first: int, low: int = 0) -> int:
    """Where a range starting at `first` goes in `ranges`, at `low` or after: after the
    ranges below it.

    The same index as ``bisect_left(ranges, [first, last], low)`` (ranges never share a
    first serial), found by galloping from `low` (probes at low, low + 2, low + 5, ...)
    and then halving: the place is usually close to `low`. On the benchmark workload 40%
    of the first ranges a fill delivers go first in the buyer's list, and 90% of the
    others within four places of the range before them; a probe is several dependent
    loads (the range list, its items, the int) that miss the cache on a large book, so
    the number of probes counts more than their instructions. Compiled, this loop
    compares machine integers; interpreted, it is slower than bisect, so the pure-Python
    module keeps bisect (tests/test_serials.py checks that both find the same place).
    """
    size = len(ranges)
    high = low
    step = 1
    while high < size and ranges[high][0] < first:
        low = high + 1
        high = low + step
        step <<= 1
    if high > size:
        high = size
    while low < high:
        middle = (low + high) >> 1
        if ranges[middle][0] < first:
            low = middle + 1
        else:
            high = middle
    return low


def add(ranges: Ranges, new: Sequence[Sequence[int]]) -> None:
    """Put the ranges `new` into `ranges` (in place), merging neighbours."""
    for first, last in new:
        index = _position(ranges, first) if COMPILED else bisect_left(ranges, [first, last])
        # Merge with the left neighbour if adjacent.
        if index and ranges[index - 1][1] + 1 == first:
            index -= 1
            ranges[index][1] = last
        else:
            ranges.insert(index, [first, last])
        # Merge with the right neighbour if adjacent.
        if index + 1 < len(ranges) and ranges[index][1] + 1 == ranges[index + 1][0]:
            ranges[index][1] = ranges[index + 1][1]
            del ranges[index + 1]


def add_ranges(ranges: Ranges, new: Ranges) -> None:
    """:func:`add` for ranges that `ranges` may keep as they are (from :func:`take_ranges`:
    no other holding refers to them); a range that merges with a neighbour is dropped.

    `new` is sorted and disjoint, as every holding is: each range goes after the one
    before it, so the search for its place starts there.
    """
    low = 0
    for new_range in new:
        first = new_range[0]
        index = _position(ranges, first, low) if COMPILED else bisect_left(ranges, new_range, low)
        # Merge with the left neighbour if adjacent.
        if index and ranges[index - 1][1] + 1 == first:
            index -= 1
            ranges[index][1] = new_range[1]
        else:
            ranges.insert(index, new_range)
        # Merge with the right neighbour if adjacent.
        if index + 1 < len(ranges) and ranges[index][1] + 1 == ranges[index + 1][0]:
            ranges[index][1] = ranges[index + 1][1]
            del ranges[index + 1]
        low = index + 1  # the next range goes after this one
