"""A tiny given/when/then language for exchange-engine scenarios.

A scenario is data, so a table of them reads like the rules it checks::

    Scenario(
        "buy sweeps two ask levels",
        given=Given(accounts={"A": Acct(credits=300), "B": Acct(cash=2_000_000)}),
        when=[
            "A sell limit 100 @ 5100 gtc",
            "A sell limit 100 @ 5200 gtc",
            "B buy limit 150 @ 5200",
        ],
        trades=[("B", "A", 5100, 100), ("B", "A", 5200, 50)],
        asks=[(5200, 50, 1)],
    )

Command lines (``X``/``Y`` are enterprise names, ``SYM`` an optional instrument symbol,
by default the first one listed):

- ``X buy|sell limit QTY [SYM] @ PRICE [day|gtc|ioc|fok|gtd TIME] [post-only]``
- ``X buy|sell market QTY [SYM] [ioc|fok]``
- ``cancel X#n`` / ``Y cancel X#n`` (``X#n`` is X's n-th order line of the scenario)
- ``reduce X#n to QTY``, ``reprice X#n @ PRICE`` (also with a leading ``Y``)
- ``tick [TIME]``
- ``X deposit AMOUNT``, ``X withdraw AMOUNT``, ``X issue QTY [SYM]``,
  ``X transfer QTY [SYM] to Y``, ``X surrender QTY [SYM]``, ``X retire QTY [SYM]``
- ``block X->Y QTY [SYM] @ PRICE`` (seller X, buyer Y)
- ``freeze X``, ``unfreeze X``, ``suspend X``, ``activate X``, ``limit X QTY``

Any line may start with a TIME at which it is sent: ``HH:MM[:SS]`` (same local day),
``+Nd HH:MM`` (N days later) or ``YYYY-MM-DD HH:MM``. Without one, a line is sent one
second after the previous line, so arrival order is line order. Times are Asia/Shanghai
local (UTC+8) for both calendars; the default start is Monday 2025-03-03 10:00.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from events import commands as c
from events.accounts import CommandRejected
from events.base import Event
from events.exchange import (
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    TradeExecuted,
    TradingDayClosed,
)
from services.exchange.calendar import ALWAYS, SessionCalendar
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine

__all__ = ["Acct", "Given", "Market", "Scenario", "at", "check", "hold", "run"]

SHANGHAI = timezone(timedelta(hours=8))
MONDAY = date(2025, 3, 3)


def at(day: date, hh_mm: str) -> int:
    """Microseconds since the epoch of local (UTC+8) `hh_mm[:ss]` on `day`."""
    parts = [int(p) for p in hh_mm.split(":")]
    hour, minute, second = [*parts, 0, 0][:3]
    moment = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=SHANGHAI)
    return int(moment.timestamp()) * 1_000_000


def fee(notional: int, bps: int) -> int:
    """The fee on one side of one fill (half-up to the fen), as RULES.md states it."""
    return (notional * bps + 5_000) // 10_000


def hold(price: int, qty: int, bps: int) -> int:
    """What a buy of `qty` at `price` holds: notional + fee + 1 fen per tonne reserve."""
    return price * qty + fee(price * qty, bps) + qty if qty else 0


@dataclass(frozen=True)
class Acct:
    cash: int = 0
    credits: int = 0


@dataclass(frozen=True)
class Given:
    accounts: dict[str, Acct] = field(default_factory=dict)
    #: (symbol, reference price, fee bps); the first is the default instrument.
    instruments: tuple[tuple[str, int, int], ...] = (("HCC-2025", 5_000, 0),)
    calendar: SessionCalendar = ALWAYS
    start: str = "10:00"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """One row of a scenario table; a `None` expectation is not checked."""

    name: str
    given: Given
    when: list[str]
    trades: list[tuple[str, str, int, int]] | None = None  # (buyer, seller, price, qty)
    bids: list[tuple[int, int, int]] | None = None  # (price, qty, orders), best first
    asks: list[tuple[int, int, int]] | None = None
    #: enterprise -> (cash, cash held, credits available, credits held) of the default
    #: instrument.
    balances: dict[str, tuple[int, int, int, int]] | None = None
    #: ("A#2", reason) for orders; ("A WithdrawCash", reason) for other commands.
    rejects: list[tuple[str, str]] | None = None
    cancels: list[tuple[str, str, int]] | None = None  # (order, reason, remaining)
    expired: list[tuple[str, int]] | None = None  # (order, remaining)
    closes: list[tuple[str, int, int]] | None = None  # (day, close, volume), default symbol
    fees: int | None = None

    def __str__(self) -> str:
        return self.name


_TIME = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$")
_DAYS = re.compile(r"^\+(\d+)d$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_REF = re.compile(r"^([A-Za-z0-9_]+)#(\d+)$")


class Market:
    """An engine plus the bookkeeping that lets scenario lines name orders and times."""

    def __init__(self, given: Given) -> None:
        self.given = given
        self.engine = Engine(EngineConfig(calendar=given.calendar, **given.config))
        self.symbols = [s for s, _, _ in given.instruments]
        self.symbol = self.symbols[0]
        self.day = MONDAY
        self.time = at(self.day, given.start)
        self.position = 0
        self.refs: dict[str, int] = {}  # "A#2" -> order id
        self.labels: dict[int, str] = {}  # order id -> "A#2"
        self.order_lines: dict[str, int] = {}
        self.results: list[Event] = []  # everything after the setup
        self.last: list[Event] = []
        for symbol, reference, bps in given.instruments:
            self._setup(
                c.ListInstrument(
                    symbol=symbol, vintage=2025, reference_price=reference, fee_bps=bps
                )
            )
        for name, acct in given.accounts.items():
            self._setup(c.OpenAccount(enterprise_id=name))
            if acct.cash:
                self._setup(c.DepositCash(enterprise_id=name, amount=acct.cash))
            if acct.credits:
                self._setup(
                    c.IssueCredits(
                        enterprise_id=name,
                        instrument=self.symbol,
                        quantity=acct.credits,
                        reason="given",
                    )
                )
        self.time -= 1_000_000  # the first `when` line is sent at the start time exactly

    def _setup(self, command: Event) -> None:
        self.position += 1
        for event in self.engine.apply(self.position, self.time, command):
            assert not isinstance(event, CommandRejected | OrderRejected), event

    # ------------------------------------------------------------------ lines

    def send(self, command: Event) -> list[Event]:
        self.position += 1
        self.last = self.engine.apply(self.position, self.time, command)
        self.results.extend(self.last)
        return self.last

    def _parse_time(self, words: list[str]) -> int | None:
        """Consume a leading time spec; the new time, or None."""
        day = self.day
        if words and _DATE.match(words[0]):
            day = date.fromisoformat(words.pop(0))
        elif words and _DAYS.match(words[0]):
            day = self.day + timedelta(days=int(_DAYS.match(words.pop(0)).group(1)))  # type: ignore[union-attr]
        elif not (words and _TIME.match(words[0])):
            return None
        hh_mm = words.pop(0) if words and _TIME.match(words[0]) else "00:00"
        when = at(day, hh_mm)
        assert when >= self.time, f"time runs backwards: {hh_mm}"
        self.day = day
        return when

    def _symbol(self, words: list[str]) -> str:
        for word in words:
            if word in self.symbols:
                words.remove(word)
                return word
        return self.symbol

    def order_id(self, ref: str) -> int:
        return self.refs[ref]

    def line(self, text: str) -> list[Event]:
        words = text.split()
        when = self._parse_time(words)
        self.time = when if when is not None else self.time + 1_000_000
        head = words[0]
        if head == "tick":
            words.pop(0)
            when = self._parse_time(words)
            if when is not None:
                self.time = when
            return self.send(c.Tick())
        if head == "block":
            seller, buyer = words[1].split("->")
            rest = words[2:]
            symbol = self._symbol(rest)
            qty, price = int(rest[0]), int(rest[2])
            return self.send(
                c.BlockTrade(
                    instrument=symbol, seller_id=seller, buyer_id=buyer, quantity=qty, price=price
                )
            )
        if head in ("freeze", "unfreeze"):
            return self.send(c.FreezeAccount(enterprise_id=words[1], frozen=head == "freeze"))
        if head in ("suspend", "activate"):
            status = "suspended" if head == "suspend" else "active"
            return self.send(c.SetEnterpriseStatus(enterprise_id=words[1], status=status))
        if head == "limit":
            return self.send(c.SetPositionLimit(enterprise_id=words[1], limit=int(words[2])))
        if head == "queuing":
            return self.send(c.SetOrderQueuing(enabled=words[1] == "on"))
        if head in ("cancel", "reduce", "reprice"):
            ref = _REF.match(words[1])
            assert ref, text
            words.insert(0, ref.group(1))
        who, verb, rest = words[0], words[1], words[2:]
        if verb in ("cancel", "reduce", "reprice"):
            oid = self.refs[rest[0]]
            if verb == "cancel":
                return self.send(c.CancelOrder(order_id=oid, enterprise_id=who))
            if verb == "reduce":
                assert rest[1] == "to", text
                return self.send(
                    c.ReduceOrder(order_id=oid, enterprise_id=who, quantity=int(rest[2]))
                )
            assert rest[1] == "@", text
            return self.send(c.RepriceOrder(order_id=oid, enterprise_id=who, price=int(rest[2])))
        if verb in ("buy", "sell"):
            return self._order(who, verb, rest)
        symbol = self._symbol(rest)
        amount = int(rest[0])
        if verb == "deposit":
            return self.send(c.DepositCash(enterprise_id=who, amount=amount))
        if verb == "withdraw":
            return self.send(c.WithdrawCash(enterprise_id=who, amount=amount))
        if verb == "issue":
            return self.send(
                c.IssueCredits(enterprise_id=who, instrument=symbol, quantity=amount, reason="")
            )
        if verb == "transfer":
            assert rest[1] == "to", text
            return self.send(
                c.TransferCredits(
                    from_enterprise_id=who,
                    to_enterprise_id=rest[2],
                    instrument=symbol,
                    quantity=amount,
                    reason="",
                )
            )
        if verb == "surrender":
            return self.send(
                c.SurrenderCredits(
                    enterprise_id=who, instrument=symbol, quantity=amount, period="2025"
                )
            )
        if verb == "retire":
            return self.send(
                c.RetireCredits(
                    enterprise_id=who,
                    instrument=symbol,
                    quantity=amount,
                    beneficiary="x",
                    reason="",
                )
            )
        raise AssertionError(f"cannot read line {text!r}")

    def _order(self, who: str, side: str, rest: list[str]) -> list[Event]:
        symbol = self._symbol(rest)
        order_type = rest[0]
        qty = int(rest[1])
        rest = rest[2:]
        price = 0
        if rest and rest[0] == "@":
            price = int(rest[1])
            rest = rest[2:]
        post_only = "post-only" in rest
        rest = [w for w in rest if w != "post-only"]
        tif = rest.pop(0) if rest else "day"
        expire_at = 0
        if tif == "gtd":
            saved_day, saved_time = self.day, self.time
            self.time = 0  # the expiry may be before or after the line's own time
            expire_at = self._parse_time(rest) or 0
            self.day, self.time = saved_day, saved_time
        assert not rest, f"unread words {rest}"
        n = self.order_lines.get(who, 0) + 1
        self.order_lines[who] = n
        label = f"{who}#{n}"
        self.refs[label] = self.position + 1
        self.labels[self.position + 1] = label
        return self.send(
            c.PlaceOrder(
                client_order_id=label,
                enterprise_id=who,
                instrument=symbol,
                side=side,
                order_type=order_type,
                quantity=qty,
                price=price,
                time_in_force=tif,
                post_only=post_only,
                expire_at=expire_at,
            )
        )

    # ------------------------------------------------------------------ reading back

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.results if isinstance(e, kind)]

    def trades(self) -> list[tuple[str, str, int, int]]:
        return [(t.buyer_id, t.seller_id, t.price, t.quantity) for t in self.of(TradeExecuted)]

    def depth(self, is_buy: bool, symbol: str | None = None) -> list[tuple[int, int, int]]:
        book = self.engine.instruments[symbol or self.symbol].book
        return book.depth(is_buy, 100)

    def balance(self, who: str, symbol: str | None = None) -> tuple[int, int, int, int]:
        a = self.engine.accounts[who]
        symbol = symbol or self.symbol
        return (a.cash, a.cash_held, a.available(symbol), a.credits_held.get(symbol, 0))

    def rejects(self) -> list[tuple[str, str]]:
        out = []
        for e in self.results:
            if isinstance(e, OrderRejected):
                out.append((self.labels.get(e.order_id, str(e.order_id)), e.reason))
            elif isinstance(e, CommandRejected):
                out.append((f"{e.enterprise_id} {e.command}".strip(), e.reason))
        return out

    def cancels(self) -> list[tuple[str, str, int]]:
        return [
            (self.labels[e.order_id], e.reason, e.remaining_quantity)
            for e in self.of(OrderCancelled)
        ]

    def expired(self) -> list[tuple[str, int]]:
        return [(self.labels[e.order_id], e.remaining_quantity) for e in self.of(OrderExpired)]

    def closes(self, symbol: str | None = None) -> list[tuple[str, int, int]]:
        symbol = symbol or self.symbol
        return [
            (e.day, e.close, e.volume) for e in self.of(TradingDayClosed) if e.instrument == symbol
        ]

    def accepted(self, ref: str) -> OrderAccepted:
        oid = self.refs[ref]
        return next(e for e in self.of(OrderAccepted) if e.order_id == oid)


def run(given: Given, when: list[str]) -> Market:
    market = Market(given)
    for text in when:
        market.line(text)
    return market


def check(s: Scenario) -> Market:
    """Run a scenario and compare every expectation it states."""
    m = run(s.given, s.when)
    if s.trades is not None:
        assert m.trades() == s.trades
    if s.bids is not None:
        assert m.depth(True) == s.bids
    if s.asks is not None:
        assert m.depth(False) == s.asks
    if s.balances is not None:
        got = {who: m.balance(who) for who in s.balances}
        assert got == s.balances
    if s.rejects is not None:
        assert m.rejects() == s.rejects
    if s.cancels is not None:
        assert m.cancels() == s.cancels
    if s.expired is not None:
        assert m.expired() == s.expired
    if s.closes is not None:
        assert m.closes() == s.closes
    if s.fees is not None:
        assert m.engine.fees_collected == s.fees
    return m
