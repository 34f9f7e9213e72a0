"""Credit holdings as serial-number ranges.

A holding is a sorted list of disjoint, non-adjacent inclusive ranges ``[first, last]``.
Moving credits always takes the lowest serials first and splits a range where needed,
so every serial is in exactly one place at a time: that is what makes double counting
impossible rather than merely detected.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Final

__all__ = ["Ranges", "add", "count", "take"]

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


#: True in the mypyc-compiled build of this module (its file is then the extension).
COMPILED: Final = not __file__.endswith(".py")


def _position(ranges: Ranges, first: int) -> int:
    """Where a range starting at `first` goes in `ranges`: after the ranges below it.

    The same index as ``bisect_left(ranges, [first, last])`` (ranges never share a first
    serial). Compiled, this loop compares machine integers, several times faster than
    bisect's generic list comparisons; interpreted, it is slower than bisect, so the
    pure-Python module keeps bisect (tests check that both give the same results).
    """
    low = 0
    high = len(ranges)
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
