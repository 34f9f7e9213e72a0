"""Property tests of the exchange engine: random command streams, invariants after each.

A stream is a list of abstract operations; each is resolved into a concrete command
against the engine's state at the moment it is applied (an order id to cancel is picked
among the open ones, a price around the instrument's current close), so most commands
are meaningful while some are deliberately wrong (foreign or closed order ids, prices
outside the band, amounts beyond the balance). The concrete commands are recorded, so
the same stream can be replayed on fresh and restored engines.

After every command:
- credits: per instrument, issued - surrendered - retired == all holdings (available +
  held by sell orders), and every serial is in exactly one place (account, open order,
  surrendered, retired), all serials 1..next_serial-1 accounted for;
- cash: deposited - withdrawn == all cash (available + held) + fees + penalties collected;
- no balance below zero; each account's cash_held is the sum of its open buys' holds,
  each hold is price × remaining + fee + remaining; credits_held and open_buy match the
  open orders;
- the book holds exactly the open orders, at their prices, and is never crossed;
- balances projected from the result events alone equal the engine's.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from typing import Any

import hypothesis.strategies as st
import orjson
from engine_dsl import MONDAY, at, hold
from hypothesis import HealthCheck, given, settings

from events import commands as c
from events import registry as r
from events.accounts import (
    CashDeposited,
    CashWithdrawn,
    CreditsIssued,
    CreditsRetired,
    CreditsSurrendered,
    CreditsTransferred,
)
from events.base import Event
from events.exchange import (
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    OrderRepriced,
    TradeExecuted,
)
from services.exchange import serials
from services.exchange.calendar import ALWAYS, CN_ETS
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine
from services.registry.credit_code import check_character

ENTERPRISES = ("A", "B", "C")
#: Valid unified social credit codes (GB 32100 check character) for the registry.
CODES = {e: f"9134010000000000{e}" for e in ENTERPRISES}
CODES = {e: body[:17] + check_character(body[:17]) for e, body in CODES.items()}
INSTRUMENTS = (("X", 5_000, 7), ("Y", 777, 0))  # symbol, reference price, fee bps
SECOND = 1_000_000
START = at(MONDAY, "09:30")

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------- streams

ent = st.sampled_from(ENTERPRISES)
sym = st.sampled_from([s for s, _, _ in INSTRUMENTS])
qty = st.integers(1, 120)
# price steps of 0.5% around the close, mostly near it: up to ±12% (the band is ±10%)
offset = st.one_of(st.integers(-4, 4), st.integers(-24, 24))
pick = st.integers(0, 1_000)  # which open order (modulo), or which past position
# Time between commands: mostly seconds or minutes, sometimes hours or days (which closes
# days and expires orders), and now and then a command stamped in the past (the engine
# keeps its later time).
STEPS = {0: 1, 1: 8, 7: 4, 60: 6, 1_200: 3, 7_200: 1, 86_400: 1, 183_600: 1, -5: 1}
dt = st.sampled_from([s * SECOND for s, n in STEPS.items() for _ in range(n)])

order_op = st.tuples(
    st.just("order"),
    ent,
    sym,
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["limit", "limit", "limit", "market", "ioc", "fok", "post", "market-fok"]),
    qty,
    offset,
    st.sampled_from(["day", "gtc", "gtd"]),
    st.sampled_from([-SECOND, 30 * SECOND, 3_600 * SECOND, 86_400 * SECOND]),
)
KINDS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "order": order_op,
    "cancel": st.tuples(st.just("cancel"), pick, st.booleans(), st.just(0)),
    "reduce": st.tuples(st.just("reduce"), pick, st.booleans(), st.integers(0, 200)),
    "reprice": st.tuples(st.just("reprice"), pick, st.booleans(), offset),
    "deposit": st.tuples(st.just("deposit"), ent, st.integers(1, 3_000_000)),
    "withdraw": st.tuples(st.just("withdraw"), ent, st.integers(1, 3_000_000)),
    "issue": st.tuples(st.just("issue"), ent, sym, st.integers(1, 500)),
    "transfer": st.tuples(st.just("transfer"), ent, ent, sym, qty),
    # 2024 is no period of the registry's (a plain cancellation); 2025 is its period.
    "surrender": st.tuples(st.just("surrender"), ent, sym, qty, st.sampled_from(["2024", "2025"])),
    "retire": st.tuples(st.just("retire"), ent, sym, qty),
    "block": st.tuples(st.just("block"), ent, ent, sym, st.integers(40, 200), st.integers(-70, 70)),
    "tick": st.tuples(st.just("tick")),
    # mostly lifting a freeze or a suspension, so that they do not stick for long
    "freeze": st.tuples(st.just("freeze"), ent, st.sampled_from([True, False, False, False])),
    "status": st.tuples(st.just("status"), ent, st.sampled_from(["suspended"] + ["active"] * 3)),
    "limit": st.tuples(st.just("limit"), ent, st.sampled_from([0, 0, 300, 2_000])),
    # The registry: reports, verification, quotas, the close, the deadline, penalties.
    "report": st.tuples(st.just("report"), ent, st.integers(0, 400), st.integers(1, 900)),
    "verify": st.tuples(st.just("verify"), ent, st.sampled_from([True, True, True, False])),
    "allocate": st.tuples(
        st.just("allocate"),
        ent,
        st.sampled_from(["benchmark", "grandfathering"]),
        st.integers(0, 700),
    ),
    "close": st.tuples(st.just("close")),
    "enforce": st.tuples(st.just("enforce")),
    "collect": st.tuples(st.just("collect"), ent),
}
# How often each kind comes up: mostly orders and order changes.
WEIGHTS = {"order": 24, "cancel": 3, "reduce": 3, "reprice": 4, "deposit": 2, "withdraw": 2}
WEIGHTS |= {"issue": 2, "transfer": 1, "surrender": 1, "retire": 1, "block": 2, "tick": 2}
WEIGHTS |= {"freeze": 1, "status": 1, "limit": 1}
WEIGHTS |= {"report": 3, "verify": 3, "allocate": 1, "close": 2, "enforce": 2, "collect": 1}
kinds = st.sampled_from([k for k, n in WEIGHTS.items() for _ in range(n)])
op = st.tuples(dt, kinds.flatmap(KINDS.__getitem__))
streams = st.lists(op, min_size=20, max_size=70)
# Blocks of ≥ 40 t, so random streams can afford them; now and then a fee override for
# every instrument, resale allowed on the day of purchase, or self-trade prevention that
# cancels the resting order instead of the incoming one.
configs = st.builds(
    lambda calendar, fee_bps, resale_next_day, self_trade: EngineConfig(
        calendar=calendar,
        block_min_quantity=40,
        fee_bps=fee_bps,
        resale_next_day=resale_next_day,
        self_trade=self_trade,
    ),
    st.sampled_from([ALWAYS, ALWAYS, CN_ETS]),
    st.sampled_from([None, None, None, 3]),
    st.sampled_from([True, True, False]),
    st.sampled_from(["cancel_incoming", "cancel_incoming", "cancel_resting"]),
)


def setup_commands() -> list[Event]:
    out: list[Event] = [
        c.ListInstrument(symbol=s, vintage=2025, reference_price=p, fee_bps=f)
        for s, p, f in INSTRUMENTS
    ]
    for e in ENTERPRISES:
        # Registered and approved through the registry (approval opens the account).
        out.append(
            r.RegisterEnterprise(enterprise_id=e, name=e, sector="steel", credit_code=CODES[e])
        )
        out.append(r.ChangeEnterpriseStatus(enterprise_id=e, action="approve"))
        out.append(c.DepositCash(enterprise_id=e, amount=5_000_000))
        for s, _, _ in INSTRUMENTS:
            out.append(c.IssueCredits(enterprise_id=e, instrument=s, quantity=300, reason="seed"))
    # The compliance period whose surplus credits are instrument X (vintage 2025).
    out.append(r.OpenPeriod(period="2025", instrument="X"))
    # Every verified enterprise gets a quota at the close (its own allocation wins).
    out.append(
        r.SetAllocation(
            period="2025", method="benchmark", params={"benchmark_t_per_unit": "0.7"},
            sector="steel",
        )
    )  # fmt: skip
    return out


def resolve(engine: Engine, position: int, time: int, spec: tuple[Any, ...]) -> Event:
    """The concrete command for abstract operation `spec`, given the engine's state."""
    kind = spec[0]

    def price(symbol: str, steps: int) -> int:
        close = engine.instruments[symbol].previous_close
        return max(1, close + steps * max(1, close // 200))

    def order_ref(k: int, open_only: bool, right_owner: bool) -> tuple[int, str, Any]:
        ids = sorted(engine.orders)
        if open_only and ids:
            oid = ids[k % len(ids)]
            order = engine.orders[oid]
            owner = order.enterprise_id
            if not right_owner:
                owner = ENTERPRISES[(ENTERPRISES.index(owner) + 1) % len(ENTERPRISES)]
            return oid, owner, order
        return 1 + k % position, ENTERPRISES[k % len(ENTERPRISES)], None

    if kind == "order":
        _, who, symbol, side, otype, quantity, steps, tif, gtd_in = spec
        market = otype.startswith("market")
        return c.PlaceOrder(
            client_order_id=f"c{position}",
            enterprise_id=who,
            instrument=symbol,
            side=side,
            order_type="market" if market else "limit",
            quantity=quantity,
            price=0 if market else price(symbol, steps),
            time_in_force={"ioc": "ioc", "fok": "fok", "market-fok": "fok"}.get(otype, tif),
            post_only=otype == "post",
            expire_at=time + gtd_in if tif == "gtd" else 0,
        )
    if kind in ("cancel", "reduce", "reprice"):
        _, k, open_only, arg = spec
        oid, owner, order = order_ref(k, open_only, right_owner=k % 7 != 0)
        if kind == "cancel":
            return c.CancelOrder(order_id=oid, enterprise_id=owner)
        if kind == "reduce":
            wanted = arg % (order.remaining + 1) if order is not None else arg
            return c.ReduceOrder(order_id=oid, enterprise_id=owner, quantity=wanted)
        symbol = order.instrument if order is not None else "X"
        return c.RepriceOrder(order_id=oid, enterprise_id=owner, price=price(symbol, arg))
    if kind == "deposit":
        return c.DepositCash(enterprise_id=spec[1], amount=spec[2])
    if kind == "withdraw":
        return c.WithdrawCash(enterprise_id=spec[1], amount=spec[2])
    if kind == "issue":
        return c.IssueCredits(
            enterprise_id=spec[1], instrument=spec[2], quantity=spec[3], reason=""
        )
    if kind == "transfer":
        _, src, dst, symbol, quantity = spec
        return c.TransferCredits(
            from_enterprise_id=src,
            to_enterprise_id=dst,
            instrument=symbol,
            quantity=quantity,
            reason="",
        )
    if kind == "surrender":
        return c.SurrenderCredits(
            enterprise_id=spec[1], instrument=spec[2], quantity=spec[3], period=spec[4]
        )
    if kind == "retire":
        return c.RetireCredits(
            enterprise_id=spec[1], instrument=spec[2], quantity=spec[3], beneficiary="b", reason=""
        )
    if kind == "block":
        _, seller, buyer, symbol, quantity, steps = spec
        return c.BlockTrade(
            instrument=symbol,
            seller_id=seller,
            buyer_id=buyer,
            quantity=quantity,
            price=price(symbol, steps),
        )
    if kind == "tick":
        return c.Tick()
    if kind == "freeze":
        return c.FreezeAccount(enterprise_id=spec[1], frozen=spec[2])
    if kind == "status":
        return c.SetEnterpriseStatus(enterprise_id=spec[1], status=spec[2])
    if kind == "report":
        _, who, coal_t, output = spec
        return r.SubmitReport(
            enterprise_id=who,
            period="2025",
            sources=({"kind": "fuel", "name": "raw_coal", "activity": str(coal_t), "unit": "t"},),
            output_value=str(output),
            energy_tce=str(output // 10),
        )
    if kind == "verify":
        return r.VerifyReport(
            report_id=r.report_id(spec[1], "2025"), accepted=spec[2], note="", verifier="v"
        )
    if kind == "allocate":
        _, who, method, amount = spec
        params: dict[str, Any] = (
            {"benchmark_t_per_unit": f"0.{amount % 10}{amount // 10 % 10}"}
            if method == "benchmark"
            else {"base_emissions_t": [str(amount), str(amount + 50)], "decline_factor": "0.9"}
        )
        return r.SetAllocation(period="2025", method=method, params=params, enterprise_id=who)
    if kind == "close":
        return r.ClosePeriod(period="2025")
    if kind == "enforce":
        return r.EnforcePeriod(period="2025", force=True)
    if kind == "collect":
        return r.CollectPenalty(enterprise_id=spec[1])
    assert kind == "limit"
    return c.SetPositionLimit(enterprise_id=spec[1], limit=spec[2])


# ---------------------------------------------------------------------------- the ledger


class Ledger:
    """What the result events say happened, kept independently of the engine."""

    def __init__(self) -> None:
        self.deposited = 0
        self.withdrawn = 0
        self.fees = 0
        self.gone: dict[str, list[tuple[int, int]]] = defaultdict(list)  # surrendered/retired
        self.gone_count: dict[str, int] = defaultdict(int)
        self.issued: dict[str, int] = defaultdict(int)
        # Balances projected from events only.
        self.cash: dict[str, int] = defaultdict(int)
        self.cash_held: dict[str, int] = defaultdict(int)
        self.credits: dict[tuple[str, str], int] = defaultdict(int)
        self.credits_held: dict[tuple[str, str], int] = defaultdict(int)
        self.order_of: dict[int, tuple[str, str]] = {}  # order id -> (enterprise, symbol)
        self.price: dict[int, int] = {}  # order id -> its (latest) limit price

    def record(self, e: Event) -> None:
        if isinstance(e, CashDeposited):
            self.deposited += e.amount
            self.cash[e.enterprise_id] += e.amount
        elif isinstance(e, CashWithdrawn):
            self.withdrawn += e.amount
            self.cash[e.enterprise_id] -= e.amount
        elif isinstance(e, CreditsIssued):
            assert e.serial_last - e.serial_first + 1 == e.quantity
            self.issued[e.instrument] += e.quantity
            self.credits[e.enterprise_id, e.instrument] += e.quantity
        elif isinstance(e, CreditsTransferred):
            assert serials.count([list(r) for r in e.serials]) == e.quantity
            self.credits[e.from_enterprise_id, e.instrument] -= e.quantity
            self.credits[e.to_enterprise_id, e.instrument] += e.quantity
        elif isinstance(e, CreditsSurrendered | CreditsRetired):
            assert serials.count([list(r) for r in e.serials]) == e.quantity
            self.gone[e.instrument].extend(e.serials)
            self.gone_count[e.instrument] += e.quantity
            self.credits[e.enterprise_id, e.instrument] -= e.quantity
        elif isinstance(e, OrderAccepted):
            self.order_of[e.order_id] = (e.enterprise_id, e.instrument)
            self.price[e.order_id] = e.price
            self.cash[e.enterprise_id] -= e.held_cash
            self.cash_held[e.enterprise_id] += e.held_cash
            self.credits[e.enterprise_id, e.instrument] -= e.held_credits
            self.credits_held[e.enterprise_id, e.instrument] += e.held_credits
        elif isinstance(e, TradeExecuted):
            assert serials.count([list(r) for r in e.serials]) == e.quantity
            notional = e.price * e.quantity
            self.fees += e.buyer_fee + e.seller_fee
            buyer, seller, symbol = e.buyer_id, e.seller_id, e.instrument
            if e.aggressor == "block":
                self.cash[buyer] -= notional + e.buyer_fee
                self.credits[seller, symbol] -= e.quantity
            else:
                # a trade executes at the resting order's price, within the taker's limit
                taker, maker = (
                    (e.buy_order_id, e.sell_order_id)
                    if e.aggressor == "buy"
                    else (e.sell_order_id, e.buy_order_id)
                )
                assert e.price == self.price[maker]
                limit = self.price[taker]
                assert e.price <= limit if e.aggressor == "buy" else e.price >= limit
                assert buyer != seller, "self trade"
                assert e.buyer_released >= 0
                self.cash[buyer] += e.buyer_released
                self.cash_held[buyer] -= notional + e.buyer_fee + e.buyer_released
                self.credits_held[seller, symbol] -= e.quantity
            self.cash[seller] += notional - e.seller_fee
            self.credits[buyer, symbol] += e.quantity
        elif isinstance(e, OrderCancelled | OrderExpired | OrderReduced):
            who, symbol = self.order_of[e.order_id]
            self.cash[who] += e.released_cash
            self.cash_held[who] -= e.released_cash
            self.credits[who, symbol] += e.released_credits
            self.credits_held[who, symbol] -= e.released_credits
        elif isinstance(e, r.PenaltyCharged):
            assert e.paid + e.unpaid == e.amount and e.paid >= 0 and e.unpaid >= 0
            self.cash[e.enterprise_id] -= e.paid
        elif isinstance(e, r.PenaltyCollected):
            self.cash[e.enterprise_id] -= e.amount
        elif isinstance(e, OrderRepriced):
            self.price[e.order_id] = e.price
            self.cash[e.enterprise_id] -= e.held_cash_delta
            self.cash_held[e.enterprise_id] += e.held_cash_delta


def check_order_outcome(
    engine: Engine, position: int, command: c.PlaceOrder, out: list[Event]
) -> None:
    """What happened to a new order agrees with its type and time in force."""
    mine = [e for e in out if getattr(e, "order_id", None) == position]
    fills = [
        e
        for e in out
        if isinstance(e, TradeExecuted)
        and position in (e.buy_order_id, e.sell_order_id)
        and e.aggressor != "block"
    ]
    filled = sum(e.quantity for e in fills)
    if mine and isinstance(mine[0], OrderRejected):
        assert len(mine) == 1 and not fills
        assert position not in engine.orders
        return
    assert isinstance(mine[0], OrderAccepted)
    assert all(e.aggressor == command.side for e in fills)
    assert filled <= command.quantity
    if command.time_in_force == "fok":
        assert filled == command.quantity, "fok partly filled"
    if command.post_only:
        assert filled == 0, "post-only took liquidity"
    rested = engine.orders.get(position)
    if command.order_type == "market" or command.time_in_force in ("ioc", "fok"):
        assert rested is None
    cancelled = [e for e in mine if isinstance(e, OrderCancelled)]
    if rested is not None:
        assert rested.remaining == command.quantity - filled and not cancelled
    elif filled < command.quantity:
        assert [e.remaining_quantity for e in cancelled] == [command.quantity - filled]


def check_invariants(engine: Engine, ledger: Ledger) -> None:
    accounts = engine.accounts
    orders = engine.orders

    # -- cash
    total_cash = sum(a.cash + a.cash_held for a in accounts.values())
    # Penalties the registry charges leave the enterprises' cash like fees do.
    assert (
        ledger.deposited - ledger.withdrawn
        == total_cash + engine.fees_collected + engine.penalties_collected
    )
    assert ledger.fees == engine.fees_collected
    for eid, a in accounts.items():
        assert a.cash >= 0 and a.cash_held >= 0 and a.open_buy >= 0, eid
        buys = [o for o in orders.values() if o.is_buy and o.enterprise_id == eid]
        assert a.cash_held == sum(o.held_cash for o in buys), eid
        assert a.open_buy == sum(o.remaining for o in buys), eid
        for o in buys:
            bps = engine.config.fee_bps
            if bps is None:
                bps = engine.instruments[o.instrument].fee_bps
            assert o.held_cash == hold(o.price, o.remaining, bps), o.id
        assert (a.cash, a.cash_held) == (ledger.cash[eid], ledger.cash_held[eid]), eid

    # -- credits
    for symbol, inst in engine.instruments.items():
        holdings = 0
        ranges: list[tuple[int, int]] = list(ledger.gone[symbol])
        for eid, a in accounts.items():
            own = a.credits.get(symbol, [])
            for i, (first, last) in enumerate(own):
                assert first <= last
                assert i == 0 or own[i - 1][1] + 1 < first, f"{eid} ranges not canonical"
            ranges.extend((first, last) for first, last in own)
            held = a.credits_held.get(symbol, 0)
            assert held >= 0
            sells = [
                o
                for o in orders.values()
                if not o.is_buy and o.enterprise_id == eid and o.instrument == symbol
            ]
            assert held == sum(serials.count(o.credits) for o in sells), (eid, symbol)
            for o in sells:
                assert serials.count(o.credits) == o.remaining, o.id
                ranges.extend((first, last) for first, last in o.credits)
            holdings += a.available(symbol) + held
            assert (a.available(symbol), held) == (
                ledger.credits[eid, symbol],
                ledger.credits_held[eid, symbol],
            ), (eid, symbol)
        assert ledger.issued[symbol] - ledger.gone_count[symbol] == holdings, symbol
        # every serial in exactly one place, and every issued serial somewhere
        ranges.sort()
        for (_, last), (first, _) in pairwise(ranges):
            assert last < first, f"{symbol}: serial held twice"
        assert sum(last - first + 1 for first, last in ranges) == inst.next_serial - 1

    # -- the book is exactly the open orders
    seen: set[int] = set()
    for symbol, inst in engine.instruments.items():
        book = inst.book
        assert book.bid_prices == sorted(book.bids) and book.ask_prices == sorted(book.asks)
        for is_buy, levels in ((True, book.bids), (False, book.asks)):
            for p, level in levels.items():
                assert level, "empty level"
                for oid, o in level.items():
                    assert orders.get(oid) is o
                    assert (o.price, o.is_buy, o.instrument) == (p, is_buy, symbol)
                    assert 0 < o.remaining <= o.quantity
                    seen.add(oid)
        if book.bid_prices and book.ask_prices:
            assert book.bid_prices[-1] < book.ask_prices[0], "crossed book"
    assert seen == set(orders)


# ---------------------------------------------------------------------------- running


def run_stream(config: EngineConfig, stream: list[tuple[Any, ...]], check: bool = True):
    """Apply setup + `stream` to a fresh engine; (commands, results per command, engine)."""
    engine = Engine(config)
    ledger = Ledger()
    commands: list[tuple[int, int, Event]] = []
    results: list[list[Event]] = []
    time = START
    for position, command in enumerate(setup_commands(), start=1):
        commands.append((position, time, command))
    for position, when, command in commands:
        out = engine.apply(position, when, command)
        results.append(out)
        for e in out:
            ledger.record(e)
    for step, spec in stream:
        position = len(commands) + 1
        when = time + step
        time = max(time, when)
        command = resolve(engine, position, when, spec)
        commands.append((position, when, command))
        out = engine.apply(position, when, command)
        results.append(out)
        for e in out:
            ledger.record(e)
        if check:
            if isinstance(command, c.PlaceOrder):
                check_order_outcome(engine, position, command, out)
            check_invariants(engine, ledger)
    return commands, results, engine


def replay(engine: Engine, commands: list[tuple[int, int, Event]]) -> list[list[Event]]:
    return [engine.apply(position, when, command) for position, when, command in commands]


@SETTINGS
@given(config=configs, stream=streams)
def test_invariants_hold_after_every_command(config: EngineConfig, stream: list[Any]) -> None:
    run_stream(config, stream)


@SETTINGS
@given(config=configs, stream=streams, cut=st.floats(0, 1))
def test_determinism_and_snapshot_plus_tail(
    config: EngineConfig, stream: list[Any], cut: float
) -> None:
    commands, results, engine = run_stream(config, stream, check=False)

    fresh = Engine(config)
    assert replay(fresh, commands) == results
    assert fresh.state_hash() == engine.state_hash()

    middle = round(cut * len(commands))
    head = Engine(config)
    replay(head, commands[:middle])
    state = head.state()
    snapshot = head.snapshot()
    digest = head.state_hash()

    in_memory = Engine.from_state(state, config)
    from_bytes = Engine.restore(snapshot, config)
    assert in_memory.state_hash() == digest == from_bytes.state_hash()
    # The original keeps running too, as a runner does after taking a snapshot.
    for restored in (in_memory, from_bytes, head):
        assert replay(restored, commands[middle:]) == results[middle:]
        assert restored.state_hash() == engine.state_hash()
    # The state taken at the midpoint is a value: running on did not change it.
    assert orjson.dumps(state, option=orjson.OPT_SORT_KEYS) == snapshot


def test_streams_exercise_the_engine() -> None:
    """A guard against a generator that only produces rejections."""
    counts: dict[str, int] = defaultdict(int)

    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(stream=streams)
    def collect(stream: list[Any]) -> None:
        _, results, _ = run_stream(EngineConfig(calendar=ALWAYS, block_min_quantity=40), stream)
        for out in results:
            for e in out:
                counts[type(e).__name__] += 1
                if isinstance(e, TradeExecuted):
                    counts["block" if e.aggressor == "block" else "fill"] += 1
                if isinstance(e, OrderCancelled):
                    counts[e.reason] += 1

    collect()
    for kind in (
        "fill",
        "block",
        "OrderExpired",
        "OrderReduced",
        "OrderRepriced",
        "requested",
        "TradingDayClosed",
        "CreditsSurrendered",
        "CreditsRetired",
        "CashWithdrawn",
        # the registry's side
        "ReportSubmitted",
        "ReportVerified",
        "QuotaComputed",
        "PeriodClosed",
        "ObligationCreated",
        "PeriodEnforced",
        "PenaltyCharged",
    ):
        assert counts[kind] > 0, kind
