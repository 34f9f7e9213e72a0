"""Read models on a real store (SQLite and PostgreSQL): they equal the engine's own state,
rebuild to identical tables, and survive a failure mid-batch without gaps or duplicates."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from events import commands as c
from events.base import Event
from infra.sqldb import Cursor
from infra.store import Store, open_store
from projections import all_projections
from projections.balances import Balances, balances_of
from projections.holdings import holdings_of
from projections.market import book, candles, instruments
from projections.orders import order, orders, outcome
from projections.projector import Projector, reshaped, tracking_positions
from projections.surveillance import summary
from scripts.workload import START, SYMBOL, setup_commands, workload
from services.exchange.asof import report
from services.exchange.calendar import ALWAYS, CN_ETS
from services.exchange.config import EngineConfig
from services.exchange.intake import Intake
from services.exchange.runner import EngineRunner

CONFIG = EngineConfig(calendar=ALWAYS)
N = 2_000
DAY = 86_400_000_000
HOUR = 3_600_000_000


def _extras(first_position: int, last_time: int) -> list[tuple[Event, int]]:
    """Commands the workload lacks: reduce, reprice, transfers, surrender, retirement,
    withdrawal, a block trade, and the next day (expiries and the daily close)."""
    t = last_time + 1_000
    commands: list[Event] = [
        c.PlaceOrder(client_order_id="x1", enterprise_id="E0001", instrument=SYMBOL,
                     side="sell", order_type="limit", quantity=500, price=6_100,
                     time_in_force="gtc"),
        c.PlaceOrder(client_order_id="x2", enterprise_id="E0002", instrument=SYMBOL,
                     side="buy", order_type="limit", quantity=400, price=5_900,
                     time_in_force="gtc"),
    ]  # fmt: skip
    sell_id, buy_id = first_position, first_position + 1
    commands += [
        c.ReduceOrder(order_id=sell_id, enterprise_id="E0001", quantity=300),
        c.RepriceOrder(order_id=buy_id, enterprise_id="E0002", price=5_950),
        c.TransferCredits(from_enterprise_id="E0003", to_enterprise_id="E0004",
                          instrument=SYMBOL, quantity=1_234, reason="group transfer"),
        c.SurrenderCredits(enterprise_id="E0005", instrument=SYMBOL, quantity=777,
                           period="2025"),
        c.RetireCredits(enterprise_id="E0006", instrument=SYMBOL, quantity=55,
                        beneficiary="Acme product line", reason="carbon neutral claim"),
        c.WithdrawCash(enterprise_id="E0007", amount=123_456, reference="bank"),
        c.BlockTrade(instrument=SYMBOL, seller_id="E0008", buyer_id="E0009",
                     quantity=100_000, price=6_200),
        c.Tick(),
    ]  # fmt: skip
    times = [t + i for i in range(len(commands) - 1)] + [last_time + DAY]
    return list(zip(commands, times, strict=True))


def _history(store: Store) -> EngineRunner:
    commands = workload(N, enterprises=12)
    commands += _extras(len(commands) + 1, commands[-1][1])
    Intake(store).submit(commands)
    runner = EngineRunner(store, CONFIG, batch=400)
    runner.recover()
    runner.drain()
    return runner


def _checksums(store: Store) -> dict[str, str]:
    found = {}
    for projection in all_projections():
        for table in projection.tables:
            rows = store.sql.query(
                f"SELECT * FROM {table.name} ORDER BY {', '.join(table.column_names)}"
            )
            found[table.name] = hashlib.sha256(
                orjson.dumps([[v if not isinstance(v, bool) else int(v) for v in r] for r in rows])
            ).hexdigest()
    return found


def _assert_matches_engine(store: Store, state: dict[str, Any]) -> None:
    db = store.sql
    for eid, account in state["accounts"].items():
        balances = balances_of(db, eid)
        assert balances is not None, eid
        assert balances["cash"] == account["cash"], eid
        for symbol, credits in account["credits"].items():
            assert balances["credits"][symbol] == {
                "available": credits["available"],
                "held": credits["held"],
            }, (eid, symbol)
            held = sorted(credits["serials_available"] + credits["serials_held"])
            merged: list[list[int]] = []
            for first, last in held:
                if merged and merged[-1][1] + 1 == first:
                    merged[-1][1] = last
                else:
                    merged.append([first, last])
            assert holdings_of(db, eid).get(symbol, []) == merged, (eid, symbol)
    # Open orders and the book they make.
    engine_open = {o["order_id"]: o for o in state["open_orders"]}
    projected = {o["order_id"]: o for o in orders(db, status="open", limit=100_000)}
    assert set(projected) == set(engine_open)
    for order_id, o in engine_open.items():
        assert projected[order_id]["remaining_quantity"] == o["remaining_quantity"]
        assert projected[order_id]["price"] == o["price"]
        assert projected[order_id]["held_cash"] == o["held_cash"]
    levels: dict[tuple[str, int], list[int]] = {}
    for o in engine_open.values():
        if o["instrument"] == SYMBOL:
            level = levels.setdefault((o["side"], o["price"]), [0, 0])
            level[0] += o["remaining_quantity"]
            level[1] += 1
    depth = book(db, SYMBOL, 10_000)
    assert {("buy", p): [q, n] for p, q, n in depth["bids"]} | {
        ("sell", p): [q, n] for p, q, n in depth["asks"]
    } == levels
    # Conservation, straight from the ledger: every asset's postings sum to zero.
    for asset, total in db.query("SELECT asset, SUM(balance) FROM rm_balances GROUP BY asset"):
        assert int(total) == 0, asset


def test_read_models_equal_the_engine_state(store_url: str) -> None:
    with open_store(store_url) as store:
        runner = _history(store)
        projector = Projector(store, all_projections(), batch=700)
        projector.catch_up()
        assert projector.position == store.journal.head()[0]
        _assert_matches_engine(store, report(runner.engine))
        # The daily close happened: a 1d candle equal to the engine's close, and the
        # instrument's previous close moved to it.
        (market,) = instruments(store.sql, 1_000, SYMBOL)
        daily = candles(store.sql, SYMBOL, "1d")
        assert len(daily) == 1 and daily[0]["close"] == market["prev_close"]
        assert market["prev_close"] == runner.engine.instruments[SYMBOL].previous_close
        assert candles(store.sql, SYMBOL, "1m") and candles(store.sql, SYMBOL, "1h")
        # The block trade is on the tape, and moved 100,000 t from E0008 to E0009.
        tape = store.sql.query("SELECT quantity FROM rm_trades WHERE aggressor = 'block'")
        assert tape == [(100_000,)]
        # Every command's outcome is known; a refused one carries its reason.
        (rejected,) = store.sql.query(
            "SELECT cause FROM rm_outcomes WHERE reject_reason IS NOT NULL LIMIT 1"
        )
        refused = outcome(store.sql, rejected[0])
        assert refused is not None and refused["reject_reason"]


def test_live_states_at_several_positions_equal_the_projections(store_url: str) -> None:
    """Projections follow the engine batch by batch: after each, both agree."""
    with open_store(store_url) as store:
        commands = workload(1_200, enterprises=8)
        Intake(store).submit(commands)
        runner = EngineRunner(store, CONFIG, batch=300)
        runner.recover()
        projector = Projector(store, all_projections(), batch=250)
        checked = 0
        while runner.step():
            projector.catch_up()
            _assert_matches_engine(store, report(runner.engine))
            checked += 1
        assert checked >= 4


def test_rebuild_gives_identical_tables_whatever_the_batch_size(store_url: str) -> None:
    with open_store(store_url) as store:
        _history(store)
        projector = Projector(store, all_projections(), batch=5_000)
        projector.catch_up()
        before = _checksums(store)
        # A rebuild's own batches: as small as the live ones, and coalesced (the
        # default, at least REBUILD_BATCH: here the whole history in one).
        for batch, rebuild_batch in ((333, 333), (333, None), (333, 1_234)):
            projector = Projector(store, all_projections(), batch, rebuild_batch=rebuild_batch)
            read = projector.rebuild()
            assert read == store.journal.head()[0]
            assert _checksums(store) == before
            assert set(tracking_positions(store.sql).values()) == {store.journal.head()[0]}
            # Following the journal afterwards goes back to the live batch size.
            assert projector.batch == 333


def test_a_read_model_whose_table_changed_shape_is_rebuilt_on_start(store_url: str) -> None:
    with open_store(store_url) as store:
        _history(store)
        Projector(store, all_projections()).catch_up()
        before = _checksums(store)
        positions = tracking_positions(store.sql)
        # A store projected by an older version: rm_trades without a column added since.
        with store.sql.transaction() as cursor:
            cursor.execute("ALTER TABLE rm_trades DROP COLUMN serials")
            cursor.execute("UPDATE rm_trades SET price = price + 1")  # rows of the old shape
        assert [p.name for p in reshaped(store.sql, all_projections())] == ["market"]
        projector = Projector(store, all_projections())
        assert projector.positions["market"] == 0  # only that one starts again
        assert {n: v for n, v in projector.positions.items() if n != "market"} == {
            n: v for n, v in positions.items() if n != "market"
        }
        projector.catch_up()
        assert _checksums(store) == before
        assert reshaped(store.sql, all_projections()) == []


class _Crashing(Balances):
    """The balances projection, failing inside its third write (a crash mid-batch)."""

    def __init__(self) -> None:
        self.flushes = 0
        super().__init__()

    def flush(self, cursor: Cursor) -> None:
        self.flushes += 1
        super().flush(cursor)  # the rows are written ...
        if self.flushes == 3:
            raise RuntimeError("power cut")  # ... but never committed


def test_a_failure_mid_batch_resumes_without_gaps_or_duplicates(store_url: str) -> None:
    with open_store(store_url) as store:
        _history(store)
        Projector(store, all_projections(), batch=300).catch_up()
        clean = _checksums(store)
        with store.sql.transaction() as cursor:
            for projection in all_projections():
                for table in projection.tables:
                    cursor.execute(f"DELETE FROM {table.name}")
            cursor.execute("DELETE FROM rm_tracking")
        crashing = _Crashing()
        projections = [crashing, *all_projections()[1:]]
        projector = Projector(store, projections, batch=300)
        with pytest.raises(RuntimeError, match="power cut"):
            projector.catch_up()
        # Nothing of the failed batch is visible; every projection stands where it was.
        positions = tracking_positions(store.sql)
        assert len(set(positions.values())) == 1
        # A new projector (the restarted process) picks up and finishes the job.
        Projector(store, all_projections(), batch=300).catch_up()
        assert _checksums(store) == clean


def test_order_queries_show_fills_and_status(store_url: str) -> None:
    with open_store(store_url) as store:
        runner = _history(store)
        Projector(store, all_projections()).catch_up()
        filled = orders(store.sql, status="filled", limit=5)
        assert filled
        one = order(store.sql, filled[0]["order_id"])
        assert one is not None
        assert sum(f["quantity"] for f in one["fills"]) == one["filled_quantity"] == one["quantity"]
        assert {f["counterparty_side"] for f in one["fills"]} <= {"maker", "taker"}
        rejected = orders(store.sql, status="rejected", limit=1)
        assert rejected and rejected[0]["reject_reason"]
        assert (
            runner.engine.next_trade_id - 1
            == store.sql.query("SELECT COUNT(*) FROM rm_trades")[0][0]
        )


def test_the_compliance_year_in_the_read_models(store_url: str) -> None:
    """The registry's year (tests/test_registry_year.py) through the store and the
    projector: compliance, penalties, evaluations and balances as the engine has them."""
    from projections.registry import compliance_of, evaluation_of, periods, registered
    from tests.test_registry_year import CONFIG as YEAR_CONFIG
    from tests.test_registry_year import run_year

    zone = run_year()
    with open_store(store_url) as store:
        Intake(store).submit([(command, time) for _, time, command in zone.log])
        runner = EngineRunner(store, YEAR_CONFIG, batch=50)
        runner.recover()
        runner.drain()
        Projector(store, all_projections(), batch=64).catch_up()
        db = store.sql
        _assert_matches_engine(store, report(runner.engine))
        year = {row["enterprise_id"]: row for eid in ("E1", "E2", "S1", "S2")
                for row in compliance_of(db, eid) if row["period"] == "2025"}  # fmt: skip
        assert (year["E1"]["issued_t"], year["S2"]["issued_t"]) == (33, 1_046)
        assert (year["S1"]["obligation_t"], year["S1"]["status"]) == (652, "settled")
        e2 = year["E2"]
        assert (e2["obligation_t"], e2["surrendered_t"], e2["shortfall_t"]) == (89, 30, 59)
        assert (e2["deficit_t"], e2["status"], e2["penalty_fen"]) == (89, "shortfall", 901_992)
        assert year["E1"]["quota_inputs"] and year["E1"]["method"]
        # Penalties are real cash postings: what E2 paid, at once and later.
        (paid,) = db.query(
            "SELECT SUM(amount) FROM rm_ledger WHERE owner = 'registry' AND bucket = 'penalties'"
        )
        assert int(paid[0]) == runner.engine.penalties_collected == 901_992
        graded = evaluation_of(db, "E1", "2025")
        assert graded is not None and graded["grade"] == "A" and graded["near_zero_carbon"]
        assert {p["period"]: p["status"] for p in periods(db)}["2025"] == "enforced"
        assert set(registered(db)) == {"E1", "E2", "S1", "S2"}
        # The as-of state (API /v1/audit/state, `carbonx replay`) lists the obligations.
        owed = {(o["period"], o["enterprise_id"]): o for o in report(runner.engine)["obligations"]}
        assert (owed[("2025", "S1")]["quantity"], owed[("2025", "S1")]["outstanding"]) == (652, 0)
        assert (owed[("2025", "E2")]["surrendered"], owed[("2025", "E2")]["shortfall"]) == (30, 59)


def _follow_penalty_debts(store: Store, log: list[tuple[int, int, Event]], eid: str) -> list[Any]:
    """Run `log` one command at a time, projecting after each (in batches of 3, with a
    projector that starts from the tables), and
    check that every enterprise's unpaid penalties in rm_compliance add up to the
    engine's debt at each step. Returns the distinct (debt, unpaid by period) of `eid`
    in order."""
    from projections.registry import compliance_of
    from tests.test_registry_year import CONFIG as YEAR_CONFIG

    Intake(store).submit([(command, time) for _, time, command in log])
    runner = EngineRunner(store, YEAR_CONFIG, batch=1)
    runner.recover()
    seen: list[Any] = []
    while runner.step():
        # A new projector each time: its state comes back from the tables (a restart).
        Projector(store, all_projections(), batch=3).catch_up()
        registry = runner.engine.registry
        for who in sorted(registry.enterprises):
            unpaid = {
                row["period"]: row["penalty_unpaid_fen"]
                for row in compliance_of(store.sql, who)
                if row["penalty_fen"]
            }
            assert sum(unpaid.values()) == registry.penalty_debt(who), (who, unpaid)
            if who == eid and (not seen or seen[-1] != (registry.penalty_debt(who), unpaid)):
                seen.append((registry.penalty_debt(who), unpaid))
    # And a rebuild from zero, in any batch size, gives the same tables.
    before = _checksums(store)
    for batch in (1, 7, 5_000):
        Projector(store, all_projections(), batch, rebuild_batch=batch).rebuild()
        assert _checksums(store) == before
    return seen


def test_a_collected_penalty_is_no_longer_unpaid_in_the_read_model(store_url: str) -> None:
    """The registry year: E2 is charged 901,992 fen at the 2025 deadline, pays 350,000
    at once and the 551,992 left from its next deposit (`PenaltyCollected`). The read
    model showed the 551,992 as unpaid for ever (rm_compliance, the compliance API and
    the export's penalties file)."""
    from projections.registry import compliance_of
    from tests.test_registry_year import run_year

    with open_store(store_url) as store:
        seen = _follow_penalty_debts(store, run_year().log, "E2")
        assert seen == [(0, {}), (551_992, {"2025": 551_992}), (0, {"2025": 0})]
        (e2,) = [row for row in compliance_of(store.sql, "E2") if row["period"] == "2025"]
        assert (e2["penalty_fen"], e2["penalty_unpaid_fen"]) == (901_992, 0)


def test_penalty_collections_pay_the_oldest_period_first(store_url: str) -> None:
    """The engine keeps one debt per enterprise; the read model splits each collection
    over the periods, oldest first (whatever order they were enforced in)."""
    from tests.test_registry_year import two_unpaid_penalties

    with open_store(store_url) as store:
        seen = _follow_penalty_debts(store, two_unpaid_penalties().log, "S1")
    assert seen == [
        (0, {}),
        (750_000, {"2025H2": 750_000}),
        (2_250_000, {"2025": 1_500_000, "2025H2": 750_000}),
        (1_250_000, {"2025": 500_000, "2025H2": 750_000}),
        (250_000, {"2025": 0, "2025H2": 250_000}),
        (0, {"2025": 0, "2025H2": 0}),
    ]


def test_the_projector_command_rebuilds_and_catches_up(store_url: str) -> None:
    from click.testing import CliRunner

    from services.cli import main

    with open_store(store_url) as store:
        _history(store)
        Projector(store, all_projections()).catch_up()
        before = _checksums(store)
        head = store.journal.head()[0]
    runner = CliRunner()
    rebuilt = runner.invoke(main, ["projector", "--db", store_url, "--rebuild", "--once"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert f"from {head} journal entries" in rebuilt.output
    with open_store(store_url) as store:
        assert _checksums(store) == before


def test_queued_orders_in_the_read_models_and_in_the_commands_answers(store_url: str) -> None:
    # The workload starts at 10:00 in Beijing on a Tuesday; 22:00 is outside cn-ets's
    # sessions, 09:30 the next morning inside.
    setup = [(command, START + i) for i, command in enumerate(setup_commands(3))]
    evening, morning = START + 12 * HOUR, START + 23 * HOUR + 30 * 60_000_000

    def place(coid: str, eid: str, side: str, qty: int, price: int, tif: str) -> c.PlaceOrder:
        return c.PlaceOrder(client_order_id=coid, enterprise_id=eid, instrument=SYMBOL,
                            side=side, order_type="limit", quantity=qty, price=price,
                            time_in_force=tif)  # fmt: skip

    first = len(setup) + 2  # the first order's id: its intake position
    resting, banded, withdrawn, opening = first, first + 1, first + 2, first + 4
    commands = [
        *setup,
        (c.SetOrderQueuing(enabled=True), evening),
        (place("q1", "E0000", "sell", 100, 6_000, "gtc"), evening + 1),
        (place("q2", "E0001", "buy", 10, 9_000, "gtc"), evening + 2),  # beyond the band
        (place("q3", "E0002", "sell", 5, 6_000, "day"), evening + 3),
        (c.CancelOrder(order_id=withdrawn, enterprise_id="E0002"), evening + 4),
        (place("o1", "E0001", "buy", 40, 6_000, "day"), morning),
    ]
    with open_store(store_url) as store:
        Intake(store).submit(commands)
        runner = EngineRunner(store, EngineConfig(calendar=CN_ETS), batch=3)
        runner.recover()
        runner.drain()
        projector = Projector(store, all_projections(), batch=4)
        projector.catch_up()
        db = store.sql
        assert outcome(db, resting)["result_type"] == "OrderQueued"  # type: ignore[index]
        assert outcome(db, banded)["result_type"] == "OrderQueued"  # type: ignore[index]
        # The order that found the session open is answered by its own results, not by
        # the queued orders placed just before it (one of which was refused).
        opened = outcome(db, opening)
        assert opened is not None
        assert (opened["result_type"], opened["reject_reason"]) == ("OrderAccepted", None)
        states = {o: order(db, o) for o in (resting, banded, withdrawn, opening)}
        assert {o: s["status"] for o, s in states.items() if s} == {
            resting: "partially_filled", banded: "rejected", withdrawn: "cancelled",
            opening: "filled",
        }  # fmt: skip
        assert states[banded]["reject_reason"] == "outside_price_band"  # type: ignore[index]
        assert states[resting]["remaining_quantity"] == 60  # type: ignore[index]
        assert [o["order_id"] for o in orders(db, "E0000", "open")] == [resting]
        # The read models agree with the engine after all of it.
        engine = runner.engine
        assert balances_of(db, "E0001")["cash"] == {  # type: ignore[index]
            "available": engine.accounts["E0001"].cash,
            "held": engine.accounts["E0001"].cash_held,
        }
        assert report(engine)["queued_orders"] == []


def _equal_traders(store: Store, count: int) -> dict[str, Any]:
    """`count` enterprises that each trade 10 t once (pairs of a seller and a buyer)."""
    commands: list[tuple[Event, int]] = [
        (c.ListInstrument(symbol=SYMBOL, vintage=2025, reference_price=5_000, fee_bps=0), START)
    ]
    for i in range(count):
        eid = f"E{i:03d}"
        commands += [
            (c.OpenAccount(enterprise_id=eid), START),
            (c.DepositCash(enterprise_id=eid, amount=10**9), START),
            (c.IssueCredits(enterprise_id=eid, instrument=SYMBOL, quantity=100, reason="x"), START),
        ]
    for i in range(0, count, 2):
        for eid, side in ((f"E{i:03d}", "sell"), (f"E{i + 1:03d}", "buy")):
            commands.append(
                (c.PlaceOrder(client_order_id=side, enterprise_id=eid, instrument=SYMBOL,
                              side=side, order_type="limit", quantity=10, price=5_000,
                              time_in_force="gtc"), START + 1)
            )  # fmt: skip
    Intake(store).submit(commands)
    EngineRunner(store, CONFIG).drain()
    Projector(store, all_projections()).catch_up()
    return summary(store.sql)


def test_surveillance_hhi_is_exact_and_shares_add_up(store_url: str) -> None:
    """The HHI comes from the exact volumes, rounded half up (flooring each trader's term
    gave 120 for 60 equal traders, and 0 from 101 on); shares add up to 10,000 bps."""
    with open_store(store_url) as store:
        found = _equal_traders(store, 60)
    volume = found["volume_by_enterprise"]
    assert len(volume) == 60
    assert found["concentration"]["hhi"] == 167  # 10,000 / 60 = 166.67
    assert sum(v["share_bps"] for v in volume) == 10_000
    # 10,000 / 60 = 166.67: 40 get 167, 20 get 166, the ties going to the lower ids.
    assert [v["share_bps"] for v in volume] == [167] * 40 + [166] * 20
    assert volume[0]["enterprise_id"] == "E000" and volume[-1]["enterprise_id"] == "E059"
    assert found["concentration"]["top_share_bps"] == 167


def test_surveillance_hhi_of_more_than_a_hundred_traders(store_url: str) -> None:
    with open_store(store_url) as store:
        found = _equal_traders(store, 120)
    assert found["concentration"]["hhi"] == 83  # 10,000 / 120 = 83.33
    shares = [v["share_bps"] for v in found["volume_by_enterprise"]]
    assert sum(shares) == 10_000 and shares == [84] * 40 + [83] * 80
