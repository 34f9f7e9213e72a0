"""A realistic command stream for tests and benchmarks (seeded, reproducible).

Setup: one listed instrument, `enterprises` accounts, each with cash and credits. Then
a mix of roughly 60% limit orders (day and gtc), 10% market, 10% IOC/FOK, 20% cancels
of earlier orders, prices around a mid with about 30% of limit orders crossing it.
Randomness lives here, in the workload, never in the engine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from events import commands as c
from events.base import Event

__all__ = ["START", "SYMBOL", "setup_commands", "stream", "workload"]

SYMBOL = "HCC-2025"
MID = 6_000
#: 2025-11-25 10:00 Asia/Shanghai (µs); commands are 100 µs apart.
START = 1_764_036_000_000_000


def setup_commands(enterprises: int) -> list[Event]:
    out: list[Event] = [
        c.ListInstrument(symbol=SYMBOL, vintage=2025, reference_price=MID, fee_bps=5)
    ]
    for index in range(enterprises):
        eid = f"E{index:04d}"
        out += [
            c.OpenAccount(enterprise_id=eid),
            c.DepositCash(enterprise_id=eid, amount=10_000_000_000, reference="seed"),
            c.IssueCredits(
                enterprise_id=eid, instrument=SYMBOL, quantity=1_000_000, reason="allocation"
            ),
        ]
    return out


def stream(
    n: int, enterprises: int = 200, seed: int = 7, first_position: int = 1
) -> Iterator[Event]:
    """`n` trading commands; `first_position` is the intake position of the first one
    (order ids are intake positions, so cancels can name earlier orders)."""
    rng = random.Random(seed)
    placed: list[tuple[int, str]] = []
    for index in range(n):
        position = first_position + index
        eid = f"E{rng.randrange(enterprises):04d}"
        roll = rng.random()
        if roll < 0.2 and placed:
            order_id, owner = placed.pop(rng.randrange(len(placed)))
            yield c.CancelOrder(order_id=order_id, enterprise_id=owner)
            continue
        side = "buy" if rng.random() < 0.5 else "sell"
        quantity = rng.randrange(1, 50) * 10
        # ~30% of limit prices cross the mid (aggressive), the rest rest away from it.
        offset = rng.randrange(1, 60)
        crossing = rng.random() < 0.3
        above = (side == "buy") == crossing
        price = MID + offset if above else MID - offset
        coid = f"c{position}"
        if roll < 0.8:  # limit: day or gtc, cancellable later
            order_type, tif = "limit", "gtc" if rng.random() < 0.3 else "day"
            placed.append((position, eid))
        elif roll < 0.9:
            order_type, tif, price = "market", "ioc", 0
        else:
            order_type, tif = "limit", "ioc" if rng.random() < 0.5 else "fok"
        yield c.PlaceOrder(
            client_order_id=coid,
            enterprise_id=eid,
            instrument=SYMBOL,
            side=side,
            order_type=order_type,
            quantity=quantity,
            price=price,
            time_in_force=tif,
        )


def workload(n: int, enterprises: int = 200, seed: int = 7) -> list[tuple[Event, int]]:
    """Setup plus `n` trading commands, each with its time, ready for the intake log."""
    setup = setup_commands(enterprises)
    commands = setup + list(stream(n, enterprises, seed, first_position=len(setup) + 1))
    return [(command, START + 100 * index) for index, command in enumerate(commands)]
