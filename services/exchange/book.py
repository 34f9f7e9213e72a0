"""Orders and the limit order book of one instrument.

Each side maps price → orders at that price in time priority. A price level is a plain
dict keyed by order id: Python dicts iterate in insertion order (a language guarantee,
not hash order), removal is O(1), and the first value is the level's head. Prices with
orders are also kept in a sorted list, so the best price is an index away.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Final

__all__ = ["BUY", "SELL", "Book", "Order"]

BUY: Final = "buy"
SELL: Final = "sell"


class Order:
    """A resting (or incoming) order and the hold that backs it."""

    __slots__ = (
        "client_order_id",
        "credits",
        "enterprise_id",
        "expire_at",
        "held_cash",
        "id",
        "instrument",
        "is_buy",
        "order_type",
        "post_only",
        "price",
        "quantity",
        "remaining",
        "time_in_force",
    )

    def __init__(
        self,
        id: int,
        client_order_id: str,
        enterprise_id: str,
        instrument: str,
        is_buy: bool,
        order_type: str,
        price: int,
        quantity: int,
        time_in_force: str,
        expire_at: int,
    ) -> None:
        self.id = id
        self.client_order_id = client_order_id
        self.enterprise_id = enterprise_id
        self.instrument = instrument
        self.is_buy = is_buy
        self.order_type = order_type
        self.price = price
        self.quantity = quantity
        self.remaining = quantity
        self.time_in_force = time_in_force
        self.expire_at = expire_at
        self.held_cash = 0
        self.post_only = False
        # Serial ranges a sell order holds, lowest first.
        self.credits: list[list[int]] = []

    @property
    def side(self) -> str:
        return BUY if self.is_buy else SELL


class Book:
    """Both sides of one instrument's book."""

    __slots__ = ("ask_prices", "asks", "bid_prices", "bids")

    def __init__(self) -> None:
        self.bids: dict[int, dict[int, Order]] = {}
        self.asks: dict[int, dict[int, Order]] = {}
        self.bid_prices: list[int] = []  # ascending; best bid is the last
        self.ask_prices: list[int] = []  # ascending; best ask is the first

    def add(self, order: Order) -> None:
        """Rest `order` at the back of its price level."""
        levels, prices = (
            (self.bids, self.bid_prices) if order.is_buy else (self.asks, self.ask_prices)
        )
        level = levels.get(order.price)
        if level is None:
            level = levels[order.price] = {}
            insort(prices, order.price)
        level[order.id] = order

    def remove(self, order: Order) -> None:
        levels, prices = (
            (self.bids, self.bid_prices) if order.is_buy else (self.asks, self.ask_prices)
        )
        level = levels[order.price]
        del level[order.id]
        if not level:
            del levels[order.price]
            del prices[bisect_left(prices, order.price)]

    def best_bid(self) -> int | None:
        return self.bid_prices[-1] if self.bid_prices else None

    def best_ask(self) -> int | None:
        return self.ask_prices[0] if self.ask_prices else None

    def opposite(self, is_buy: bool) -> tuple[dict[int, dict[int, Order]], list[int]]:
        """The levels an incoming order of this side trades against, and their prices."""
        return (self.asks, self.ask_prices) if is_buy else (self.bids, self.bid_prices)

    def depth(self, is_buy: bool, levels: int) -> list[tuple[int, int, int]]:
        """[(price, quantity, orders)] best first, for one side."""
        book, prices = (
            (self.bids, reversed(self.bid_prices))
            if is_buy
            else (
                self.asks,
                iter(self.ask_prices),
            )
        )
        out: list[tuple[int, int, int]] = []
        for price in prices:
            if len(out) == levels:
                break
            level = book[price]
            out.append((price, sum(o.remaining for o in level.values()), len(level)))
        return out
