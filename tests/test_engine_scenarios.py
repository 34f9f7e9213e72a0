"""Exchange-engine scenarios, given/when/then, checked against RULES.md by hand.

Each row of a table is one scenario (see tests/engine_dsl.py for the line language).
Unless a row says otherwise: instrument HCC-2025, reference price 5,000 fen, no fee,
calendar `always`, Monday 2025-03-03 10:00 Asia/Shanghai. With reference 5,000 the
listing band is 4,500..5,500 (±10%) and the block band 3,500..6,500 (±30%).

The hold of a buy is price × qty + fee(price × qty) + qty (1 fen/t rounding reserve);
with no fee, a buy of 100 @ 5,000 holds 500,000 + 0 + 100 = 500,100.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from engine_dsl import MONDAY, Acct, Given, Scenario, at, check, hold, run

from events import commands as c
from events.accounts import CreditsIssued, CreditsRetired, CreditsSurrendered, CreditsTransferred
from events.commands import Tick
from events.exchange import (
    OrderAccepted,
    OrderQueued,
    OrderReduced,
    OrderRepriced,
    QueuedOrdersReleased,
    TradeExecuted,
    TradingDayClosed,
)
from services.exchange.calendar import CN_ETS
from services.exchange.engine import Engine

M = 1_000_000  # a round amount of cash (fen)


def G(
    fee: int = 0, calendar=None, start: str = "10:00", ref: int = 5_000, **accounts: Acct
) -> Given:
    return Given(
        accounts=accounts,
        instruments=(("HCC-2025", ref, fee),),
        calendar=calendar or Given().calendar,
        start=start,
    )


SELLER_BUYER = {"A": Acct(credits=300), "B": Acct(cash=M)}

# ---------------------------------------------------------------------------- order types

ORDER_TYPES = [
    Scenario(
        "limit day order rests and holds its credits",
        G(**SELLER_BUYER),
        ["A sell limit 100 @ 5100 day"],
        trades=[],
        asks=[(5100, 100, 1)],
        bids=[],
        balances={"A": (0, 0, 200, 100)},
    ),
    Scenario(
        "limit gtc buy rests and holds price x qty + reserve",
        G(**SELLER_BUYER),
        ["B buy limit 100 @ 5000 gtc"],
        bids=[(5000, 100, 1)],
        # 5000 × 100 + 0 fee + 100 reserve = 500,100 held
        balances={"B": (M - 500_100, 500_100, 0, 0)},
    ),
    Scenario(
        # fee 10 bps. Hold: 5250 × 250 = 1,312,500; fee (13,125,000 + 5,000)//10,000 = 1,313
        # (1,312.5 rounds up); + 250 reserve → 1,314,063.
        # Fills: 100 @ 5100 = 510,000 (fee 510), 100 @ 5200 = 520,000 (fee 520).
        # Rest 50 @ 5250: 262,500 + fee 263 (262.5 up) + 50 = 262,813 held.
        # B cash = 2,000,000 - (510,000 + 510 + 520,000 + 520) - 262,813 = 706,157.
        # A cash = 510,000 - 510 + 520,000 - 520 = 1,028,970. Fees 2 × (510 + 520) = 2,060.
        "buy sweeps two ask levels at the resting prices, remainder rests",
        G(fee=10, A=Acct(credits=300), B=Acct(cash=2 * M)),
        [
            "A sell limit 100 @ 5100 gtc",
            "A sell limit 100 @ 5200 gtc",
            "A sell limit 100 @ 5300 gtc",
            "B buy limit 250 @ 5250 gtc",
        ],
        trades=[("B", "A", 5100, 100), ("B", "A", 5200, 100)],
        bids=[(5250, 50, 1)],
        asks=[(5300, 100, 1)],
        balances={"A": (1_028_970, 0, 0, 100), "B": (706_157, 262_813, 200, 0)},
        fees=2_060,
    ),
    Scenario(
        # B holds 5050 × 100 + 100 = 505,100 and 5000 × 50 + 50 = 250,050.
        # The sell trades at the bids' prices: 100 @ 5050 (505,000) and 20 @ 5000 (100,000);
        # B's rest is 30 @ 5000 holding 150,030. B cash = 1,000,000 - 605,000 - 150,030.
        "sell sweeps bids at the resting bid prices",
        G(A=Acct(credits=200), B=Acct(cash=M)),
        ["B buy limit 100 @ 5050 gtc", "B buy limit 50 @ 5000 gtc", "A sell limit 120 @ 4900"],
        trades=[("B", "A", 5050, 100), ("B", "A", 5000, 20)],
        bids=[(5000, 30, 1)],
        asks=[],
        balances={"A": (605_000, 0, 80, 0), "B": (244_970, 150_030, 120, 0)},
    ),
    Scenario(
        # A market buy holds at the band's upper limit: 5500 × 150 + 150 = 825,150; it pays
        # 510,000 + 260,000 and gets the rest back.
        "market buy walks the book",
        G(**SELLER_BUYER),
        ["A sell limit 100 @ 5100 gtc", "A sell limit 100 @ 5200 gtc", "B buy market 150"],
        trades=[("B", "A", 5100, 100), ("B", "A", 5200, 50)],
        asks=[(5200, 50, 1)],
        bids=[],
        balances={"B": (M - 770_000, 0, 150, 0)},
    ),
    Scenario(
        "market remainder is cancelled, not rested",
        G(**SELLER_BUYER),
        ["A sell limit 100 @ 5100 gtc", "B buy market 150"],
        trades=[("B", "A", 5100, 100)],
        cancels=[("B#1", "market_remainder", 50)],
        bids=[],
        balances={"B": (M - 510_000, 0, 100, 0)},
    ),
    Scenario(
        "market sell trades down to the bids",
        G(**SELLER_BUYER),
        ["B buy limit 10 @ 5000 gtc", "B buy limit 10 @ 4900 gtc", "A sell market 15"],
        trades=[("B", "A", 5000, 10), ("B", "A", 4900, 5)],
        bids=[(4900, 5, 1)],
        balances={"A": (50_000 + 24_500, 0, 285, 0)},
    ),
    Scenario(
        "market order with an empty book: no_liquidity, nothing held",
        G(**SELLER_BUYER),
        ["B buy market 10", "A sell market 10"],
        rejects=[("B#1", "no_liquidity"), ("A#1", "no_liquidity")],
        balances={"A": (0, 0, 300, 0), "B": (M, 0, 0, 0)},
    ),
    Scenario(
        "ioc fills what it can, the remainder is cancelled",
        G(**SELLER_BUYER),
        ["A sell limit 100 @ 5100 gtc", "B buy limit 150 @ 5100 ioc"],
        trades=[("B", "A", 5100, 100)],
        cancels=[("B#1", "ioc_remainder", 50)],
        bids=[],
        balances={"B": (M - 510_000, 0, 100, 0)},
    ),
    Scenario(
        "ioc that cannot trade is cancelled whole",
        G(**SELLER_BUYER),
        ["A sell limit 100 @ 5100 gtc", "B buy limit 50 @ 5000 ioc"],
        trades=[],
        cancels=[("B#1", "ioc_remainder", 50)],
        bids=[],
        balances={"B": (M, 0, 0, 0)},
    ),
    Scenario(
        "fok fills completely across levels",
        G(**SELLER_BUYER),
        [
            "A sell limit 100 @ 5100 gtc",
            "A sell limit 100 @ 5200 gtc",
            "B buy limit 150 @ 5200 fok",
        ],
        trades=[("B", "A", 5100, 100), ("B", "A", 5200, 50)],
        asks=[(5200, 50, 1)],
        cancels=[],
    ),
    Scenario(
        "fok that cannot fill: fok_not_fillable, nothing traded or held",
        G(**SELLER_BUYER),
        ["A sell limit 100 @ 5100 gtc", "B buy limit 150 @ 5200 fok"],
        trades=[],
        rejects=[("B#1", "fok_not_fillable")],
        asks=[(5100, 100, 1)],
        balances={"B": (M, 0, 0, 0)},
    ),
    Scenario(
        "fok sell that cannot fill holds no credits",
        G(**SELLER_BUYER),
        ["B buy limit 10 @ 5000 gtc", "A sell limit 11 @ 5000 fok"],
        rejects=[("A#1", "fok_not_fillable")],
        balances={"A": (0, 0, 300, 0)},
    ),
    Scenario(
        "post-only that does not cross rests",
        G(**SELLER_BUYER),
        ["A sell limit 100 @ 5100 gtc", "B buy limit 50 @ 5099 gtc post-only"],
        trades=[],
        bids=[(5099, 50, 1)],
        rejects=[],
    ),
    Scenario(
        "post-only that would cross: post_only_would_trade, nothing held",
        G(**SELLER_BUYER),
        [
            "A sell limit 100 @ 5100 gtc",
            "B buy limit 50 @ 5100 gtc post-only",
            "B buy limit 10 @ 5000 gtc",
            "A sell limit 5 @ 5000 post-only",
        ],
        trades=[],
        rejects=[("B#1", "post_only_would_trade"), ("A#2", "post_only_would_trade")],
        balances={"A": (0, 0, 200, 100), "B": (M - 50_010, 50_010, 0, 0)},
    ),
]

# ---------------------------------------------------------------------------- priority

PRIORITY = [
    Scenario(
        "price first, then time",
        G(A=Acct(credits=300), C=Acct(credits=300), B=Acct(cash=M)),
        [
            "A sell limit 50 @ 5100 gtc",
            "C sell limit 50 @ 5100 gtc",
            "A sell limit 50 @ 5000 gtc",
            "B buy limit 120 @ 5100",
        ],
        trades=[("B", "A", 5000, 50), ("B", "A", 5100, 50), ("B", "C", 5100, 20)],
        asks=[(5100, 30, 1)],
    ),
    Scenario(
        "reduce keeps priority",
        G(A=Acct(credits=300), C=Acct(credits=300), B=Acct(cash=M)),
        [
            "A sell limit 50 @ 5100 gtc",
            "C sell limit 50 @ 5100 gtc",
            "reduce A#1 to 30",
            "B buy limit 40 @ 5100 ioc",
        ],
        trades=[("B", "A", 5100, 30), ("B", "C", 5100, 10)],
        asks=[(5100, 40, 1)],
        balances={"A": (153_000, 0, 270, 0)},
    ),
    Scenario(
        "reprice loses priority (A was first, moved to C's price, queues behind C)",
        G(A=Acct(credits=300), C=Acct(credits=300), B=Acct(cash=M)),
        [
            "A sell limit 50 @ 5120 gtc",
            "C sell limit 50 @ 5100 gtc",
            "reprice A#1 @ 5100",
            "B buy limit 60 @ 5100",
        ],
        trades=[("B", "C", 5100, 50), ("B", "A", 5100, 10)],
        asks=[(5100, 40, 1)],
    ),
    Scenario(
        "reprice to the same price still goes to the back of the queue",
        G(A=Acct(credits=300), C=Acct(credits=300), B=Acct(cash=M)),
        [
            "A sell limit 50 @ 5100 gtc",
            "C sell limit 50 @ 5100 gtc",
            "reprice A#1 @ 5100",
            "B buy limit 60 @ 5100",
        ],
        trades=[("B", "C", 5100, 50), ("B", "A", 5100, 10)],
    ),
    Scenario(
        # 100 @ 5000 holds 500,100; at 5100 it needs 510,100 (delta +10,000), then trades
        # at the ask's 5100: pays 510,000 and the 100 reserve comes back.
        "reprice across the spread trades as the aggressor",
        G(**SELLER_BUYER),
        ["A sell limit 100 @ 5100 gtc", "B buy limit 100 @ 5000 gtc", "reprice B#1 @ 5100"],
        trades=[("B", "A", 5100, 100)],
        bids=[],
        asks=[],
        balances={"B": (M - 510_000, 0, 100, 0)},
    ),
    Scenario(
        "reprice: band, cash and ownership are checked",
        G(A=Acct(credits=300), B=Acct(cash=600_000)),
        [
            "B buy limit 100 @ 5000 gtc",  # holds 500,100; 99,900 left
            "reprice B#1 @ 5501",
            "reprice B#1 @ 6000",
            "reprice B#1 @ 5500",  # needs 550,100: +50,000 (ok)
            "A reprice B#1 @ 5000",
            "reprice B#1 @ 5499",
        ],
        rejects=[
            ("B RepriceOrder", "outside_price_band"),
            ("B RepriceOrder", "outside_price_band"),
            ("A RepriceOrder", "not_owner"),
        ],
        bids=[(5499, 100, 1)],
        # 5499 × 100 + 100 = 550,000 held
        balances={"B": (50_000, 550_000, 0, 0)},
    ),
    Scenario(
        "reprice needing more cash than is available: insufficient_cash, unchanged",
        G(B=Acct(cash=510_000)),
        ["B buy limit 100 @ 5000 gtc", "reprice B#1 @ 5100"],
        # at 5100 the hold would be 510,100 > 510,000 total
        rejects=[("B RepriceOrder", "insufficient_cash")],
        bids=[(5000, 100, 1)],
        balances={"B": (9_900, 500_100, 0, 0)},
    ),
    Scenario(
        "reduce: released hold, bounds, ownership",
        G(**SELLER_BUYER),
        [
            "B buy limit 100 @ 5000 gtc",
            "reduce B#1 to 100",
            "reduce B#1 to 0",
            "A reduce B#1 to 10",
            "reduce B#1 to 40",  # hold 5000 × 40 + 40 = 200,040
            "A sell limit 100 @ 5100 gtc",
            "reduce A#1 to 25",
        ],
        rejects=[
            ("B ReduceOrder", "invalid_quantity"),
            ("B ReduceOrder", "invalid_quantity"),
            ("A ReduceOrder", "not_owner"),
        ],
        bids=[(5000, 40, 1)],
        asks=[(5100, 25, 1)],
        balances={"A": (0, 0, 275, 25), "B": (M - 200_040, 200_040, 0, 0)},
    ),
]

# ---------------------------------------------------------------------------- bands, sessions, days

DAYS = [
    Scenario(
        "price band ±10% of the reference on the first day",
        G(**SELLER_BUYER),
        [
            "B buy limit 1 @ 5500",
            "B buy limit 1 @ 5501",
            "A sell limit 1 @ 4500 gtc",
            "A sell limit 1 @ 4499",
        ],
        rejects=[("B#2", "outside_price_band"), ("A#2", "outside_price_band")],
        trades=[("B", "A", 5500, 1)],
    ),
    Scenario(
        # Two trades, 1 @ 5000 and 1 @ 5001: VWAP 5000.5 rounds half-up to 5001 (half-even
        # would give 5000). Next day's band: ceil(5001 × 0.9) = ceil(4500.9) = 4501 and
        # floor(5001 × 1.1) = floor(5501.1) = 5501.
        "close = VWAP half-up; the band moves with it the next day",
        G(A=Acct(credits=300), B=Acct(cash=10 * M)),
        [
            "A sell limit 1 @ 5000",
            "A sell limit 1 @ 5001",
            "B buy limit 2 @ 5001",
            "B buy limit 1 @ 5501",  # day 1: outside (5500 max)
            "+1d 10:00 B buy limit 1 @ 5501",  # day 2: inside
            "B buy limit 1 @ 5502",
            "A sell limit 1 @ 4501 gtc",  # trades with B's 5501 bid
            "A sell limit 1 @ 4500",
        ],
        closes=[("2025-03-03", 5001, 2)],
        rejects=[
            ("B#2", "outside_price_band"),
            ("B#4", "outside_price_band"),
            ("A#4", "outside_price_band"),
        ],
        trades=[("B", "A", 5000, 1), ("B", "A", 5001, 1), ("B", "A", 5501, 1)],
    ),
    Scenario(
        # 100 @ 5000 and 200 @ 5003: (500,000 + 1,000,600) / 300 = 5002 exactly.
        "close = volume-weighted, not the last or the mean price",
        G(A=Acct(credits=300), B=Acct(cash=10 * M)),
        [
            "A sell limit 100 @ 5000",
            "A sell limit 200 @ 5003",
            "B buy limit 300 @ 5003",
            "tick +1d 00:00",
        ],
        closes=[("2025-03-03", 5002, 300)],
    ),
    Scenario(
        "a day without trades carries the previous close (and the band)",
        G(A=Acct(credits=300), B=Acct(cash=10 * M)),
        [
            "A sell limit 1 @ 5400",
            "B buy limit 1 @ 5400",
            "tick +1d 10:00",  # day 1 closes at 5400
            "tick +1d 10:00",  # day 2: no trades, carries 5400
            "B buy limit 1 @ 5940",  # 5400 × 1.1 = 5940: inside
            "B buy limit 1 @ 5941",
        ],
        closes=[("2025-03-03", 5400, 1), ("2025-03-04", 5400, 0)],
        rejects=[("B#3", "outside_price_band")],
    ),
    Scenario(
        "cn-ets sessions: 09:30–11:30 and 13:00–15:00 on weekdays only",
        G(calendar=CN_ETS, start="09:00", A=Acct(credits=300)),
        [
            "09:29:59 A sell limit 1 @ 5000 gtc",
            "09:30 A sell limit 1 @ 5000 gtc",
            "11:29:59 A sell limit 1 @ 5000 gtc",
            "11:30 A sell limit 1 @ 5000 gtc",
            "12:59:59 A sell limit 1 @ 5000 gtc",
            "13:00 A sell limit 1 @ 5000 gtc",
            "14:59:59 A sell limit 1 @ 5000 gtc",
            "15:00 A sell limit 1 @ 5000 gtc",
            "2025-03-08 10:00 A sell limit 1 @ 5000 gtc",  # Saturday
            "2025-03-09 14:00 A sell limit 1 @ 5000 gtc",  # Sunday
            "2025-03-10 10:00 A sell limit 1 @ 5000 gtc",  # Monday
        ],
        rejects=[
            ("A#1", "market_closed"),
            ("A#4", "market_closed"),
            ("A#5", "market_closed"),
            ("A#8", "market_closed"),
            ("A#9", "market_closed"),
            ("A#10", "market_closed"),
        ],
        asks=[(5000, 5, 5)],
    ),
    Scenario(
        "cn-ets: day orders expire at 15:00, gtc orders stay",
        G(calendar=CN_ETS, A=Acct(credits=300)),
        [
            "A sell limit 100 @ 5100 day",
            "A sell limit 100 @ 5200 gtc",
            "14:59 tick",
            "15:00 tick",
        ],
        expired=[("A#1", 100)],
        asks=[(5200, 100, 1)],
        closes=[("2025-03-03", 5000, 0)],
        balances={"A": (0, 0, 200, 100)},
    ),
    Scenario(
        "cn-ets: a day not closed by 15:00 closes with the first command of the next day",
        G(calendar=CN_ETS, A=Acct(credits=300), B=Acct(cash=M)),
        ["A sell limit 10 @ 5100 day", "B buy limit 5 @ 5100", "+1d 09:00 tick"],
        expired=[("A#1", 5)],
        closes=[("2025-03-03", 5100, 5)],
    ),
    Scenario(
        "always: day orders expire at local midnight",
        G(A=Acct(credits=300)),
        ["A sell limit 100 @ 5100 day", "23:59:59 tick", "tick +1d 00:00"],
        expired=[("A#1", 100)],
        closes=[("2025-03-03", 5000, 0)],
        balances={"A": (0, 0, 300, 0)},
    ),
    Scenario(
        "gtd expires at its time, driven by a later command's time",
        G(A=Acct(credits=300), B=Acct(cash=M)),
        [
            "A sell limit 100 @ 5100 gtd 10:30",
            "10:29:59 tick",
            "10:30 B buy limit 10 @ 5100",  # too late: the gtd expired first
        ],
        expired=[("A#1", 100)],
        trades=[],
        bids=[(5100, 10, 1)],
        balances={"A": (0, 0, 300, 0)},
    ),
    Scenario(
        "gtd outlives the trading day",
        G(A=Acct(credits=300)),
        ["A sell limit 100 @ 5100 gtd +2d 12:00", "tick +1d 12:00", "tick +1d 11:59", "tick 12:00"],
        expired=[("A#1", 100)],
        closes=[("2025-03-03", 5000, 0), ("2025-03-04", 5000, 0)],
    ),
    Scenario(
        "gtd in the past is invalid",
        G(A=Acct(credits=300)),
        ["A sell limit 100 @ 5100 gtd 09:00", "A sell limit 100 @ 5100 gtd 10:00:01"],
        rejects=[("A#1", "invalid_expiry"), ("A#2", "invalid_expiry")],
    ),
    Scenario(
        "queuing on: limit orders before the open wait, then enter at 09:30 in arrival "
        "order; market and IOC orders are still refused",
        G(calendar=CN_ETS, start="09:00", A=Acct(credits=300), B=Acct(cash=M)),
        [
            "queuing on",
            "09:10 A sell limit 10 @ 5000 gtc",
            "09:11 A sell limit 10 @ 4990 day",
            "09:12 B buy market 5",
            "09:13 B buy limit 5 @ 5000 ioc",
            "09:30 B buy limit 15 @ 5000",
        ],
        rejects=[("B#1", "market_closed"), ("B#2", "market_closed")],
        trades=[("B", "A", 4990, 10), ("B", "A", 5000, 5)],
        asks=[(5000, 5, 1)],
        balances={"A": (74_900, 0, 280, 5), "B": (M - 74_900, 0, 15, 0)},
    ),
    Scenario(
        "a queued order holds nothing, can be cancelled but not reduced, and a "
        "suspension cancels it too",
        G(calendar=CN_ETS, start="08:00", A=Acct(credits=300)),
        [
            "queuing on",
            "A sell limit 10 @ 5000 gtc",
            "A sell limit 20 @ 5000 gtc",
            "reduce A#1 to 5",
            "cancel A#1",
            "suspend A",
            "activate A",
            "09:30 tick",
        ],
        rejects=[("A ReduceOrder", "order_queued")],
        cancels=[("A#1", "requested", 10), ("A#2", "enterprise_suspended", 20)],
        asks=[],
        balances={"A": (0, 0, 300, 0)},
    ),
    Scenario(
        "orders queued after the close enter at the next open under the new day's band",
        G(calendar=CN_ETS, A=Acct(credits=300), B=Acct(cash=M)),
        [
            "A sell limit 10 @ 5400 gtc",
            "B buy limit 10 @ 5400",
            "queuing on",
            "15:30 A sell limit 10 @ 5900 gtc",
            "15:31 A sell limit 10 @ 4800 gtc",  # inside today's band, not tomorrow's
            "+1d 09:30 tick",
        ],
        closes=[("2025-03-03", 5400, 10)],
        rejects=[("A#3", "outside_price_band")],
        asks=[(5900, 10, 1)],
    ),
    Scenario(
        "queuing off again: out-of-session orders are refused; the queued ones still enter",
        G(calendar=CN_ETS, start="09:00", A=Acct(credits=300)),
        [
            "queuing on",
            "A sell limit 10 @ 5000 gtc",
            "queuing off",
            "A sell limit 10 @ 5000 gtc",
            "09:30 tick",
        ],
        rejects=[("A#2", "market_closed")],
        asks=[(5000, 10, 1)],
    ),
]

# ---------------------------------------------------------------------------- risk and accounts

RISK = [
    Scenario(
        "self-trade prevention cancels the incoming remainder",
        G(A=Acct(cash=M, credits=300), C=Acct(credits=300)),
        ["C sell limit 30 @ 5050 gtc", "A sell limit 100 @ 5100 gtc", "A buy limit 80 @ 5100"],
        trades=[("A", "C", 5050, 30)],
        cancels=[("A#2", "self_trade", 50)],
        asks=[(5100, 100, 1)],
        bids=[],
        # A paid 30 × 5050 = 151,500; the rest of its hold came back.
        balances={"A": (M - 151_500, 0, 230, 100)},
    ),
    Scenario(
        "self-trade prevention stops at an own order behind another one",
        G(A=Acct(cash=M, credits=300), C=Acct(credits=300)),
        ["C sell limit 20 @ 5100 gtc", "A sell limit 50 @ 5100 gtc", "A buy limit 40 @ 5100"],
        trades=[("A", "C", 5100, 20)],
        cancels=[("A#2", "self_trade", 20)],
        asks=[(5100, 50, 1)],
    ),
    Scenario(
        "a market order whose first fill would be an own order is refused as self_trade",
        G(A=Acct(cash=M, credits=300), C=Acct(credits=300)),
        ["A sell limit 100 @ 5000 gtc", "C sell limit 100 @ 5100 gtc", "A buy market 50"],
        trades=[],
        rejects=[("A#2", "self_trade")],
        asks=[(5000, 100, 1), (5100, 100, 1)],
        balances={"A": (M, 0, 200, 100)},
    ),
    Scenario(
        "insufficient cash: the hold includes the rounding reserve",
        G(B=Acct(cash=100_000)),
        # 20 @ 5000: 100,000 + 20 reserve > 100,000; 19 @ 5000: 95,019
        ["B buy limit 20 @ 5000", "B buy limit 19 @ 5000"],
        rejects=[("B#1", "insufficient_cash")],
        balances={"B": (4_981, 95_019, 0, 0)},
    ),
    Scenario(
        "insufficient credits, counting credits already held by an order",
        G(A=Acct(credits=50)),
        ["A sell limit 51 @ 5000", "A sell limit 30 @ 5000", "A sell limit 21 @ 5000"],
        rejects=[("A#1", "insufficient_credits"), ("A#3", "insufficient_credits")],
        balances={"A": (0, 0, 20, 30)},
    ),
    Scenario(
        "suspended and frozen accounts cannot trade, their resting orders are cancelled; "
        "frozen cannot withdraw or retire",
        G(A=Acct(cash=M, credits=300)),
        [
            "A sell limit 10 @ 5100 gtc",
            "A buy limit 10 @ 4900 gtc",
            "suspend A",
            "A sell limit 10 @ 5100",
            "cancel A#1",
            "activate A",
            "A sell limit 10 @ 5100 gtc",
            "freeze A",
            "A buy limit 10 @ 5000",
            "A withdraw 1",
            "A retire 5",
            "unfreeze A",
            "A withdraw 1",
            "A sell limit 10 @ 5100",
        ],
        rejects=[
            ("A#3", "enterprise_suspended"),
            ("A CancelOrder", "unknown_order"),
            ("A#5", "account_frozen"),
            ("A WithdrawCash", "account_frozen"),
            ("A RetireCredits", "account_frozen"),
        ],
        cancels=[
            ("A#1", "enterprise_suspended", 10),
            ("A#2", "enterprise_suspended", 10),
            ("A#4", "account_frozen", 10),
        ],
        bids=[],
        asks=[(5100, 10, 1)],
        balances={"A": (M - 1, 0, 290, 10)},
    ),
    Scenario(
        "a frozen seller's resting order is gone: the buy that would have hit it rests",
        G(S=Acct(credits=100), B=Acct(cash=M)),
        ["S sell limit 100 @ 5000 gtc", "freeze S", "B buy limit 100 @ 5000 gtc"],
        trades=[],
        cancels=[("S#1", "account_frozen", 100)],
        bids=[(5000, 100, 1)],
        asks=[],
        balances={"S": (0, 0, 100, 0)},
    ),
    Scenario(
        "position limit: holdings + open buys + order ≤ limit",
        G(B=Acct(cash=10 * M, credits=100)),
        ["limit B 150", "B buy limit 51 @ 5000", "B buy limit 50 @ 5000", "B buy limit 1 @ 5000"],
        rejects=[("B#1", "position_limit"), ("B#3", "position_limit")],
        bids=[(5000, 50, 1)],
    ),
    Scenario(
        "T+1: credits bought today cannot be sold today, but older ones can",
        G(A=Acct(credits=300), B=Acct(cash=M, credits=30)),
        [
            "A sell limit 100 @ 5000 gtc",
            "B buy limit 100 @ 5000",
            "B sell limit 31 @ 5100",
            "B sell limit 30 @ 5100 gtc",
            "+1d 10:00 B sell limit 100 @ 5100 gtc",
            "B sell limit 1 @ 5100",
        ],
        rejects=[("B#2", "resale_same_day"), ("B#5", "insufficient_credits")],
        asks=[(5100, 130, 2)],
        balances={"B": (M - 500_000, 0, 0, 130)},
    ),
    Scenario(
        # fee 10 bps. B's hold: 510,000 + 510 + 100 = 510,610. It trades 100 @ 5000 (the
        # ask): notional 500,000, fee 500 each side; released 510,610 - 500,500 = 10,110.
        "fees go to the fee account; price improvement releases the hold",
        G(fee=10, A=Acct(credits=300), B=Acct(cash=M)),
        ["A sell limit 100 @ 5000 gtc", "B buy limit 100 @ 5100"],
        trades=[("B", "A", 5000, 100)],
        balances={"A": (499_500, 0, 200, 0), "B": (499_500, 0, 100, 0)},
        fees=1_000,
    ),
    Scenario(
        # fee 10 bps. B holds 510,000 + 510 + 100 = 510,610. A's 40 fill: notional 204,000,
        # fee 204; the rest (60) needs 306,000 + 306 + 60 = 306,366, so 40 is released.
        # Cancel releases exactly 306,366. B paid 204,204; A got 203,796.
        "cancel a partly filled buy releases the remainder's hold",
        G(fee=10, A=Acct(credits=300), B=Acct(cash=M)),
        ["B buy limit 100 @ 5100 gtc", "A sell limit 40 @ 5100", "cancel B#1"],
        trades=[("B", "A", 5100, 40)],
        cancels=[("B#1", "requested", 60)],
        bids=[],
        balances={"A": (203_796, 0, 260, 0), "B": (M - 204_204, 0, 40, 0)},
        fees=408,
    ),
    Scenario(
        "cancel a partly filled sell gives back the unsold credits",
        G(A=Acct(credits=100), B=Acct(cash=M)),
        [
            "A sell limit 100 @ 5100 gtc",
            "B buy limit 30 @ 5100",
            "cancel A#1",
            "cancel A#1",
            "B cancel A#1",
        ],
        cancels=[("A#1", "requested", 70)],
        rejects=[("A CancelOrder", "unknown_order"), ("B CancelOrder", "unknown_order")],
        balances={"A": (153_000, 0, 70, 0)},
    ),
    Scenario(
        "cancel someone else's order: not_owner",
        G(A=Acct(credits=100), B=Acct(cash=M)),
        ["A sell limit 100 @ 5100 gtc", "B cancel A#1"],
        rejects=[("B CancelOrder", "not_owner")],
        asks=[(5100, 100, 1)],
    ),
    Scenario(
        "withdrawal only from available cash",
        G(B=Acct(cash=M)),
        ["B buy limit 100 @ 5000 gtc", "B withdraw 499901", "B withdraw 499900", "B withdraw 0"],
        # 1,000,000 - 500,100 held = 499,900 available
        rejects=[("B WithdrawCash", "insufficient_cash"), ("B WithdrawCash", "invalid_amount")],
        balances={"B": (0, 500_100, 0, 0)},
    ),
    Scenario(
        "surrender and retire only available credits (not those held for an order)",
        G(A=Acct(credits=100)),
        [
            "A sell limit 60 @ 5100 gtc",
            "A surrender 41",
            "A surrender 30",
            "A retire 11",
            "A retire 10",
            "A retire 1",
            "A surrender 0",
        ],
        rejects=[
            ("A SurrenderCredits", "insufficient_credits"),
            ("A RetireCredits", "insufficient_credits"),
            ("A RetireCredits", "insufficient_credits"),
            ("A SurrenderCredits", "invalid_quantity"),
        ],
        balances={"A": (0, 0, 0, 60)},
    ),
]

# ---------------------------------------------------------------------------- block trades

BIG = {"A": Acct(credits=300_000), "B": Acct(cash=2_000 * M)}

BLOCKS = [
    Scenario(
        # fee 10 bps: notional 100,000 × 5000 = 500,000,000; fee 500,000 per side.
        "block trade settles both legs with fees, outside the VWAP close",
        G(fee=10, **BIG),
        ["block A->B 100000 @ 6500", "tick +1d 00:00"],
        trades=[("B", "A", 6500, 100_000)],
        # notional 650,000,000, fee 650,000 per side
        balances={
            "A": (650_000_000 - 650_000, 0, 200_000, 0),
            "B": (2_000 * M - 650_650_000, 0, 100_000, 0),
        },
        fees=1_300_000,
        closes=[("2025-03-03", 5000, 0)],
    ),
    Scenario(
        "block trade: minimum size, ±30% band, self, funds, credits",
        G(**BIG, C=Acct(cash=10 * M)),
        [
            "block A->B 99999 @ 5000",
            "block A->B 100000 @ 6501",
            "block A->B 100000 @ 3499",
            "block A->A 100000 @ 5000",
            "block A->C 100000 @ 5000",
            "block B->A 100000 @ 5000",
            "block A->B 100000 @ 3500",
        ],
        rejects=[
            ("B BlockTrade", "below_block_minimum"),
            ("B BlockTrade", "outside_price_band"),
            ("B BlockTrade", "outside_price_band"),
            ("A BlockTrade", "self_trade"),
            ("C BlockTrade", "insufficient_cash"),
            ("B BlockTrade", "insufficient_credits"),
        ],
        trades=[("B", "A", 3500, 100_000)],
    ),
    Scenario(
        "cn-ets: block trades only 13:00–15:00; block-bought credits are T+1 too",
        G(calendar=CN_ETS, **BIG),
        [
            "10:00 block A->B 100000 @ 5000",
            "13:00 block A->B 100000 @ 5000",
            "B sell limit 1 @ 5000",
            "14:59:59 block B->A 100000 @ 5000",
            "15:00 block A->B 100000 @ 5000",
        ],
        rejects=[
            ("B BlockTrade", "market_closed"),
            ("B#1", "resale_same_day"),
            ("B BlockTrade", "resale_same_day"),
            ("B BlockTrade", "market_closed"),
        ],
        trades=[("B", "A", 5000, 100_000)],
    ),
]


# ---------------------------------------------------------------------------- day-boundary and
# policy rules

POLICIES = [
    Scenario(
        # Day 1 closes at 5400 (one trade); day 2's band is 4860..5940, so C's resting
        # gtc bid at 4600 (inside day 1's 4500..5500) is cancelled at the close and its
        # hold (4600 × 10 + 10 = 46,010) returned.
        "a resting order outside the next day's band is cancelled at the close",
        G(A=Acct(credits=10), B=Acct(cash=M), C=Acct(cash=M)),
        [
            "C buy limit 10 @ 4600 gtc",
            "A sell limit 1 @ 5400",
            "B buy limit 1 @ 5400",
            "tick +1d 10:00",
        ],
        closes=[("2025-03-03", 5400, 1)],
        cancels=[("C#1", "outside_price_band", 10)],
        bids=[],
        balances={"C": (M, 0, 0, 0)},
    ),
    Scenario(
        "a post-only order cannot be repriced across the spread",
        G(A=Acct(credits=10), B=Acct(cash=M)),
        [
            "A sell limit 10 @ 5100 gtc",
            "B buy limit 10 @ 5000 gtc post-only",
            "reprice B#1 @ 5100",
            "reprice B#1 @ 5099",
        ],
        rejects=[("B RepriceOrder", "post_only_would_trade")],
        trades=[],
        bids=[(5099, 10, 1)],
        asks=[(5100, 10, 1)],
    ),
    Scenario(
        # cancel_resting: A's own resting ask is cancelled, then A buys B's ask; the
        # remainder of A's bid rests.
        "self-trade prevention set to cancel the resting order",
        Given(
            accounts={"A": Acct(cash=M, credits=10), "B": Acct(credits=10)},
            config={"self_trade": "cancel_resting"},
        ),
        [
            "A sell limit 10 @ 5000 gtc",
            "B sell limit 10 @ 5010 gtc",
            "A buy limit 20 @ 5010",
        ],
        cancels=[("A#1", "self_trade", 10)],
        trades=[("A", "B", 5010, 10)],
        bids=[(5010, 10, 1)],
        asks=[],
    ),
    Scenario(
        "credits cannot be transferred out of or into a frozen account",
        G(A=Acct(credits=10), B=Acct()),
        ["freeze A", "A transfer 5 to B", "unfreeze A", "freeze B", "A transfer 5 to B"],
        rejects=[
            ("A TransferCredits", "account_frozen"),
            ("B TransferCredits", "account_frozen"),
        ],
        balances={"A": (0, 0, 10, 0), "B": (0, 0, 0, 0)},
    ),
]


@pytest.mark.parametrize("s", POLICIES, ids=str)
def test_policies(s: Scenario) -> None:
    check(s)


@pytest.mark.parametrize("s", ORDER_TYPES, ids=str)
def test_order_types(s: Scenario) -> None:
    check(s)


@pytest.mark.parametrize("s", PRIORITY, ids=str)
def test_priority_reduce_reprice(s: Scenario) -> None:
    check(s)


@pytest.mark.parametrize("s", DAYS, ids=str)
def test_bands_sessions_days(s: Scenario) -> None:
    check(s)


@pytest.mark.parametrize("s", RISK, ids=str)
def test_risk_and_accounts(s: Scenario) -> None:
    check(s)


@pytest.mark.parametrize("s", BLOCKS, ids=str)
def test_block_trades(s: Scenario) -> None:
    check(s)


# ---------------------------------------------------------------------------- event details


def test_market_buy_holds_at_the_band_limit() -> None:
    m = run(G(**SELLER_BUYER), ["A sell limit 100 @ 5100 gtc", "B buy market 100"])
    accepted = m.accepted("B#1")
    # band top 5500: 5500 × 100 + 0 + 100 = 550,100
    assert (accepted.price, accepted.held_cash) == (5_500, 550_100)
    (trade,) = m.of(TradeExecuted)
    # 550,100 - 510,000 paid = 40,100 released
    assert trade.buyer_released == 40_100


def test_buyer_released_on_price_improvement_with_fee() -> None:
    m = run(G(fee=10, **SELLER_BUYER), ["A sell limit 100 @ 5000 gtc", "B buy limit 100 @ 5100"])
    assert m.accepted("B#1").held_cash == 510_610 == hold(5_100, 100, 10)
    (trade,) = m.of(TradeExecuted)
    assert (trade.buyer_fee, trade.seller_fee, trade.buyer_released) == (500, 500, 10_110)
    assert trade.aggressor == "buy"


def test_rounding_reserve_covers_per_fill_fee_rounding() -> None:
    # fee 5 bps, buy 2 @ 5001. Whole: notional 10,002, fee (50,010 + 5,000)//10,000 = 5,
    # hold 10,002 + 5 + 2 = 10,009. Each 1 t fill: notional 5,001, fee
    # (25,005 + 5,000)//10,000 = 3 (2.5005 up) — two fills cost 2 × 5,004 = 10,008, one
    # more fen than notional + fee on the whole (10,007): the reserve pays for it.
    m = run(
        G(fee=5, A=Acct(credits=10), B=Acct(cash=M)),
        ["B buy limit 2 @ 5001 gtc", "A sell limit 1 @ 5001", "A sell limit 1 @ 5001"],
    )
    assert m.accepted("B#1").held_cash == 10_009
    first, second = m.of(TradeExecuted)
    # after fill 1 the rest (1 t) holds 5,001 + 3 + 1 = 5,005: 10,009 - 5,005 - 5,004 = 0
    assert (first.buyer_fee, first.buyer_released) == (3, 0)
    assert (second.buyer_fee, second.buyer_released) == (3, 1)
    assert m.balance("B") == (M - 10_008, 0, 2, 0)
    assert m.balance("A") == (2 * (5_001 - 3), 0, 8, 0)
    assert m.engine.fees_collected == 12


def test_reduce_and_reprice_events_carry_the_hold_changes() -> None:
    m = run(
        G(fee=10, **SELLER_BUYER),
        ["B buy limit 100 @ 5000 gtc", "reduce B#1 to 60", "reprice B#1 @ 5100"],
    )
    # 100 @ 5000: 500,000 + 500 + 100 = 500,600; 60 @ 5000: 300,000 + 300 + 60 = 300,360
    assert m.accepted("B#1").held_cash == 500_600
    (reduced,) = m.of(OrderReduced)
    assert (reduced.remaining_quantity, reduced.released_cash) == (60, 200_240)
    # 60 @ 5100: 306,000 + 306 + 60 = 306,366: +6,006
    (repriced,) = m.of(OrderRepriced)
    assert (repriced.price, repriced.held_cash_delta) == (5_100, 6_006)
    assert m.balance("B") == (M - 306_366, 306_366, 0, 0)
    assert m.engine.orders[m.refs["B#1"]].quantity == 60


def test_serials_move_lowest_first_and_split() -> None:
    m = run(
        G(A=Acct(credits=100), B=Acct(cash=M), C=Acct()),
        [
            "A sell limit 30 @ 5000 gtc",  # holds serials 1..30
            "B buy limit 10 @ 5000",  # B gets 1..10
            "A transfer 5 to C",  # from A's available 31..100: 31..35
            "A issue 50",  # 101..150, merged with 36..100: A holds [36, 150]
            "A surrender 70",  # 36..105, one range
            "A retire 5",  # 106..110
            "cancel A#1",  # 11..30 come back to A, lowest first again
            "A retire 25",  # 11..30, 111..115
        ],
    )
    trade = m.of(TradeExecuted)[0]
    assert trade.serials == ((1, 10),)
    assert m.of(CreditsTransferred)[0].serials == ((31, 35),)
    assert (m.of(CreditsIssued)[-1].serial_first, m.of(CreditsIssued)[-1].serial_last) == (101, 150)
    assert m.of(CreditsSurrendered)[0].serials == ((36, 105),)
    retired = m.of(CreditsRetired)
    assert retired[0].serials == ((106, 110),)
    assert retired[1].serials == ((11, 30), (111, 115))
    eng = m.engine
    assert eng.accounts["A"].credits["HCC-2025"] == [[116, 150]]
    assert eng.accounts["B"].credits["HCC-2025"] == [[1, 10]]
    assert eng.accounts["C"].credits["HCC-2025"] == [[31, 35]]


def test_resting_sell_delivers_its_own_serials_in_order() -> None:
    m = run(
        G(A=Acct(credits=10), B=Acct(cash=M)),
        [
            "A sell limit 4 @ 5000 gtc",  # 1..4
            "A sell limit 4 @ 5000 gtc",  # 5..8
            "B buy limit 6 @ 5000",
        ],
    )
    assert [t.serials for t in m.of(TradeExecuted)] == [((1, 4),), ((5, 6),)]
    assert m.engine.orders[m.refs["A#2"]].credits == [[7, 8]]


def test_trading_day_closed_reports_open_high_low() -> None:
    m = run(
        G(A=Acct(credits=300), B=Acct(cash=10 * M)),
        [
            "A sell limit 10 @ 5100",
            "B buy limit 10 @ 5100",
            "A sell limit 10 @ 4950",
            "B buy limit 10 @ 4950",
            "A sell limit 20 @ 5200",
            "B buy limit 20 @ 5200",
            "tick +1d 00:00",
        ],
    )
    (close,) = m.of(TradingDayClosed)
    # VWAP (51,000 + 49,500 + 104,000) / 40 = 204,500 / 40 = 5,112.5 → 5,113
    assert (close.open, close.high, close.low, close.close) == (5_100, 5_200, 4_950, 5_113)
    assert (close.volume, close.notional, close.trades) == (40, 204_500, 3)


def test_time_never_runs_backwards() -> None:
    m = run(G(A=Acct(credits=10)), ["A sell limit 1 @ 5000 gtd 10:30", "10:31 tick"])
    assert m.expired() == [("A#1", 1)]
    # A command stamped earlier than the engine's time is treated as happening now.
    engine = m.engine
    before = engine.time
    assert engine.apply(999, before - 3_600_000_000, Tick()) == []
    assert engine.time == before


def test_state_is_a_copy_not_a_view() -> None:
    m = run(G(A=Acct(credits=100), B=Acct(cash=M)), ["A sell limit 30 @ 5000 gtc"])
    state = m.engine.state()
    frozen = repr(state)
    m.line("B buy limit 10 @ 5000")
    m.line("A retire 5")
    assert repr(state) == frozen
    restored = Engine.from_state(state, m.engine.config)
    m.line("A retire 5")
    assert restored.accounts["A"].available("HCC-2025") == 70


def test_no_trading_day_closed_for_weekend_days_on_cn_ets() -> None:
    m = run(
        G(calendar=CN_ETS, A=Acct(credits=10)),
        [
            "2025-03-07 15:00 tick",
            "2025-03-08 16:00 tick",
            "2025-03-09 16:00 tick",
            "2025-03-10 15:00 tick",
        ],
    )
    # Tuesday to Thursday had no command: they close too, carrying the close.
    assert [d for d, _, _ in m.closes()] == [
        "2025-03-03", "2025-03-04", "2025-03-05", "2025-03-06", "2025-03-07", "2025-03-10",
    ]  # fmt: skip
    assert {close for _, close, _ in m.closes()} == {5_000}


def test_accepted_order_event_describes_the_order() -> None:
    m = run(G(A=Acct(credits=10)), ["A sell limit 5 @ 5000 gtd 11:00 post-only"])
    a = m.accepted("A#1")
    assert isinstance(a, OrderAccepted)
    assert (a.side, a.order_type, a.time_in_force, a.post_only, a.held_credits) == (
        "sell",
        "limit",
        "gtd",
        True,
        5,
    )


def test_no_trading_day_closed_for_holidays() -> None:
    # 2025-03-05 (a Wednesday) made a holiday: no session, no daily close for it.
    holiday = date(2025, 3, 5).toordinal() - date(1970, 1, 1).toordinal()
    calendar = replace(CN_ETS, holidays=frozenset({holiday}))
    m = run(
        G(calendar=calendar, A=Acct(credits=10)),
        [
            "2025-03-04 15:00 tick",
            "2025-03-05 10:00 A sell limit 1 @ 5000",
            "2025-03-05 16:00 tick",
        ],
    )
    assert m.rejects() == [("A#1", "market_closed")]
    assert [d for d, _, _ in m.closes()] == ["2025-03-03", "2025-03-04"]


def test_frozen_or_suspended_account_has_no_order_left_to_reprice_into_a_trade() -> None:
    # A freeze means no orders: moving a resting order across the spread would be trading
    # too. The freeze (and the suspension) cancelled the order, so there is none to move.
    m = run(
        G(A=Acct(credits=100), B=Acct(cash=M)),
        [
            "A sell limit 10 @ 5100 gtc",
            "B buy limit 10 @ 5000 gtc",
            "freeze B",
            "reprice B#1 @ 5100",
            "unfreeze B",
            "B buy limit 10 @ 5000 gtc",
            "suspend B",
            "reprice B#2 @ 5100",
            "reduce B#2 to 5",
        ],
    )
    assert m.cancels() == [("B#1", "account_frozen", 10), ("B#2", "enterprise_suspended", 10)]
    assert m.rejects() == [
        ("B RepriceOrder", "unknown_order"),
        ("B RepriceOrder", "unknown_order"),
        ("B ReduceOrder", "unknown_order"),
    ]
    assert m.trades() == []
    assert m.depth(True) == []
    assert m.balance("B") == (M, 0, 0, 0)  # every hold released


def test_repriced_gtd_order_is_queued_for_expiry_once() -> None:
    m = run(
        G(A=Acct(credits=100)),
        [
            "A sell limit 10 @ 5100 gtd 11:00",
            "reprice A#1 @ 5200",
            "reprice A#1 @ 5150",
            "reprice A#1 @ 5120",
        ],
    )
    assert m.engine.expiries == [(at(MONDAY, "11:00"), m.refs["A#1"])]
    m.line("11:00 tick")
    assert m.expired() == [("A#1", 10)]
    assert m.engine.expiries == []


def test_queued_orders_are_released_as_a_marked_block_and_survive_a_snapshot() -> None:
    given = G(calendar=CN_ETS, start="09:00", A=Acct(credits=300), B=Acct(cash=M))
    m = run(given, ["queuing on", "A sell limit 10 @ 5000 gtc", "A sell limit 5 @ 5010 day"])
    queued = m.of(OrderQueued)
    assert [(q.order_id, q.quantity, q.price) for q in queued] == [
        (m.order_id("A#1"), 10, 5_000),
        (m.order_id("A#2"), 5, 5_010),
    ]
    assert m.balance("A") == (0, 0, 300, 0)  # nothing held while queued
    restored = Engine.from_state(m.engine.state(), m.engine.config)
    assert restored.state_hash() == m.engine.state_hash()
    # The same command at the open gives the same results on both engines: the
    # queued orders' own results, the release marker, then the command's.
    opening = c.PlaceOrder(
        client_order_id="b", enterprise_id="B", instrument="HCC-2025", side="buy",
        order_type="limit", quantity=3, price=5_000, time_in_force="day",
        post_only=False, expire_at=0,
    )  # fmt: skip
    at_open = at(MONDAY, "09:30")
    live = m.engine.apply(m.position + 1, at_open, opening)
    assert restored.apply(m.position + 1, at_open, opening) == live
    assert [type(e) for e in live[:2]] == [OrderAccepted, OrderAccepted]
    assert [e.order_id for e in live[:2]] == [m.order_id("A#1"), m.order_id("A#2")]
    released = live[2]
    assert isinstance(released, QueuedOrdersReleased)
    assert (released.orders, released.results) == (2, 2)
    assert isinstance(live[3], OrderAccepted) and live[3].order_id == m.position + 1
    assert isinstance(live[4], TradeExecuted) and live[4].quantity == 3
    assert restored.state_hash() == m.engine.state_hash()
    assert not m.engine.queued
