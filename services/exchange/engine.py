"""The exchange engine: risk holds, matching and delivery-versus-payment settlement.

Pure domain code. It consumes commands in log order and answers each with result
events; it reads no clock (time arrives with each command), draws no random numbers,
uses no floats and never iterates anything in hash order, so the same commands always
give the same results, byte for byte, and the same :meth:`Engine.state_hash`.

Money is integer fen, quantities integer tonnes. Fees are ``notional × bps / 10,000``
per fill and side, rounded half-up to the fen. A buy order holds
``price × remaining + fee(price × remaining) + remaining`` fen: the last term is a
rounding reserve of 1 fen per tonne, because each fill's fee is rounded on its own and
k partial fills can cost up to k fen more than the fee on the whole; with the reserve a
hold always covers its fills, and what a fill does not need is released at once.

The registry's commands (:mod:`events.registry`) are decided in the same step by
:class:`services.registry.registry.Registry`, which reaches accounts, serial blocks, cash
and prices only through :class:`_EnginePort`. So a period close issues its credits and
creates its obligations atomically, and a deadline charges its penalties from available
cash (never from held cash, never below zero: what cash does not cover is recorded as a
debt, and withdrawals wait until it is paid). Penalties leave the enterprises' cash like
fees: deposited - withdrawn = all cash + fees collected + penalties collected.
"""

from __future__ import annotations

import hashlib
from calendar import monthrange
from collections.abc import Callable, Sequence
from datetime import date
from heapq import heappop, heappush
from typing import Any, Final

import orjson

from events import commands as c
from events.accounts import (
    AccountFreezeChanged,
    AccountOpened,
    CashDeposited,
    CashWithdrawn,
    CommandRejected,
    CreditsIssued,
    CreditsRetired,
    CreditsSurrendered,
    CreditsTransferred,
    EnterpriseStatusChanged,
    PositionLimitSet,
)
from events.base import Event, checker, constructor, positional, type_errors
from events.exchange import (
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderQueued,
    OrderQueuingSet,
    OrderReduced,
    OrderRejected,
    OrderRepriced,
    QueuedOrdersReleased,
    TradeExecuted,
    TradingDayClosed,
)
from events.market import InstrumentListed
from services.exchange import serials
from services.exchange.book import Book, Order
from services.exchange.calendar import DaySchedule, iso_day
from services.exchange.config import EngineConfig
from services.exchange.prices import price_band, vwap
from services.registry.registry import AveragePrice, Registry

__all__ = ["Account", "Engine", "Instrument", "canonical_state", "hash_state", "state_digest"]

# The hot path's events, built without ``type.__call__`` (see events.base.constructor).
# Final, here and below: compiled (mypyc), a Final global is a C static, not a dict lookup.
_order_rejected: Final = constructor(OrderRejected)
_order_expired: Final = constructor(OrderExpired)
_command_rejected: Final = constructor(CommandRejected)
# The three made for nearly every command take their fields positionally, in field order
# (events.base.positional: no keyword matching); each maker's type lists the fields'
# types in that order, and every call names its fields in comments.
_order_accepted: Final[
    Callable[[int, str, str, str, str, str, int, int, str, bool, int, int, int], OrderAccepted]
] = positional(OrderAccepted)
_trade_executed: Final[
    Callable[
        [int, str, int, int, int, int, str, str, str, int, int, int, tuple[tuple[int, int], ...]],
        TradeExecuted,
    ]
] = positional(TradeExecuted)
_order_cancelled: Final[Callable[[int, str, int, int, int, str], OrderCancelled]] = positional(
    OrderCancelled
)
# The hot commands' classes, compared by identity in Engine.apply.
_PLACE_ORDER: Final = c.PlaceOrder
_CANCEL_ORDER: Final = c.CancelOrder

ACTIVE: Final = "active"
SUSPENDED: Final = "suspended"
#: Days of daily volume/notional kept per instrument: more than the 6 months (≤ 184
#: days) the penalty price averages over, counted back from today or, while a period
#: awaits enforcement after its deadline, from that deadline (see average_price).
HISTORY_DAYS: Final = 190
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_SIDES: Final = frozenset(("buy", "sell"))
_ORDER_TYPES: Final = frozenset(("limit", "market"))
_TIME_IN_FORCE: Final = frozenset(("day", "gtc", "gtd", "ioc", "fok"))
#: What may wait for the next session: limit orders meant to rest (an IOC, FOK or market
#: order is about the book as it is now, which a closed market does not have).
_QUEUEABLE: Final = frozenset(("day", "gtc", "gtd"))


def _head(level: dict[int, Order]) -> Order:
    """The first order of a price level (never empty) in time priority.

    Compiled, a native loop over the dict; ``next(iter(level.values()))`` would look
    up ``next`` by name and call it through Python on every fill.
    """
    for order in level.values():
        return order
    raise AssertionError("empty price level")


class Account:
    """One enterprise's cash and credits as the engine sees them."""

    __slots__ = (
        "bought_today",
        "cash",
        "cash_held",
        "credit_qty",
        "credits",
        "credits_held",
        "enterprise_id",
        "frozen",
        "open_buy",
        "position_limit",
        "status",
    )

    def __init__(self, enterprise_id: str) -> None:
        self.enterprise_id = enterprise_id
        self.status = ACTIVE
        self.frozen = False
        self.cash = 0  # available fen
        self.cash_held = 0
        self.credits: dict[str, list[list[int]]] = {}  # available serial ranges
        self.credit_qty: dict[str, int] = {}  # tonnes in those ranges (derived, cached)
        self.credits_held: dict[str, int] = {}  # tonnes held by open sell orders
        self.bought_today: dict[str, int] = {}
        self.open_buy = 0  # tonnes on open buy orders (for the position limit)
        self.position_limit = 0  # 0: no limit

    def available(self, instrument: str) -> int:
        return self.credit_qty.get(instrument, 0)

    def holdings(self) -> int:
        return sum(self.credit_qty.values()) + sum(self.credits_held.values())

    def take_credits(self, instrument: str, quantity: int) -> list[tuple[int, int]]:
        """Remove the lowest `quantity` available serials (the caller checked there are)."""
        self.credit_qty[instrument] -= quantity
        return serials.take(self.credits[instrument], quantity)

    def give_credits(self, instrument: str, ranges: Sequence[Sequence[int]], quantity: int) -> None:
        """Add serial `ranges` (holding `quantity` tonnes) to the available credits."""
        serials.add(self.credits.setdefault(instrument, []), ranges)
        self.credit_qty[instrument] = self.credit_qty.get(instrument, 0) + quantity

    def take_ranges(self, instrument: str, quantity: int) -> serials.Ranges:
        """:meth:`take_credits` as ranges to keep (an order's hold): see serials.take_ranges."""
        self.credit_qty[instrument] -= quantity
        return serials.take_ranges(self.credits[instrument], quantity)

    def give_ranges(self, instrument: str, ranges: serials.Ranges, quantity: int) -> None:
        """:meth:`give_credits` of ranges this account may keep (an order's released hold,
        which no longer refers to them): see serials.add_ranges."""
        serials.add_ranges(self.credits.setdefault(instrument, []), ranges)
        self.credit_qty[instrument] = self.credit_qty.get(instrument, 0) + quantity


class Instrument:
    """A listed instrument: its terms, book, serial counter and the day's prices."""

    __slots__ = (
        "band_bps",
        "band_close",
        "band_lower",
        "band_upper",
        "book",
        "day_high",
        "day_low",
        "day_notional",
        "day_open",
        "day_trades",
        "day_volume",
        "fee_bps",
        "history",
        "next_serial",
        "previous_close",
        "symbol",
        "vintage",
    )

    def __init__(self, symbol: str, vintage: int, reference_price: int, fee_bps: int) -> None:
        self.symbol = symbol
        self.vintage = vintage
        self.fee_bps = fee_bps
        self.previous_close = reference_price
        self.next_serial = 1
        self.book = Book()
        # The band last asked for: (band_close, band_bps) -> (band_lower, band_upper). Every
        # order asks for the continuous band of the same close, so one entry in native
        # fields serves nearly all; no close is negative, so the first ask computes.
        self.band_close = -1
        self.band_bps = 0
        self.band_lower = 0
        self.band_upper = 0
        # [day, volume, notional] of each closed trading day with continuous trades, for
        # the penalty's 6-month average price; days older than HISTORY_DAYS are dropped
        # (before today or before a deadline still to enforce: Engine._history_floor).
        self.history: list[list[int]] = []
        self.reset_day()

    def reset_day(self) -> None:
        self.day_open = 0
        self.day_high = 0
        self.day_low = 0
        self.day_volume = 0
        self.day_notional = 0
        self.day_trades = 0


def canonical_state(state: dict[str, Any]) -> bytes:
    """The canonical bytes of an engine state (:meth:`Engine.state`)."""
    return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)


def hash_state(state: dict[str, Any]) -> str:
    """The state hash of an engine state (:meth:`Engine.state_hash`), for a caller that
    has the state already: building it again for the hash doubles a snapshot's cost."""
    return state_digest(canonical_state(state))


def state_digest(canonical: bytes) -> str:
    """The state hash of an engine state's canonical bytes (:func:`canonical_state`),
    for a caller that has those already (a snapshot encoded in another process)."""
    return hashlib.sha256(canonical).hexdigest()


class Engine:
    """The single writer of one partition's market state."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config = config or EngineConfig()
        self.calendar = config.calendar
        # The settings the hot path reads, copied out of the (frozen) config once.
        self._band_bps = config.band_bps
        self._fee_override = config.fee_bps
        self._cancel_incoming = config.self_trade == "cancel_incoming"
        self._resale_next_day = config.resale_next_day
        self.accounts: dict[str, Account] = {}
        self.instruments: dict[str, Instrument] = {}
        self.orders: dict[int, Order] = {}  # open orders by id (id order = arrival order)
        self.expiries: list[tuple[int, int]] = []  # heap of (expire_at, order id) for gtd
        # RULES.md's optional queuing: with `queuing` on (an operator's command), limit
        # orders that arrive outside the sessions wait here, by order id (= arrival
        # order), and are placed when a session is next found open.
        self.queuing = False
        self.queued: dict[int, c.PlaceOrder] = {}
        self.fees_collected = 0
        # Penalties taken from cash by the registry (they leave the enterprises' cash like
        # fees do: deposits - withdrawals = balances + fees + penalties).
        self.penalties_collected = 0
        self.registry = Registry()
        self._port = _EnginePort(self)
        self.next_trade_id = 1
        self.time = 0
        self.day = -1
        self.day_closed = False
        self._today: DaySchedule | None = None
        # The earliest time at which _advance has anything to do (a close, a new day,
        # a gtd expiry); before it, apply skips _advance altogether.
        self._wake_at = 0
        self._handlers: dict[type[Event], Callable[[Any, int], list[Event]]] = {
            c.PlaceOrder: self._place,
            c.CancelOrder: self._cancel,
            c.ReduceOrder: self._reduce,
            c.RepriceOrder: self._reprice,
            c.Tick: self._tick,
            c.DepositCash: self._deposit,
            c.WithdrawCash: self._withdraw,
            c.IssueCredits: self._issue,
            c.TransferCredits: self._transfer,
            c.SurrenderCredits: self._surrender,
            c.RetireCredits: self._retire,
            c.BlockTrade: self._block_trade,
            c.OpenAccount: self._open_account,
            c.SetEnterpriseStatus: self._set_status,
            c.FreezeAccount: self._freeze,
            c.ListInstrument: self._list_instrument,
            c.SetPositionLimit: self._set_position_limit,
            c.SetOrderQueuing: self._set_queuing,
        }
        for command in self.registry.commands:
            self._handlers[command] = self._registry_command
        # Per command class: its handler and its compiled type check.
        self._dispatch = {kind: (h, checker(kind)) for kind, h in self._handlers.items()}

    # ------------------------------------------------------------------ entry point

    def apply(self, position: int, time: int, command: Event) -> list[Event]:
        """Decide `command` (at intake `position`, sent at `time`): its result events.

        Time never runs backwards inside the engine: a command stamped earlier than one
        already applied is treated as happening at the later time.
        """
        if time > self.time:
            self.time = time
        # What the passage of time and a session's opening decide comes first. Most
        # commands have none: the list is made only when there is.
        results: list[Event] | None = None
        if self.time >= self._wake_at:
            results = []
            self._advance(results)
        if self.queued and self._continuous_open():
            if results is None:
                results = []
            self._release_queued(results)
        # The two hot commands check their own fields (reading each once) and are called
        # directly: compiled (mypyc), native calls instead of the generic checker and a
        # Python call through a bound method. None: a field of the wrong type.
        kind = type(command)
        out: list[Event] | None
        if kind is _PLACE_ORDER:
            out = self._place_checked(command, position)
        elif kind is _CANCEL_ORDER:
            out = self._cancel_checked(command, position)
        else:
            entry = self._dispatch.get(kind)
            if entry is None:
                out = [
                    CommandRejected(
                        command=command.type_name, enterprise_id="", reason="unknown_command"
                    )
                ]
            else:
                handler, well_typed = entry
                out = handler(command, position) if well_typed(command) else None
        if out is None:
            malformed = type_errors(command)
            # Intake validates types too; this guards the log itself, so that a command
            # written by anything else can never stop the engine (it would fail again on
            # every restart).
            out = [
                CommandRejected(
                    command=command.type_name,
                    enterprise_id=str(getattr(command, "enterprise_id", "")),
                    reason="malformed",
                    detail="; ".join(f"{name} {problem}" for name, problem in malformed),
                )
            ]
        if results:
            results += out
            return results
        return out  # a fresh list: every handler builds its own

    # ------------------------------------------------------------------ time

    def _advance(self, results: list[Event]) -> None:
        now = self.time
        today = self._today
        if today is None or now >= today.ends_at:
            if today is not None and not self.day_closed and today.trading:
                self._close_day(results)
            day = self.calendar.day(now)
            if today is not None:
                # Trading days that no command fell in still close, carrying the close:
                # the daily series (candles, bands, reports) has no holes.
                for skipped in range(self.day + 1, day):
                    if self._enter_day(skipped).trading:
                        self._close_day(results)
            today = self._enter_day(day)
            self.day_closed = False
            for account in self.accounts.values():
                account.bought_today.clear()
        if not self.day_closed and now >= today.closes_at:
            if today.trading:
                self._close_day(results)
            self.day_closed = True
        expiries = self.expiries
        while expiries and expiries[0][0] <= now:
            _, order_id = heappop(expiries)
            order = self.orders.get(order_id)
            if order is not None:
                results.append(self._expire(order))
        wake = today.ends_at if self.day_closed else min(today.closes_at, today.ends_at)
        if expiries and expiries[0][0] < wake:
            wake = expiries[0][0]
        self._wake_at = wake

    def _enter_day(self, day: int) -> DaySchedule:
        """Make local `day` current; weekends and holidays get no daily close."""
        self.day = day
        self._today = self.calendar.schedule(day)
        return self._today

    def _continuous_open(self) -> bool:
        return (
            not self.day_closed
            and self._today is not None
            and (self._today.continuous_open(self.time))
        )

    def _close_day(self, results: list[Event]) -> None:
        for order in [o for o in self.orders.values() if o.time_in_force == "day"]:
            results.append(self._expire(order))
        history_floor = self._history_floor()
        for symbol in sorted(self.instruments):
            inst = self.instruments[symbol]
            if inst.day_volume:
                close = vwap(inst.day_notional, inst.day_volume)
                history = inst.history
                history.append([self.day, inst.day_volume, inst.day_notional])
                while history[0][0] <= history_floor:
                    del history[0]
            else:
                close = inst.previous_close
            results.append(
                TradingDayClosed(
                    instrument=symbol,
                    day=iso_day(self.day),
                    open=inst.day_open or close,
                    high=inst.day_high or close,
                    low=inst.day_low or close,
                    close=close,
                    volume=inst.day_volume,
                    notional=inst.day_notional,
                    trades=inst.day_trades,
                )
            )
            inst.previous_close = close
            inst.reset_day()
        # Resting orders the new band no longer admits could otherwise trade outside it
        # tomorrow: cancel them now, in arrival order, with their holds released.
        for order in list(self.orders.values()):
            lower, upper = self._band(self.instruments[order.instrument], self.config.band_bps)
            if not lower <= order.price <= upper:
                self._take_off_book(order)
                results.append(self._cancel_remainder(order, "outside_price_band"))

    def _tick(self, command: c.Tick, position: int) -> list[Event]:
        return []  # _advance already did what the passage of time implies

    # ------------------------------------------------------------------ money helpers

    def _fee_bps(self, inst: Instrument) -> int:
        override = self.config.fee_bps
        return inst.fee_bps if override is None else override

    @staticmethod
    def _fee(notional: int, bps: int) -> int:
        return (notional * bps + 5_000) // 10_000

    def _buy_hold(self, price: int, quantity: int, bps: int) -> int:
        notional = price * quantity
        return notional + self._fee(notional, bps) + quantity if quantity else 0

    @staticmethod
    def _band(inst: Instrument, bps: int) -> tuple[int, int]:
        """(lowest, highest) admissible price: ±bps of the previous close, inward-rounded."""
        close = inst.previous_close
        if close != inst.band_close or bps != inst.band_bps:
            inst.band_lower, inst.band_upper = price_band(close, bps)
            inst.band_close = close
            inst.band_bps = bps
        return inst.band_lower, inst.band_upper

    # ------------------------------------------------------------------ orders

    def _place_checked(self, cmd: Any, position: int) -> list[Event] | None:
        """A PlaceOrder from the log: each field read once and checked for its exact type
        (the rule of :func:`events.base.type_errors`); None when one is not."""
        client_order_id = cmd.client_order_id
        enterprise_id = cmd.enterprise_id
        instrument = cmd.instrument
        side = cmd.side
        order_type = cmd.order_type
        quantity = cmd.quantity
        price = cmd.price
        time_in_force = cmd.time_in_force
        post_only = cmd.post_only
        expire_at = cmd.expire_at
        if not (
            type(client_order_id) is str
            and type(enterprise_id) is str
            and type(instrument) is str
            and type(side) is str
            and type(order_type) is str
            and type(quantity) is int
            and type(price) is int
            and type(time_in_force) is str
            and type(post_only) is bool
            and type(expire_at) is int
        ):
            return None
        return self._place_order(
            cmd,
            position,
            client_order_id,
            enterprise_id,
            instrument,
            side,
            order_type,
            quantity,
            price,
            time_in_force,
            post_only,
            expire_at,
        )

    def _place(self, cmd: c.PlaceOrder, position: int) -> list[Event]:
        """A well-typed PlaceOrder (a queued one: it was checked when it arrived)."""
        return self._place_order(
            cmd,
            position,
            cmd.client_order_id,
            cmd.enterprise_id,
            cmd.instrument,
            cmd.side,
            cmd.order_type,
            cmd.quantity,
            cmd.price,
            cmd.time_in_force,
            cmd.post_only,
            cmd.expire_at,
        )

    def _place_order(
        self,
        cmd: c.PlaceOrder,
        position: int,
        client_order_id: str,
        enterprise_id: str,
        instrument: str,
        side: str,
        order_type: str,
        quantity: int,
        price: int,
        time_in_force: str,
        post_only: bool,
        expire_at: int,
    ) -> list[Event]:
        """Place `cmd`, whose fields the caller read (each once: an attribute of an event
        is a generic attribute lookup even in the compiled engine)."""
        # The hot path: every check below is the one _order_refusal describes, in the
        # same order (the first that fails names the reason), with each lookup done once.
        inst = self.instruments.get(instrument)
        if inst is None:
            return [self._rejected(cmd, position, "unknown_instrument")]
        account = self.accounts.get(enterprise_id)
        if account is None:
            return [self._rejected(cmd, position, "unknown_enterprise")]
        if account.status != ACTIVE:
            return [self._rejected(cmd, position, "enterprise_suspended")]
        if account.frozen:
            return [self._rejected(cmd, position, "account_frozen")]
        today = self._today  # _continuous_open, inlined
        if self.day_closed or today is None:
            return [self._closed(cmd, position)]
        now = self.time
        for start, end in today.continuous:
            if start <= now < end:
                break
        else:
            return [self._closed(cmd, position)]
        if (
            quantity <= 0
            or side not in _SIDES
            or order_type not in _ORDER_TYPES
            or time_in_force not in _TIME_IN_FORCE
            or (order_type == "limit" and price <= 0)
        ):
            # Intake refuses these with field errors; a command that reached the log
            # another way must still never be read as something it did not say.
            return [self._rejected(cmd, position, "invalid_order")]
        if time_in_force == "gtd" and expire_at <= now:
            return [self._rejected(cmd, position, "invalid_expiry")]

        is_buy = side == "buy"
        lower, upper = self._band(inst, self._band_bps)
        market = order_type == "market"
        limit = (upper if is_buy else lower) if market else price
        book = inst.book

        if not market and not lower <= limit <= upper:
            return [self._rejected(cmd, position, "outside_price_band")]
        if post_only:
            best = book.best_ask() if is_buy else book.best_bid()
            if best is not None and (limit >= best if is_buy else limit <= best):
                return [self._rejected(cmd, position, "post_only_would_trade")]
        if market or time_in_force == "fok":
            fillable = self._fillable(book, is_buy, limit, enterprise_id, quantity)
            if market and fillable == 0:
                # Nothing to fill although the book has an order in reach: the first one
                # is the enterprise's own, as a limit IOC's cancellation would say too.
                best = book.best_ask() if is_buy else book.best_bid()
                reachable = best is not None and (best <= limit if is_buy else best >= limit)
                reason = "self_trade" if reachable else "no_liquidity"
                return [self._rejected(cmd, position, reason)]
            if time_in_force == "fok" and fillable < quantity:
                return [self._rejected(cmd, position, "fok_not_fillable")]

        symbol = inst.symbol
        order = Order(
            position,
            client_order_id,
            enterprise_id,
            symbol,
            is_buy,
            order_type,
            limit,
            quantity,
            time_in_force,
            expire_at,
        )
        order.post_only = post_only
        if is_buy:
            limit_qty = account.position_limit
            if limit_qty and account.holdings() + account.open_buy + quantity > limit_qty:
                return [self._rejected(cmd, position, "position_limit")]
            override = self._fee_override
            notional = limit * quantity
            hold = (
                notional
                + (notional * (inst.fee_bps if override is None else override) + 5_000) // 10_000
                + quantity
            )  # _buy_hold, inlined
            if hold > account.cash:
                return [self._rejected(cmd, position, "insufficient_cash")]
            account.cash -= hold
            account.cash_held += hold
            account.open_buy += quantity
            order.held_cash = hold
        else:
            available = account.credit_qty.get(symbol, 0)
            sellable = available - account.bought_today.get(symbol, 0)
            if sellable < quantity:
                reason = "insufficient_credits" if available < quantity else "resale_same_day"
                return [self._rejected(cmd, position, reason)]
            order.credits = account.take_ranges(symbol, quantity)
            held = account.credits_held
            held[symbol] = held.get(symbol, 0) + quantity

        results: list[Event] = [
            _order_accepted(
                position,  # order_id
                client_order_id,
                enterprise_id,
                symbol,  # instrument
                side,
                order_type,
                limit,  # price
                quantity,
                time_in_force,
                post_only,
                expire_at,
                order.held_cash,
                0 if is_buy else quantity,  # held_credits
            )
        ]
        self._rest_or_finish(inst, order, results, side, market)
        return results

    def _rest_or_finish(
        self,
        inst: Instrument,
        order: Order,
        results: list[Event],
        aggressor: str,
        market: bool,
        new: bool = True,
    ) -> None:
        """Match `order` as the incoming side, then rest or cancel what is left."""
        stp = self._match(inst, order, results, aggressor)
        if order.remaining == 0:
            return
        if stp:
            results.append(self._cancel_remainder(order, "self_trade"))
        elif market:
            results.append(self._cancel_remainder(order, "market_remainder"))
        elif order.time_in_force in ("ioc", "fok"):
            results.append(self._cancel_remainder(order, "ioc_remainder"))
        else:
            inst.book.add(order)
            self.orders[order.id] = order
            if order.time_in_force == "gtd" and new:  # a repriced order is already queued
                heappush(self.expiries, (order.expire_at, order.id))
                if order.expire_at < self._wake_at:
                    self._wake_at = order.expire_at

    def _closed(self, cmd: c.PlaceOrder, position: int) -> Event:
        """An order (of an active, unfrozen account, for a listed instrument) that
        arrived outside the sessions: queued for the next one when the operator has
        queuing on and it is a well-formed limit order meant to rest; else refused."""
        if not (
            self.queuing
            and cmd.order_type == "limit"
            and cmd.time_in_force in _QUEUEABLE
            and cmd.side in _SIDES
            and cmd.quantity > 0
            and cmd.price > 0
            and (cmd.time_in_force != "gtd" or cmd.expire_at > self.time)
        ):
            return self._rejected(cmd, position, "market_closed")
        self.queued[position] = cmd
        return OrderQueued(
            order_id=position,
            client_order_id=cmd.client_order_id,
            enterprise_id=cmd.enterprise_id,
            instrument=cmd.instrument,
            side=cmd.side,
            price=cmd.price,
            quantity=cmd.quantity,
            time_in_force=cmd.time_in_force,
            post_only=cmd.post_only,
            expire_at=cmd.expire_at,
        )

    def _release_queued(self, results: list[Event]) -> None:
        """A session is open: place the queued orders, oldest first, each decided as if
        it arrived now (band, holds, matching), under the order id it was given."""
        queued = self.queued
        self.queued = {}
        released: list[Event] = []
        for position, cmd in queued.items():
            released += self._place(cmd, position)
        results += released
        results.append(QueuedOrdersReleased(orders=len(queued), results=len(released)))

    def _unqueue(self, order_id: int, enterprise_id: str, reason: str) -> OrderCancelled:
        cmd = self.queued.pop(order_id)
        return _order_cancelled(
            order_id,
            enterprise_id,
            cmd.quantity,  # remaining_quantity
            0,  # released_cash
            0,  # released_credits
            reason,
        )

    def _queued_refusal(
        self, order_id: int, enterprise_id: str, command: str
    ) -> CommandRejected | None:
        """A reduce or reprice of a queued order: refused (it can only be cancelled)."""
        queued = self.queued.get(order_id)
        if queued is None:
            return None
        owner = queued.enterprise_id == enterprise_id
        return _command_rejected(
            command=command,
            enterprise_id=enterprise_id,
            reason="order_queued" if owner else "not_owner",
            detail=f"order {order_id} is queued: cancel it and place it again"
            if owner
            else f"order {order_id} belongs to another enterprise",
        )

    def _set_queuing(self, cmd: c.SetOrderQueuing, position: int) -> list[Event]:
        self.queuing = cmd.enabled
        return [OrderQueuingSet(enabled=cmd.enabled)]

    def _rejected(self, cmd: c.PlaceOrder, position: int, reason: str) -> OrderRejected:
        return _order_rejected(
            order_id=position,
            client_order_id=cmd.client_order_id,
            enterprise_id=cmd.enterprise_id,
            instrument=cmd.instrument,
            side=cmd.side,
            quantity=cmd.quantity,
            price=cmd.price,
            reason=reason,
        )

    def _fillable(
        self, book: Book, is_buy: bool, limit: int, enterprise_id: str, wanted: int
    ) -> int:
        """How much an incoming order could fill now, self-trade prevention included."""
        skip_own = not self._cancel_incoming
        levels, prices = book.opposite(is_buy)
        ordered = prices if is_buy else reversed(prices)
        total = 0
        for price in ordered:
            if (price > limit) if is_buy else (price < limit):
                break
            for maker in levels[price].values():
                if maker.enterprise_id == enterprise_id:
                    if skip_own:
                        continue
                    return total
                total += maker.remaining
                if total >= wanted:
                    return total
        return total

    def _match(self, inst: Instrument, taker: Order, results: list[Event], aggressor: str) -> bool:
        """Trade `taker` against the book; True if self-trade prevention stopped it."""
        book = inst.book
        is_buy = taker.is_buy
        levels, prices = (book.asks, book.ask_prices) if is_buy else (book.bids, book.bid_prices)
        limit = taker.price
        while taker.remaining and prices:
            price = prices[0] if is_buy else prices[-1]
            if (price > limit) if is_buy else (price < limit):
                return False
            level = levels[price]
            maker = _head(level)
            if maker.enterprise_id == taker.enterprise_id:
                if self._cancel_incoming:
                    return True
                self._take_off_book(maker)
                results.append(self._cancel_remainder(maker, "self_trade"))
                continue
            quantity = min(taker.remaining, maker.remaining)
            if is_buy:
                results.append(self._settle(inst, taker, maker, price, quantity, aggressor))
            else:
                results.append(self._settle(inst, maker, taker, price, quantity, aggressor))
            if maker.remaining == 0:
                # Book.remove, inlined: the maker is the head of the best level.
                del level[maker.id]
                if not level:
                    del levels[price]
                    if is_buy:
                        del prices[0]
                    else:
                        del prices[-1]
                del self.orders[maker.id]
        return False

    def _settle(
        self, inst: Instrument, buy: Order, sell: Order, price: int, quantity: int, aggressor: str
    ) -> TradeExecuted:
        """Delivery versus payment of one fill: both legs, fees, hold release.

        The hot path of matching: fee and hold formulas (:meth:`_fee`, :meth:`_buy_hold`)
        and :meth:`Account.give_credits` are inlined.
        """
        override = self._fee_override
        bps = inst.fee_bps if override is None else override
        notional = price * quantity
        fee = (notional * bps + 5_000) // 10_000
        accounts = self.accounts
        buyer = accounts[buy.enterprise_id]
        seller = accounts[sell.enterprise_id]
        symbol = inst.symbol

        old_hold = buy.held_cash
        remaining = buy.remaining = buy.remaining - quantity
        if remaining:
            rest = buy.price * remaining
            new_hold = rest + (rest * bps + 5_000) // 10_000 + remaining
        else:
            new_hold = 0
        released = old_hold - new_hold - notional - fee
        buy.held_cash = new_hold
        buyer.cash_held -= old_hold - new_hold
        buyer.cash += released
        buyer.open_buy -= quantity

        sell.remaining -= quantity
        # The sell order's ranges move to the buyer as they are (serials.take_ranges); the
        # event gets its copy first, as adding may merge them into the buyer's.
        moved = serials.take_ranges(sell.credits, quantity)
        traded = serials.as_tuples(moved)
        seller.credits_held[symbol] -= quantity
        ranges = buyer.credits.get(symbol)
        if ranges is None:
            ranges = buyer.credits[symbol] = []
        serials.add_ranges(ranges, moved)
        qty = buyer.credit_qty
        qty[symbol] = qty.get(symbol, 0) + quantity
        if self._resale_next_day:
            bought = buyer.bought_today
            bought[symbol] = bought.get(symbol, 0) + quantity
        seller.cash += notional - fee
        self.fees_collected += 2 * fee

        if inst.day_trades == 0:
            inst.day_open = inst.day_high = inst.day_low = price
        elif price > inst.day_high:
            inst.day_high = price
        elif price < inst.day_low:
            inst.day_low = price
        inst.day_volume += quantity
        inst.day_notional += notional
        inst.day_trades += 1

        trade_id = self.next_trade_id
        self.next_trade_id = trade_id + 1
        return _trade_executed(
            trade_id,
            symbol,  # instrument
            price,
            quantity,
            buy.id,  # buy_order_id
            sell.id,  # sell_order_id
            buy.enterprise_id,  # buyer_id
            sell.enterprise_id,  # seller_id
            aggressor,
            fee,  # buyer_fee
            fee,  # seller_fee
            released,  # buyer_released
            traded,  # serials
        )

    def _release(self, order: Order) -> tuple[int, int]:
        """Give an order's whole remaining hold back; (cash, credits) released."""
        account = self.accounts[order.enterprise_id]
        cash = order.held_cash
        credits = 0
        if order.is_buy:
            account.cash_held -= cash
            account.cash += cash
            account.open_buy -= order.remaining
            order.held_cash = 0
        else:
            credits = order.remaining
            account.give_ranges(order.instrument, order.credits, credits)
            account.credits_held[order.instrument] -= credits
            order.credits = []
        return cash, credits

    def _cancel_remainder(self, order: Order, reason: str) -> OrderCancelled:
        cash, credits = self._release(order)
        return _order_cancelled(
            order.id,  # order_id
            order.enterprise_id,
            order.remaining,  # remaining_quantity
            cash,  # released_cash
            credits,  # released_credits
            reason,
        )

    def _take_off_book(self, order: Order) -> None:
        self.instruments[order.instrument].book.remove(order)
        del self.orders[order.id]

    def _expire(self, order: Order) -> OrderExpired:
        self._take_off_book(order)
        cash, credits = self._release(order)
        return _order_expired(
            order_id=order.id,
            enterprise_id=order.enterprise_id,
            remaining_quantity=order.remaining,
            released_cash=cash,
            released_credits=credits,
        )

    def _own_open_order(
        self, order_id: int, enterprise_id: str, command: str
    ) -> Order | CommandRejected:
        order = self.orders.get(order_id)
        if order is None:
            return _command_rejected(
                command=command,
                enterprise_id=enterprise_id,
                reason="unknown_order",
                detail=f"no open order {order_id}",
            )
        if order.enterprise_id != enterprise_id:
            return _command_rejected(
                command=command,
                enterprise_id=enterprise_id,
                reason="not_owner",
                detail=f"order {order_id} belongs to another enterprise",
            )
        return order

    def _cancel_checked(self, cmd: Any, position: int) -> list[Event] | None:
        """A CancelOrder from the log, its fields read once and type-checked as in
        :meth:`_place_checked`; None when one is not of its type."""
        order_id = cmd.order_id
        enterprise_id = cmd.enterprise_id
        if type(order_id) is not int or type(enterprise_id) is not str:
            return None
        return self._cancel_order(order_id, enterprise_id)

    def _cancel(self, cmd: c.CancelOrder, position: int) -> list[Event]:
        return self._cancel_order(cmd.order_id, cmd.enterprise_id)

    def _cancel_order(self, order_id: int, enterprise_id: str) -> list[Event]:
        if self.queued and order_id in self.queued:
            refused = self._queued_refusal(order_id, enterprise_id, "CancelOrder")
            if refused is not None and refused.reason == "not_owner":
                return [refused]
            return [self._unqueue(order_id, enterprise_id, "requested")]
        order = self._own_open_order(order_id, enterprise_id, "CancelOrder")
        if isinstance(order, CommandRejected):
            return [order]
        self._take_off_book(order)
        return [self._cancel_remainder(order, "requested")]

    def _reduce(self, cmd: c.ReduceOrder, position: int) -> list[Event]:
        queued = self._queued_refusal(cmd.order_id, cmd.enterprise_id, "ReduceOrder")
        if queued is not None:
            return [queued]
        order = self._own_open_order(cmd.order_id, cmd.enterprise_id, "ReduceOrder")
        if isinstance(order, CommandRejected):
            return [order]
        if not 0 < cmd.quantity < order.remaining:
            return [
                CommandRejected(
                    command="ReduceOrder",
                    enterprise_id=cmd.enterprise_id,
                    reason="invalid_quantity",
                    detail=f"must be between 1 and {order.remaining - 1}",
                )
            ]
        account = self.accounts[order.enterprise_id]
        cut = order.remaining - cmd.quantity
        cash = credits = 0
        if order.is_buy:
            bps = self._fee_bps(self.instruments[order.instrument])
            new_hold = self._buy_hold(order.price, cmd.quantity, bps)
            cash = order.held_cash - new_hold
            order.held_cash = new_hold
            account.cash_held -= cash
            account.cash += cash
            account.open_buy -= cut
        else:
            back = serials.take(order.credits, cut)
            account.give_credits(order.instrument, back, cut)
            account.credits_held[order.instrument] -= cut
            credits = cut
        order.remaining = cmd.quantity
        order.quantity -= cut
        return [
            OrderReduced(
                order_id=order.id,
                enterprise_id=order.enterprise_id,
                remaining_quantity=order.remaining,
                released_cash=cash,
                released_credits=credits,
            )
        ]

    def _reprice(self, cmd: c.RepriceOrder, position: int) -> list[Event]:
        queued = self._queued_refusal(cmd.order_id, cmd.enterprise_id, "RepriceOrder")
        if queued is not None:
            return [queued]
        order = self._own_open_order(cmd.order_id, cmd.enterprise_id, "RepriceOrder")
        if isinstance(order, CommandRejected):
            return [order]
        inst = self.instruments[order.instrument]
        lower, upper = self._band(inst, self.config.band_bps)

        def refuse(reason: str, detail: str = "") -> list[Event]:
            return [
                CommandRejected(
                    command="RepriceOrder",
                    enterprise_id=cmd.enterprise_id,
                    reason=reason,
                    detail=detail,
                )
            ]

        account = self.accounts[order.enterprise_id]
        if account.status != ACTIVE:
            return refuse("enterprise_suspended")
        if account.frozen:
            return refuse("account_frozen")
        if not self._continuous_open():
            return refuse("market_closed")
        if not lower <= cmd.price <= upper:
            return refuse("outside_price_band", f"band is {lower}..{upper}")
        if order.post_only:
            best = inst.book.best_ask() if order.is_buy else inst.book.best_bid()
            if best is not None and (cmd.price >= best if order.is_buy else cmd.price <= best):
                return refuse("post_only_would_trade")
        delta = 0
        if order.is_buy:
            new_hold = self._buy_hold(cmd.price, order.remaining, self._fee_bps(inst))
            delta = new_hold - order.held_cash
            if delta > account.cash:
                return refuse("insufficient_cash")
            account.cash -= delta
            account.cash_held += delta
            order.held_cash = new_hold
        self._take_off_book(order)
        order.price = cmd.price
        results: list[Event] = [
            OrderRepriced(
                order_id=order.id,
                enterprise_id=order.enterprise_id,
                price=cmd.price,
                remaining_quantity=order.remaining,
                held_cash_delta=delta,
            )
        ]
        self._rest_or_finish(inst, order, results, order.side, market=False, new=False)
        return results

    # ------------------------------------------------------------------ block trades

    def _block_trade(self, cmd: c.BlockTrade, position: int) -> list[Event]:
        def refuse(reason: str, who: str = cmd.buyer_id) -> list[Event]:
            return [CommandRejected(command="BlockTrade", enterprise_id=who, reason=reason)]

        inst = self.instruments.get(cmd.instrument)
        if inst is None:
            return refuse("unknown_instrument")
        for who in (cmd.seller_id, cmd.buyer_id):
            account = self.accounts.get(who)
            if account is None:
                return refuse("unknown_enterprise", who)
            if account.status != ACTIVE:
                return refuse("enterprise_suspended", who)
            if account.frozen:
                return refuse("account_frozen", who)
        if cmd.seller_id == cmd.buyer_id:
            return refuse("self_trade")
        if self.day_closed or self._today is None or not self._today.block_open(self.time):
            return refuse("market_closed")
        if cmd.quantity < self.config.block_min_quantity:
            return refuse("below_block_minimum")
        lower, upper = self._band(inst, self.config.block_band_bps)
        if not lower <= cmd.price <= upper:
            return refuse("outside_price_band")
        seller = self.accounts[cmd.seller_id]
        buyer = self.accounts[cmd.buyer_id]
        available = seller.available(cmd.instrument)
        if available - seller.bought_today.get(cmd.instrument, 0) < cmd.quantity:
            reason = "insufficient_credits" if available < cmd.quantity else "resale_same_day"
            return refuse(reason, cmd.seller_id)
        bps = self._fee_bps(inst)
        notional = cmd.price * cmd.quantity
        fee = self._fee(notional, bps)
        if (
            buyer.position_limit
            and buyer.holdings() + buyer.open_buy + cmd.quantity > buyer.position_limit
        ):
            return refuse("position_limit")
        if notional + fee > buyer.cash:
            return refuse("insufficient_cash")
        moved = seller.take_credits(cmd.instrument, cmd.quantity)
        buyer.give_credits(cmd.instrument, moved, cmd.quantity)
        if self.config.resale_next_day:
            buyer.bought_today[cmd.instrument] = (
                buyer.bought_today.get(cmd.instrument, 0) + cmd.quantity
            )
        buyer.cash -= notional + fee
        seller.cash += notional - fee
        self.fees_collected += 2 * fee
        trade_id = self.next_trade_id
        self.next_trade_id += 1
        return [
            TradeExecuted(
                trade_id=trade_id,
                instrument=cmd.instrument,
                price=cmd.price,
                quantity=cmd.quantity,
                buy_order_id=0,
                sell_order_id=0,
                buyer_id=cmd.buyer_id,
                seller_id=cmd.seller_id,
                aggressor="block",
                buyer_fee=fee,
                seller_fee=fee,
                buyer_released=0,
                serials=tuple(moved),
            )
        ]

    # ------------------------------------------------------------------ accounts

    def _account_or_reject(self, enterprise_id: str, command: str) -> Account | CommandRejected:
        account = self.accounts.get(enterprise_id)
        if account is None:
            return CommandRejected(
                command=command, enterprise_id=enterprise_id, reason="unknown_enterprise"
            )
        return account

    def _open_account(self, cmd: c.OpenAccount, position: int) -> list[Event]:
        if cmd.enterprise_id in self.accounts:
            return [
                CommandRejected(
                    command="OpenAccount", enterprise_id=cmd.enterprise_id, reason="already_open"
                )
            ]
        self.accounts[cmd.enterprise_id] = Account(cmd.enterprise_id)
        return [AccountOpened(enterprise_id=cmd.enterprise_id)]

    def _set_status(self, cmd: c.SetEnterpriseStatus, position: int) -> list[Event]:
        account = self._account_or_reject(cmd.enterprise_id, "SetEnterpriseStatus")
        if isinstance(account, CommandRejected):
            return [account]
        if cmd.status not in (ACTIVE, SUSPENDED):
            return [
                CommandRejected(
                    command="SetEnterpriseStatus",
                    enterprise_id=cmd.enterprise_id,
                    reason="invalid_status",
                    detail=cmd.status,
                )
            ]
        account.status = cmd.status
        changed: list[Event] = [
            EnterpriseStatusChanged(enterprise_id=cmd.enterprise_id, status=cmd.status)
        ]
        if cmd.status != ACTIVE:
            changed += self._cancel_all(cmd.enterprise_id, "enterprise_suspended")
        return changed

    def _freeze(self, cmd: c.FreezeAccount, position: int) -> list[Event]:
        account = self._account_or_reject(cmd.enterprise_id, "FreezeAccount")
        if isinstance(account, CommandRejected):
            return [account]
        account.frozen = cmd.frozen
        changed: list[Event] = [
            AccountFreezeChanged(
                enterprise_id=cmd.enterprise_id, frozen=cmd.frozen, reason=cmd.reason
            )
        ]
        if cmd.frozen:
            changed += self._cancel_all(cmd.enterprise_id, "account_frozen")
        return changed

    def _cancel_all(self, enterprise_id: str, reason: str) -> list[Event]:
        """Cancel every open order of an enterprise that may no longer trade, oldest
        first, releasing their holds.

        Refusing its new orders is not enough: a resting order is a standing offer
        that the next incoming order would fill, moving cash and credits in and out
        of an account that is suspended or frozen. The cancellations follow the
        status change in the same step, so no command ever sees the one without
        the other.
        """
        cancelled: list[Event] = []
        for order in [o for o in self.orders.values() if o.enterprise_id == enterprise_id]:
            self._take_off_book(order)
            cancelled.append(self._cancel_remainder(order, reason))
        for order_id in [i for i, q in self.queued.items() if q.enterprise_id == enterprise_id]:
            cancelled.append(self._unqueue(order_id, enterprise_id, reason))
        return cancelled

    def _set_position_limit(self, cmd: c.SetPositionLimit, position: int) -> list[Event]:
        account = self._account_or_reject(cmd.enterprise_id, "SetPositionLimit")
        if isinstance(account, CommandRejected):
            return [account]
        if cmd.limit < 0:
            return [
                CommandRejected(
                    command="SetPositionLimit",
                    enterprise_id=cmd.enterprise_id,
                    reason="invalid_quantity",
                )
            ]
        account.position_limit = cmd.limit
        return [PositionLimitSet(enterprise_id=cmd.enterprise_id, limit=cmd.limit)]

    def _list_instrument(self, cmd: c.ListInstrument, position: int) -> list[Event]:
        if cmd.symbol in self.instruments:
            return [
                CommandRejected(
                    command="ListInstrument",
                    enterprise_id="",
                    reason="already_listed",
                    detail=cmd.symbol,
                )
            ]
        if cmd.reference_price <= 0 or not 0 <= cmd.fee_bps < 10_000:
            return [
                CommandRejected(
                    command="ListInstrument",
                    enterprise_id="",
                    reason="invalid",
                    detail="reference_price > 0 and 0 <= fee_bps < 10000",
                )
            ]
        self.instruments[cmd.symbol] = Instrument(
            cmd.symbol, cmd.vintage, cmd.reference_price, cmd.fee_bps
        )
        return [
            InstrumentListed(
                symbol=cmd.symbol,
                vintage=cmd.vintage,
                reference_price=cmd.reference_price,
                fee_bps=cmd.fee_bps,
            )
        ]

    def _deposit(self, cmd: c.DepositCash, position: int) -> list[Event]:
        account = self._account_or_reject(cmd.enterprise_id, "DepositCash")
        if isinstance(account, CommandRejected):
            return [account]
        if cmd.amount <= 0:
            return [
                CommandRejected(
                    command="DepositCash", enterprise_id=cmd.enterprise_id, reason="invalid_amount"
                )
            ]
        account.cash += cmd.amount
        return [
            CashDeposited(
                enterprise_id=cmd.enterprise_id, amount=cmd.amount, reference=cmd.reference
            )
        ]

    def _withdraw(self, cmd: c.WithdrawCash, position: int) -> list[Event]:
        account = self._account_or_reject(cmd.enterprise_id, "WithdrawCash")
        if isinstance(account, CommandRejected):
            return [account]
        reason = None
        if cmd.amount <= 0:
            reason = "invalid_amount"
        elif account.frozen:
            reason = "account_frozen"
        elif cmd.amount > account.cash:
            reason = "insufficient_cash"
        elif self.registry.penalty_debt(cmd.enterprise_id):
            # Unpaid penalties come first: cash cannot leave while they are owed.
            reason = "penalty_outstanding"
        if reason:
            return [
                CommandRejected(
                    command="WithdrawCash", enterprise_id=cmd.enterprise_id, reason=reason
                )
            ]
        account.cash -= cmd.amount
        return [
            CashWithdrawn(
                enterprise_id=cmd.enterprise_id, amount=cmd.amount, reference=cmd.reference
            )
        ]

    def _credit_refusal(
        self, command: str, enterprise_id: str, instrument: str, quantity: int
    ) -> CommandRejected | Account:
        account = self._account_or_reject(enterprise_id, command)
        if isinstance(account, CommandRejected):
            return account
        reason = None
        if instrument not in self.instruments:
            reason = "unknown_instrument"
        elif quantity <= 0:
            reason = "invalid_quantity"
        elif account.available(instrument) < quantity:
            reason = "insufficient_credits"
        if reason:
            return CommandRejected(command=command, enterprise_id=enterprise_id, reason=reason)
        return account

    def _issue(self, cmd: c.IssueCredits, position: int) -> list[Event]:
        account = self._account_or_reject(cmd.enterprise_id, "IssueCredits")
        if isinstance(account, CommandRejected):
            return [account]
        inst = self.instruments.get(cmd.instrument)
        if inst is None or cmd.quantity <= 0:
            reason = "unknown_instrument" if inst is None else "invalid_quantity"
            return [
                CommandRejected(
                    command="IssueCredits", enterprise_id=cmd.enterprise_id, reason=reason
                )
            ]
        return [self._issue_block(account, inst, cmd.quantity, cmd.reason)]

    @staticmethod
    def _issue_block(
        account: Account, inst: Instrument, quantity: int, reason: str
    ) -> CreditsIssued:
        """Create `quantity` credits for `account` as the instrument's next serial block."""
        first = inst.next_serial
        last = first + quantity - 1
        inst.next_serial = last + 1
        account.give_credits(inst.symbol, [(first, last)], quantity)
        return CreditsIssued(
            enterprise_id=account.enterprise_id,
            instrument=inst.symbol,
            quantity=quantity,
            serial_first=first,
            serial_last=last,
            reason=reason,
        )

    def _transfer(self, cmd: c.TransferCredits, position: int) -> list[Event]:
        source = self._credit_refusal(
            "TransferCredits", cmd.from_enterprise_id, cmd.instrument, cmd.quantity
        )
        if isinstance(source, CommandRejected):
            return [source]
        target = self._account_or_reject(cmd.to_enterprise_id, "TransferCredits")
        if isinstance(target, CommandRejected):
            return [target]
        for account in (source, target):
            if account.frozen:
                return [
                    CommandRejected(
                        command="TransferCredits",
                        enterprise_id=account.enterprise_id,
                        reason="account_frozen",
                    )
                ]
        if target.position_limit and (
            target.holdings() + target.open_buy + cmd.quantity > target.position_limit
        ):
            return [
                CommandRejected(
                    command="TransferCredits",
                    enterprise_id=cmd.to_enterprise_id,
                    reason="position_limit",
                )
            ]
        moved = source.take_credits(cmd.instrument, cmd.quantity)
        target.give_credits(cmd.instrument, moved, cmd.quantity)
        return [
            CreditsTransferred(
                from_enterprise_id=cmd.from_enterprise_id,
                to_enterprise_id=cmd.to_enterprise_id,
                instrument=cmd.instrument,
                quantity=cmd.quantity,
                serials=tuple(moved),
                reason=cmd.reason,
            )
        ]

    def _surrender(self, cmd: c.SurrenderCredits, position: int) -> list[Event]:
        """Cancel credits; against a registry period's obligation, the registry decides.

        For a compliance period the registry opened, the surrender must fit the
        enterprise's outstanding obligation (and the offset cap, and the vintage rule)
        and reduces it. A period the registry does not know is a plain cancellation,
        as before the registry existed (no obligation to count it against).
        """
        if self.registry.manages(cmd.period):
            account = self._account_or_reject(cmd.enterprise_id, "SurrenderCredits")
            if isinstance(account, CommandRejected):
                return [account]
            return self.registry.surrender(cmd, self.time, self._port)
        account = self._credit_refusal(
            "SurrenderCredits", cmd.enterprise_id, cmd.instrument, cmd.quantity
        )
        if isinstance(account, CommandRejected):
            return [account]
        return [self._surrender_credits(account, cmd.instrument, cmd.quantity, cmd.period)]

    @staticmethod
    def _surrender_credits(
        account: Account, instrument: str, quantity: int, period: str
    ) -> CreditsSurrendered:
        """Cancel the lowest `quantity` available serials (the caller checked there are)."""
        gone = account.take_credits(instrument, quantity)
        return CreditsSurrendered(
            enterprise_id=account.enterprise_id,
            instrument=instrument,
            quantity=quantity,
            serials=tuple(gone),
            period=period,
        )

    def _retire(self, cmd: c.RetireCredits, position: int) -> list[Event]:
        account = self._credit_refusal(
            "RetireCredits", cmd.enterprise_id, cmd.instrument, cmd.quantity
        )
        if isinstance(account, CommandRejected):
            return [account]
        if account.frozen:  # credits leave the account for good, as in a transfer out
            return [
                CommandRejected(
                    command="RetireCredits",
                    enterprise_id=cmd.enterprise_id,
                    reason="account_frozen",
                )
            ]
        gone = account.take_credits(cmd.instrument, cmd.quantity)
        return [
            CreditsRetired(
                enterprise_id=cmd.enterprise_id,
                instrument=cmd.instrument,
                quantity=cmd.quantity,
                serials=tuple(gone),
                beneficiary=cmd.beneficiary,
                reason=cmd.reason,
            )
        ]

    # ------------------------------------------------------------------ registry

    def _registry_command(self, cmd: Event, position: int) -> list[Event]:
        return self.registry.handle(cmd, self.time, self._port)

    def average_price(self, symbol: str, deadline: int | None = None) -> AveragePrice:
        """The penalty price (RULES.md: "3 × the average price of the last 6 months").

        The volume-weighted average price of the instrument's continuous trades over
        six calendar months (negotiated block trades excluded, as in the daily close),
        rounded half-up to the fen. With a `deadline` (µs; not after now), the months
        before it: they end with the last trading day that closed by the deadline (the
        day before it, for a deadline at midnight such as the default), so the price
        is the same whenever after the deadline it is asked for. Without one, the
        months ending with the current trading day, its trades so far included (an
        enforcement forced before the deadline). When there was no trade in that
        window, the instrument's latest daily close: the operator's reference price
        while the instrument has never traded, otherwise the last price the market
        made (after a deadline, that can be a close made since the deadline: the
        engine keeps no older close than its history).
        """
        inst = self.instruments[symbol]
        if deadline is None:
            last_day = self.day
            volume = inst.day_volume
            notional = inst.day_notional
        else:
            # Daily figures are whole days: a day counts when its close came by the
            # deadline (and is then in the history: the deadline has passed).
            last_day = self.calendar.day(deadline)
            if self.calendar.schedule(last_day).closes_at > deadline:
                last_day -= 1
            volume = notional = 0
        end = date.fromordinal(_EPOCH_ORDINAL + last_day)
        year, month = divmod(end.year * 12 + end.month - 1 - 6, 12)
        start = date(year, month + 1, min(end.day, monthrange(year, month + 1)[1]))
        first_day = start.toordinal() - _EPOCH_ORDINAL  # excluded: exactly six months
        for day, day_volume, day_notional in inst.history:
            if first_day < day <= last_day:
                volume += day_volume
                notional += day_notional
        window = f"{iso_day(first_day + 1)}..{iso_day(last_day)}"
        if volume == 0:
            return AveragePrice(inst.previous_close, f"no trades {window}: latest close")
        return AveragePrice(vwap(notional, volume), f"vwap {window}: {volume} t")

    def _history_floor(self) -> int:
        """The latest day whose daily prices may be dropped from the history.

        HISTORY_DAYS before today; but while a period awaits enforcement after its
        deadline, HISTORY_DAYS before that deadline, so that a late enforcement still
        finds the six months before the deadline (dropping them would make the penalty
        depend on when the regulator enforces). Once enforced, the floor moves on.
        """
        keep_from = self.day
        deadline = self.registry.earliest_pending_deadline()
        if deadline is not None:
            keep_from = min(keep_from, self.calendar.day(deadline))
        return keep_from - HISTORY_DAYS

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """The whole engine state as plain data, in a canonical order.

        Book levels keep their time priority (lists in queue order); everything keyed
        is sorted. Snapshots are this structure; the state hash is its digest.
        """
        accounts = {}
        for eid in sorted(self.accounts):
            a = self.accounts[eid]
            accounts[eid] = {
                "status": a.status,
                "frozen": a.frozen,
                "cash": a.cash,
                "cash_held": a.cash_held,
                # Copies: the state must not change when the engine does (nor the reverse).
                "credits": {
                    k: [list(r) for r in a.credits[k]] for k in sorted(a.credits) if a.credits[k]
                },
                "credits_held": {k: v for k, v in sorted(a.credits_held.items()) if v},
                "bought_today": {k: v for k, v in sorted(a.bought_today.items()) if v},
                "open_buy": a.open_buy,
                "position_limit": a.position_limit,
            }
        instruments = {}
        for symbol in sorted(self.instruments):
            i = self.instruments[symbol]
            instruments[symbol] = {
                "vintage": i.vintage,
                "fee_bps": i.fee_bps,
                "previous_close": i.previous_close,
                "next_serial": i.next_serial,
                "day": [
                    i.day_open,
                    i.day_high,
                    i.day_low,
                    i.day_volume,
                    i.day_notional,
                    i.day_trades,
                ],
                "bids": [[p, list(i.book.bids[p])] for p in i.book.bid_prices],
                "asks": [[p, list(i.book.asks[p])] for p in i.book.ask_prices],
            }
            if i.history:
                instruments[symbol]["history"] = [list(h) for h in i.history]
        orders = [
            [
                o.id,
                o.client_order_id,
                o.enterprise_id,
                o.instrument,
                o.is_buy,
                o.order_type,
                o.price,
                o.quantity,
                o.remaining,
                o.time_in_force,
                o.expire_at,
                o.held_cash,
                [list(r) for r in o.credits],
                o.post_only,
            ]
            for o in self.orders.values()
        ]
        state: dict[str, Any] = {
            "rules": self.config.fingerprint(),
            "accounts": accounts,
            "instruments": instruments,
            "orders": orders,
            "expiries": sorted(self.expiries),
            "fees_collected": self.fees_collected,
            "next_trade_id": self.next_trade_id,
            "time": self.time,
            "day": self.day,
            "day_closed": self.day_closed,
        }
        # Parts added with the registry are left out while empty, so the state (and
        # hash) of an engine that never used them is what it was before they existed:
        # snapshots taken by earlier versions still restore and hash the same.
        if self.penalties_collected:
            state["penalties_collected"] = self.penalties_collected
        if self.queuing:
            state["queuing"] = True
        if self.queued:
            state["queued"] = [
                [
                    order_id,
                    q.client_order_id,
                    q.enterprise_id,
                    q.instrument,
                    q.side,
                    q.order_type,
                    q.price,
                    q.quantity,
                    q.time_in_force,
                    q.post_only,
                    q.expire_at,
                ]
                for order_id, q in self.queued.items()
            ]
        if not self.registry.is_empty():
            state["registry"] = self.registry.state()
        return state

    def snapshot(self) -> bytes:
        """Canonical bytes of :meth:`state`."""
        return canonical_state(self.state())

    def state_hash(self) -> str:
        """sha256 of the snapshot: equal hashes mean equal engines."""
        return hash_state(self.state())

    @classmethod
    def restore(cls, snapshot: bytes, config: EngineConfig | None = None) -> Engine:
        """An engine in exactly the state a snapshot was taken in."""
        return cls.from_state(orjson.loads(snapshot), config)

    @classmethod
    def from_state(cls, data: dict[str, Any], config: EngineConfig | None = None) -> Engine:
        """An engine in exactly the state :meth:`state` described.

        Refused (ValueError) when the state was taken under other rules than `config`.
        """
        engine = cls(config)
        if data.get("rules") != engine.config.fingerprint():
            raise ValueError(
                f"state taken under rules {data.get('rules')}, not {engine.config.fingerprint()}"
            )
        for eid, a in data["accounts"].items():
            account = Account(eid)
            account.status = a["status"]
            account.frozen = a["frozen"]
            account.cash = a["cash"]
            account.cash_held = a["cash_held"]
            account.credits = {k: [list(r) for r in v] for k, v in a["credits"].items()}
            account.credit_qty = {k: serials.count(v) for k, v in account.credits.items()}
            account.credits_held = dict(a["credits_held"])
            account.bought_today = dict(a["bought_today"])
            account.open_buy = a["open_buy"]
            account.position_limit = a["position_limit"]
            engine.accounts[eid] = account
        orders: dict[int, Order] = {}
        for (
            oid,
            coid,
            eid,
            symbol,
            is_buy,
            otype,
            price,
            qty,
            remaining,
            tif,
            expire_at,
            held_cash,
            credits,
            post_only,
        ) in data["orders"]:
            order = Order(oid, coid, eid, symbol, is_buy, otype, price, qty, tif, expire_at)
            order.remaining = remaining
            order.held_cash = held_cash
            order.post_only = post_only
            order.credits = [list(r) for r in credits]
            orders[oid] = order
        engine.orders = orders
        for symbol, i in data["instruments"].items():
            inst = Instrument(symbol, i["vintage"], i["previous_close"], i["fee_bps"])
            inst.next_serial = i["next_serial"]
            (
                inst.day_open,
                inst.day_high,
                inst.day_low,
                inst.day_volume,
                inst.day_notional,
                inst.day_trades,
            ) = i["day"]
            for _, ids in i["bids"] + i["asks"]:
                for oid in ids:
                    inst.book.add(orders[oid])
            inst.history = [list(h) for h in i.get("history", [])]
            engine.instruments[symbol] = inst
        engine.expiries = [(t, oid) for t, oid in data["expiries"]]
        engine.fees_collected = data["fees_collected"]
        engine.penalties_collected = data.get("penalties_collected", 0)
        engine.queuing = data.get("queuing", False)
        engine.queued = {
            order_id: c.PlaceOrder(
                client_order_id=coid,
                enterprise_id=eid,
                instrument=symbol,
                side=side,
                order_type=otype,
                price=price,
                quantity=qty,
                time_in_force=tif,
                post_only=post_only,
                expire_at=expire_at,
            )
            for order_id, coid, eid, symbol, side, otype, price, qty, tif, post_only, expire_at in (
                data.get("queued", [])
            )
        }
        if "registry" in data:
            engine.registry = Registry.from_state(data["registry"])
        engine.next_trade_id = data["next_trade_id"]
        engine.time = data["time"]
        if data["day"] >= 0:
            engine._enter_day(data["day"])
        engine.day_closed = data["day_closed"]
        return engine


class _EnginePort:
    """The registry's narrow view of the engine (:class:`~services.registry.registry.
    ExchangePort`): accounts, serial-block issuance, surrender, cash and prices.

    The registry calls the changing methods only after its own checks passed, and
    checks what they need (account, instrument, available credits or cash) through the
    reading methods first, so none of them refuses anything.
    """

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def has_account(self, enterprise_id: str) -> bool:
        return enterprise_id in self._engine.accounts

    def open_account(self, enterprise_id: str) -> Event:
        self._engine.accounts[enterprise_id] = Account(enterprise_id)
        return AccountOpened(enterprise_id=enterprise_id)

    def set_trading_status(self, enterprise_id: str, status: str) -> list[Event]:
        engine = self._engine
        engine.accounts[enterprise_id].status = status
        return [] if status == ACTIVE else engine._cancel_all(enterprise_id, "enterprise_suspended")

    def instrument_vintage(self, symbol: str) -> int | None:
        inst = self._engine.instruments.get(symbol)
        return None if inst is None else inst.vintage

    def available_credits(self, enterprise_id: str, instrument: str) -> int:
        account = self._engine.accounts.get(enterprise_id)
        return 0 if account is None else account.available(instrument)

    def issue(self, enterprise_id: str, instrument: str, quantity: int, reason: str) -> Event:
        engine = self._engine
        return engine._issue_block(
            engine.accounts[enterprise_id], engine.instruments[instrument], quantity, reason
        )

    def surrender(self, enterprise_id: str, instrument: str, quantity: int, period: str) -> Event:
        account = self._engine.accounts[enterprise_id]
        return self._engine._surrender_credits(account, instrument, quantity, period)

    def available_cash(self, enterprise_id: str) -> int:
        account = self._engine.accounts.get(enterprise_id)
        return 0 if account is None else account.cash

    def charge(self, enterprise_id: str, amount: int) -> None:
        """Take `amount` fen of available cash (never held cash, which backs orders)."""
        self._engine.accounts[enterprise_id].cash -= amount
        self._engine.penalties_collected += amount

    def average_price(self, instrument: str, deadline: int | None) -> AveragePrice:
        return self._engine.average_price(instrument, deadline)
