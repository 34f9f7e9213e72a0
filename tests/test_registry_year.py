"""A whole compliance year of the zone, through the engine, with every number by hand.

Four enterprises in two sectors:

====  ============  =========================================  ==========================
id    sector        quota method (2025)                        role in the story
====  ============  =========================================  ==========================
S1    steel         sector benchmark 0.5 t per 10k CNY          deficit, buys, settles
S2    steel         sector benchmark 0.5 t per 10k CNY          surplus, sells
E1    electronics   historical 0.05 t/10k CNY × 0.96            report returned, amended
E2    electronics   grandfathering mean(1000,1200,1100) × 0.98  shortfall at the deadline
====  ============  =========================================  ==========================

Factors (default table): raw coal 1.9003 t/t, natural gas 21.622 t/10^4 Nm3, grid
electricity 0.5703 t/MWh, purchased heat 0.11 t/GJ, diesel 3.0959 t/t, LPG 3.1013 t/t.
Times are Asia/Shanghai; the calendar is `always`; HCC-2025 lists at 5,000 fen, no fee.

Bad input gets its own tests below: each is a clear rejection and leaves the engine's
state hash unchanged (a refused command is sent at the previous command's time, so
that not even the engine's clock moves). The last test runs the same year through the
intake log and the engine runner on SQLite and PostgreSQL, with a snapshot midway.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from engine_dsl import at

from events import commands as c
from events import registry as r
from events.accounts import (
    AccountOpened,
    CashDeposited,
    CashWithdrawn,
    CommandRejected,
    CreditsIssued,
    CreditsRetired,
    CreditsSurrendered,
    EnterpriseStatusChanged,
)
from events.base import Event
from events.codec import decode, frame
from events.exchange import OrderRejected, TradeExecuted
from infra.store import open_store
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine
from services.exchange.intake import FieldError, Intake, InvalidCommand, validate
from services.exchange.runner import EngineRunner
from services.registry.aggregates import aggregate_id

CONFIG = EngineConfig(calendar=ALWAYS)
HCC = "HCC-2025"
CODES = {  # valid unified social credit codes (check characters computed per GB 32100)
    "S1": "91340100MA2N0AAA14",
    "S2": "91340100MA2N0BBB9T",
    "E1": "91340100MA2N0CCC5C",
    "E2": "91340100MA2N0DDD21",
}
STEEL_BENCHMARKS = {
    "output_value": "10000",
    "energy_intensity": "0.3",
    "carbon_intensity": "0.5",
    "pollutants": {"so2": "0.0005", "nox": "0.0005"},
}
ELECTRONICS_BENCHMARKS = {
    "output_value": "40000",
    "energy_intensity": "0.04",
    "carbon_intensity": "0.25",
    "pollutants": {"cod": "0.0001", "nox": "0.00005"},
}


def source(kind: str, name: str, activity: str, unit: str, **override: str) -> dict[str, str]:
    return {"kind": kind, "name": name, "activity": activity, "unit": unit, **override}


class Zone:
    """The engine, a clock and a record of every (position, time, command) sent."""

    def __init__(self) -> None:
        self.engine = Engine(CONFIG)
        self.log: list[tuple[int, int, Event]] = []
        self.results: list[Event] = []
        self.time = 0

    def on(self, day: str, hh_mm: str = "10:00") -> None:
        """Time passes to this local moment (a Tick: the days in between close); the
        next commands follow it a second apart."""
        moment = at(date.fromisoformat(day), hh_mm)
        assert moment > self.time
        self.time = moment - 1_000_000
        self.send(c.Tick())

    def send(self, command: Event, *, same_time: bool = False) -> list[Event]:
        if not same_time:
            self.time += 1_000_000
        position = len(self.log) + 1
        self.log.append((position, self.time, command))
        out = self.engine.apply(position, self.time, command)
        self.results.extend(out)
        check_conservation(self)
        return out

    def ok(self, command: Event) -> list[Event]:
        out = self.send(command)
        bad = [e for e in out if isinstance(e, CommandRejected | OrderRejected)]
        assert not bad, bad
        return out

    def refused(self, command: Event, reason: str) -> CommandRejected:
        """`command` is rejected for `reason` and nothing about the engine changes."""
        before = self.engine.state_hash()
        out = self.send(command, same_time=True)
        assert len(out) == 1 and isinstance(out[0], CommandRejected), out
        assert out[0].reason == reason, out[0]
        assert self.engine.state_hash() == before
        return out[0]

    def of(self, kind: type[Any], out: list[Event] | None = None) -> list[Any]:
        return [e for e in (self.results if out is None else out) if isinstance(e, kind)]

    def cash(self, eid: str) -> tuple[int, int]:
        account = self.engine.accounts[eid]
        return account.cash, account.cash_held

    def credits(self, eid: str, symbol: str = HCC) -> tuple[int, int]:
        account = self.engine.accounts[eid]
        return account.available(symbol), account.credits_held.get(symbol, 0)


def check_conservation(zone: Zone) -> None:
    """Credits issued - surrendered - retired = holdings; cash in - out = balances +
    fees + penalties (DESIGN.md invariant 1, with the penalties the registry takes)."""
    issued: dict[str, int] = defaultdict(int)
    gone: dict[str, int] = defaultdict(int)
    cash_in = cash_out = 0
    for e in zone.results:
        if isinstance(e, CreditsIssued):
            issued[e.instrument] += e.quantity
        elif isinstance(e, CreditsSurrendered | CreditsRetired):
            gone[e.instrument] += e.quantity
        elif isinstance(e, CashDeposited):
            cash_in += e.amount
        elif isinstance(e, CashWithdrawn):
            cash_out += e.amount
    engine = zone.engine
    for symbol in engine.instruments:
        held = sum(
            a.available(symbol) + a.credits_held.get(symbol, 0) for a in engine.accounts.values()
        )
        assert issued[symbol] - gone[symbol] == held, symbol
    balances = sum(a.cash + a.cash_held for a in engine.accounts.values())
    assert cash_in - cash_out == balances + engine.fees_collected + engine.penalties_collected


# ---------------------------------------------------------------------------- the year


def setup_zone(zone: Zone) -> None:
    """Listing, registration and approval, the 2025 period, the sectors' benchmarks."""
    zone.on("2025-01-02")
    zone.ok(c.ListInstrument(symbol=HCC, vintage=2025, reference_price=5_000))
    for eid, sector in (
        ("S1", "steel"),
        ("S2", "steel"),
        ("E1", "electronics"),
        ("E2", "electronics"),
    ):
        (registered,) = zone.ok(
            r.RegisterEnterprise(
                enterprise_id=eid, name=f"{eid} Co.", sector=sector, credit_code=CODES[eid]
            )
        )
        assert registered == r.EnterpriseRegistered(
            enterprise_id=eid,
            name=f"{eid} Co.",
            sector=sector,
            credit_code=CODES[eid],
            status="pending",
        )
        # Approval opens the exchange account and makes the enterprise active.
        assert zone.ok(r.ChangeEnterpriseStatus(enterprise_id=eid, action="approve")) == [
            AccountOpened(enterprise_id=eid),
            EnterpriseStatusChanged(enterprise_id=eid, status="active"),
        ]
    zone.ok(c.DepositCash(enterprise_id="S1", amount=4_000_000))
    zone.ok(c.DepositCash(enterprise_id="E2", amount=500_000))
    # Default deadline: the end of 31 December after the period (Asia/Shanghai).
    deadline = at(date(2027, 1, 1), "00:00")
    assert zone.ok(r.OpenPeriod(period="2025")) == [
        r.PeriodOpened(period="2025", deadline=deadline, instrument=HCC)
    ]
    zone.ok(r.SetEvaluationBenchmarks(sector="steel", benchmarks=STEEL_BENCHMARKS))
    zone.ok(r.SetEvaluationBenchmarks(sector="electronics", benchmarks=ELECTRONICS_BENCHMARKS))


def reports_and_allocations(zone: Zone) -> None:
    zone.on("2026-01-20")
    # S1: 2,000 t raw coal × 1.9003 = 3,800.6 t; 5,000 MWh × 0.5703 = 2,851.5 t;
    #     total 6,652.1 t
    (s1,) = zone.ok(
        r.SubmitReport(
            enterprise_id="S1",
            period="2025",
            sources=(
                source("fuel", "raw_coal", "2000", "t"),
                source("electricity", "grid", "5000", "MWh"),
            ),
            output_value="12000",
            energy_tce="3300",
            pollutants={"so2": "4.8", "nox": "7.2"},
        )
    )
    assert [s["kg_co2e"] for s in s1.sources] == ["3800600", "2851500"]
    assert (s1.report_id, s1.report_version, s1.emissions_t) == ("R-2025-S1", 1, "6652.1")
    # S2: 1,500,000 Nm3 gas = 150 × 10^4 Nm3 × 21.622 = 3,243.3 t; 3,000,000 kWh =
    #     3,000 MWh × 0.5703 = 1,710.9 t; total 4,954.2 t
    (s2,) = zone.ok(
        r.SubmitReport(
            enterprise_id="S2",
            period="2025",
            sources=(
                source("fuel", "natural_gas", "1500000", "Nm3"),
                source("electricity", "grid", "3000000", "kWh"),
            ),
            output_value="12000",
            energy_tce="2700",
            pollutants={"so2": "1.2", "nox": "3"},
        )
    )
    assert s2.emissions_kg == "4954200"
    # E1's first version has a typo: 400 MWh instead of 4,000.
    #     400 × 0.5703 = 228.12 t; 500 GJ heat × 0.11 = 55 t; 10 t diesel × 3.0959 =
    #     30.959 t; total 314.079 t
    e1_sources = [
        source("electricity", "grid", "400", "MWh"),
        source("heat", "purchased_heat", "500", "GJ"),
        source("fuel", "diesel", "10", "t"),
    ]
    e1_figures: dict[str, Any] = {
        "enterprise_id": "E1",
        "period": "2025",
        "output_value": "50000",
        "energy_tce": "1500",
        "pollutants": {"cod": "2.5", "nox": "1"},
    }
    (e1,) = zone.ok(r.SubmitReport(sources=tuple(e1_sources), **e1_figures))
    assert e1.emissions_t == "314.079"
    # E2: 1,500 MWh × 0.5703 = 855.45 t; 20,000 kg LPG = 20 t × 3.1013 = 62.026 t;
    #     process: 100 t × 2.5 (override, with its reason) = 250 t; total 1,167.476 t
    (e2,) = zone.ok(
        r.SubmitReport(
            enterprise_id="E2",
            period="2025",
            sources=(
                source("electricity", "grid", "1500", "MWh"),
                source("fuel", "lpg", "20000", "kg"),
                source(
                    "process",
                    "solvent_incineration",
                    "100",
                    "t",
                    factor="2.5",
                    factor_reason="stack test by the zone lab, 2025-06",
                ),
            ),
            output_value="20000",
            energy_tce="700",
            pollutants={"cod": "4", "nox": "1"},
        )
    )
    assert e2.emissions_kg == "1167476"
    assert e2.sources[2]["factor_source"] == "override"

    # Verification: three accepted, E1 returned, corrected (version 2), accepted.
    zone.on("2026-02-10")
    for eid in ("S1", "S2", "E2"):
        (verified,) = zone.ok(
            r.VerifyReport(report_id=f"R-2025-{eid}", accepted=True, note="ok", verifier="V1")
        )
        assert isinstance(verified, r.ReportVerified)
    (returned,) = zone.ok(
        r.VerifyReport(
            report_id="R-2025-E1",
            accepted=False,
            note="electricity bills show 4,000 MWh",
            verifier="V1",
        )
    )
    assert isinstance(returned, r.ReportReturned) and returned.report_version == 1
    e1_sources[0] = source("electricity", "grid", "4000", "MWh")
    # 4,000 × 0.5703 = 2,281.2 t; + 55 + 30.959 = 2,367.159 t
    (amended,) = zone.ok(r.SubmitReport(sources=tuple(e1_sources), **e1_figures))
    assert (amended.report_version, amended.emissions_t) == (2, "2367.159")
    zone.refused(  # the verifier must look at the version that is there now
        r.VerifyReport(
            report_id="R-2025-E1", accepted=True, note="", verifier="V1", report_version=1
        ),
        "stale_version",
    )
    zone.ok(
        r.VerifyReport(
            report_id="R-2025-E1", accepted=True, note="ok", verifier="V1", report_version=2
        )
    )
    history = zone.engine.registry.reports["R-2025-E1"].versions
    assert [(v["version"], v["status"], v["emissions_kg"]) for v in history] == [
        (1, "returned", "314079"),
        (2, "verified", "2367159"),
    ]

    # Quotas: the steel sector by benchmark; E1 historical, E2 grandfathering.
    zone.ok(
        r.SetAllocation(
            period="2025",
            sector="steel",
            method="benchmark",
            params={"benchmark_t_per_unit": "0.5"},
        )
    )
    zone.ok(
        r.SetAllocation(
            period="2025",
            enterprise_id="E1",
            method="historical",
            params={"base_intensity": "0.05", "decline_factor": "0.96"},
        )
    )
    zone.ok(
        r.SetAllocation(
            period="2025",
            enterprise_id="E2",
            method="grandfathering",
            params={"base_emissions_t": ["1000", "1200", "1100"], "decline_factor": "0.98"},
        )
    )


def close_2025(zone: Zone) -> None:
    zone.on("2026-03-31")
    out = zone.ok(r.ClosePeriod(period="2025"))
    quotas = {q.enterprise_id: q for q in zone.of(r.QuotaComputed, out)}
    # E1: 0.05 × 0.96 × 50,000 = 2,400 t - 2,367.159 t = 32.841 → 33 credits
    # E2: mean(1,000, 1,200, 1,100) × 0.98 = 1,078 t - 1,167.476 t = -89.476 → 89 owed
    # S1: 0.5 × 12,000 = 6,000 t - 6,652.1 t = -652.1 → 652 owed
    # S2: 0.5 × 12,000 = 6,000 t - 4,954.2 t = 1,045.8 → 1,046 credits
    assert {eid: (q.quota_kg, q.emissions_kg, q.balance_t) for eid, q in quotas.items()} == {
        "E1": ("2400000", "2367159", 33),
        "E2": ("1078000", "1167476", -89),
        "S1": ("6000000", "6652100", -652),
        "S2": ("6000000", "4954200", 1_046),
    }
    assert quotas["S1"].inputs == {
        "benchmark_t_per_unit": "0.5",
        "output_value": "12000",
        "quota_t": "6000",
        "formula": "benchmark_t_per_unit × output_value",
        "report_version": 1,
        "scope": "sector",
    }
    assert quotas["E1"].inputs["report_version"] == 2
    # Issued in enterprise order as new serial blocks of HCC-2025 (vintage = the period).
    assert [
        (i.enterprise_id, i.quantity, i.serial_first, i.serial_last)
        for i in zone.of(CreditsIssued, out)
    ] == [
        ("E1", 33, 1, 33),
        ("S2", 1_046, 34, 1_079),
    ]
    deadline = at(date(2027, 1, 1), "00:00")
    assert zone.of(r.ObligationCreated, out) == [
        r.ObligationCreated(period="2025", enterprise_id="E2", quantity=89, deadline=deadline),
        r.ObligationCreated(period="2025", enterprise_id="S1", quantity=652, deadline=deadline),
    ]
    assert out[-1] == r.PeriodClosed(
        period="2025",
        instrument=HCC,
        issued=1_079,
        obligations=741,
        missing_reports=(),
        unallocated=(),
    )


def trade_and_surrender(zone: Zone) -> None:
    # S1 covers its deficit on the exchange: S2 offers 700 @ 51.00, S1 bids for 652.
    zone.on("2026-09-14")
    zone.ok(
        c.PlaceOrder(
            client_order_id="s2-1",
            enterprise_id="S2",
            instrument=HCC,
            side="sell",
            order_type="limit",
            quantity=700,
            price=5_100,
            time_in_force="gtc",
        )
    )
    out = zone.ok(
        c.PlaceOrder(
            client_order_id="s1-1",
            enterprise_id="S1",
            instrument=HCC,
            side="buy",
            order_type="limit",
            quantity=652,
            price=5_100,
        )
    )
    (trade,) = zone.of(TradeExecuted, out)
    # S2's order holds its lowest serials 34..733; S1 gets 34..685
    assert (trade.quantity, trade.price, trade.serials) == (652, 5_100, ((34, 685),))
    # S1 paid 652 × 5,100 = 3,325,200 of its 4,000,000
    assert zone.cash("S1") == (674_800, 0)
    zone.refused(
        c.SurrenderCredits(enterprise_id="S1", instrument=HCC, quantity=653, period="2025"),
        "above_obligation",
    )
    out = zone.ok(
        c.SurrenderCredits(enterprise_id="S1", instrument=HCC, quantity=652, period="2025")
    )
    assert out == [
        CreditsSurrendered(
            enterprise_id="S1", instrument=HCC, quantity=652, serials=((34, 685),), period="2025"
        ),
        r.ObligationReduced(
            period="2025",
            enterprise_id="S1",
            instrument=HCC,
            quantity=652,
            outstanding=0,
            offset=False,
        ),
        r.ObligationSettled(period="2025", enterprise_id="S1"),
    ]

    # E2 buys only 30 of its 89 (from E1 @ 50.00, below S2's 48 t left @ 51.00) and
    # surrenders them.
    zone.on("2026-11-16")
    zone.ok(
        c.PlaceOrder(
            client_order_id="e1-1",
            enterprise_id="E1",
            instrument=HCC,
            side="sell",
            order_type="limit",
            quantity=30,
            price=5_000,
            time_in_force="gtc",
        )
    )
    zone.ok(
        c.PlaceOrder(
            client_order_id="e2-1",
            enterprise_id="E2",
            instrument=HCC,
            side="buy",
            order_type="limit",
            quantity=30,
            price=5_000,
        )
    )
    # E2 paid 30 × 5,000 = 150,000 of its 500,000
    assert zone.cash("E2") == (350_000, 0)
    zone.refused(  # above what E2 holds (and within its obligation)
        c.SurrenderCredits(enterprise_id="E2", instrument=HCC, quantity=31, period="2025"),
        "insufficient_credits",
    )
    (surrendered, reduced) = zone.ok(
        c.SurrenderCredits(enterprise_id="E2", instrument=HCC, quantity=30, period="2025")
    )
    assert surrendered.serials == ((1, 30),)
    assert reduced.outstanding == 59

    zone.on("2026-12-01")
    zone.refused(r.EnforcePeriod(period="2025"), "before_deadline")


def deadline(zone: Zone) -> None:
    zone.on("2027-01-04")
    out = zone.ok(r.EnforcePeriod(period="2025"))
    # The 6-month window is the one before the deadline, 2026-07-01..2026-12-31 (not
    # the one before today): both trading days are in it.
    # VWAP = (652 × 5,100 + 30 × 5,000) / 682 = 3,475,200 / 682 = 5,095.601 → 5,096 fen.
    # E2's shortfall 89 - 30 = 59 t: penalty 3 × 5,096 × 59 = 901,992 fen. E2 has
    # 350,000 available: that is taken, 551,992 stays owed (no negative balance).
    window = "2026-07-01..2026-12-31"
    assert [e for e in out if not isinstance(e, r.PeriodEnforced)] == [
        r.ShortfallRecorded(period="2025", enterprise_id="E2", shortfall=59),
        r.AllocationDeducted(from_period="2025", enterprise_id="E2", quantity=59),
        r.PenaltyCharged(
            period="2025",
            enterprise_id="E2",
            tonnes=59,
            price=5_096,
            multiplier=3,
            amount=901_992,
            paid=350_000,
            unpaid=551_992,
            price_basis=f"vwap {window}: 682 t",
        ),
    ]
    assert out[-1] == r.PeriodEnforced(
        period="2025", price=5_096, price_basis=f"vwap {window}: 682 t", shortfalls=1, forced=False
    )
    assert zone.cash("E2") == (0, 0)
    zone.refused(r.EnforcePeriod(period="2025"), "period_enforced")
    zone.refused(  # the deadline has passed: no more surrenders against 2025
        c.SurrenderCredits(enterprise_id="E1", instrument=HCC, quantity=1, period="2025"),
        "period_enforced",
    )
    # The debt is collected from E2's next deposit; until then no cash leaves E2.
    zone.ok(c.DepositCash(enterprise_id="E2", amount=600_000))
    zone.refused(c.WithdrawCash(enterprise_id="E2", amount=1), "penalty_outstanding")
    assert zone.ok(r.CollectPenalty(enterprise_id="E2")) == [
        r.PenaltyCollected(enterprise_id="E2", amount=551_992, remaining_debt=0)
    ]
    assert zone.cash("E2") == (48_008, 0)  # 600,000 - 551,992
    assert zone.engine.penalties_collected == 901_992


def evaluation(zone: Zone) -> None:
    zone.on("2027-01-10")
    out = zone.ok(r.EvaluatePeriod(period="2025"))
    got = {e.enterprise_id: (e.scores, e.total, e.grade, e.near_zero_carbon) for e in out}
    assert got == {
        # economy (100 + 60)/2 = 80; energy 0.275/0.3 → 66.67; pollution (76 + 44)/2 = 60;
        # carbon 0.554342/0.5 → 51.305 × 0.8 + 20 = 61.04;
        # total (1600 + 1666.75 + 1200 + 2136.4)/100 = 66.03 → C
        "S1": (
            {"economy": "80", "energy": "66.67", "pollution": "60", "carbon": "61.04"},
            "66.03",
            "C",
            False,
        ),
        # energy 0.225/0.3 = 0.75 → 80; so2 r 0.2, nox r 0.5 → 100, 100;
        # carbon 0.41285/0.5 = 0.8257 → 73.944 × 0.8 + 20 = 79.16;
        # total (1600 + 2000 + 2000 + 2770.6)/100 = 83.71 → B
        "S2": (
            {"economy": "80", "energy": "80", "pollution": "100", "carbon": "79.16"},
            "83.71",
            "B",
            False,
        ),
        # level 100 × 50,000/40,000 → 100, growth 60 → 80; energy 0.03/0.04 → 80;
        # cod r 0.5, nox r 0.4 → 100; carbon 0.04734/0.25 → 100, no shortfall → 100;
        # total 91 → A; 0.04734 ≤ 20% × 0.25 = 0.05: a near-zero carbon factory
        "E1": (
            {"economy": "80", "energy": "80", "pollution": "100", "carbon": "100"},
            "91",
            "A",
            True,
        ),
        # level 100 × 20,000/40,000 = 50 → (50 + 60)/2 = 55; energy 0.035/0.04 → 70;
        # cod r 2 → 0, nox r 1 → 60: 30; carbon 100 × 0.8 + 0 (the 2025 shortfall) = 80;
        # total (1100 + 1750 + 600 + 2800)/100 = 62.5 → C
        "E2": (
            {"economy": "55", "energy": "70", "pollution": "30", "carbon": "80"},
            "62.5",
            "C",
            False,
        ),
    }
    e2 = next(e for e in out if e.enterprise_id == "E2")
    assert e2.inputs["carbon"]["shortfall_periods"] == ["2025"]
    assert e2.inputs["source"] == {
        "report_id": "R-2025-E2",
        "report_version": 1,
        "benchmarks_sector": "electronics",
    }


def next_period(zone: Zone) -> None:
    """2026: E2's shortfall comes off its allocation; the others did not report."""
    zone.on("2027-01-11")
    zone.ok(c.ListInstrument(symbol="HCC-2026", vintage=2026, reference_price=5_100))
    zone.ok(r.OpenPeriod(period="2026", deadline=at(date(2027, 12, 31), "23:59")))
    zone.ok(
        r.SubmitReport(
            enterprise_id="E2",
            period="2026",
            sources=(source("electricity", "grid", "1500", "MWh"),),  # 855.45 t
            output_value="22000",
            energy_tce="650",
        )
    )
    zone.ok(r.VerifyReport(report_id="R-2026-E2", accepted=True, note="", verifier="V2"))
    zone.ok(
        r.SetAllocation(
            period="2026",
            enterprise_id="E2",
            method="grandfathering",
            params={"base_emissions_t": ["1000", "1200", "1100"], "decline_factor": "0.98"},
        )
    )
    zone.on("2027-03-31")
    out = zone.ok(r.ClosePeriod(period="2026"))
    (quota,) = zone.of(r.QuotaComputed, out)
    # 1,078 - 855.45 = 222.55 → 223, less the 59 t deducted: 164 credits of HCC-2026
    assert (quota.deduction_t, quota.balance_t) == (59, 164)
    (issued,) = zone.of(CreditsIssued, out)
    assert (issued.instrument, issued.quantity, issued.serial_first) == ("HCC-2026", 164, 1)
    assert out[-1].missing_reports == ("E1", "S1", "S2")
    assert zone.engine.registry.enterprises["E2"].pending_deductions == []


def run_year() -> Zone:
    zone = Zone()
    setup_zone(zone)
    reports_and_allocations(zone)
    close_2025(zone)
    trade_and_surrender(zone)
    deadline(zone)
    evaluation(zone)
    # A voluntary retirement: S2 names the beneficiary; its 48 t still offered are held.
    zone.on("2027-01-10", "11:00")
    assert zone.credits("S2") == (346, 48)  # 1,046 - 700 offered; 700 - 652 sold = 48
    zone.refused(
        c.RetireCredits(
            enterprise_id="S2", instrument=HCC, quantity=347, beneficiary="Expo", reason="x"
        ),
        "insufficient_credits",
    )
    (retired,) = zone.ok(
        c.RetireCredits(
            enterprise_id="S2",
            instrument=HCC,
            quantity=10,
            beneficiary="Expo 2027",
            reason="carbon-neutral event",
        )
    )
    assert retired.serials == ((734, 743),)
    next_period(zone)
    return zone


def test_a_compliance_year() -> None:
    zone = run_year()
    check_conservation(zone)
    # Credits: 1,079 issued - 682 surrendered - 10 retired = 387 = E1 3 + S2 (336 + 48)
    assert (zone.credits("E1"), zone.credits("S1"), zone.credits("E2"), zone.credits("S2")) == (
        (3, 0),
        (0, 0),
        (0, 0),
        (336, 48),
    )
    # Every result survives the codec unchanged (decimals as strings, lists in dicts).
    for position, event in enumerate(zone.results, start=1):
        assert decode(frame(event, 0).body(position)).event == event
    # The state restores exactly from its snapshot bytes, registry included.
    snapshot = zone.engine.snapshot()
    restored = Engine.restore(snapshot, CONFIG)
    assert restored.state_hash() == zone.engine.state_hash()
    assert restored.state() == orjson.loads(snapshot)
    # Replaying the same commands on a fresh engine gives the same results and state.
    fresh = Engine(CONFIG)
    replayed = [e for p, t, cmd in zone.log for e in fresh.apply(p, t, cmd)]
    assert replayed == zone.results
    assert fresh.state_hash() == zone.engine.state_hash()


def test_the_registry_state_is_plain_canonical_data() -> None:
    zone = run_year()
    state = zone.engine.state()["registry"]
    # orjson refuses anything but plain data; sorted keys make the bytes canonical.
    assert orjson.loads(orjson.dumps(state, option=orjson.OPT_SORT_KEYS)) == state
    e2 = state["enterprises"]["E2"]
    # [id, version, created, modified]: uuid5 of the business key, command times
    assert e2["_meta"][0] == str(aggregate_id("enterprise", "E2"))
    # registered 8 s after 10:00 (after the listing and three registrations + approvals)
    assert e2["_meta"][2] == at(date(2025, 1, 2), "10:00") + 8_000_000
    assert e2["status"] == "active" and e2["penalty_debt"] == 0
    period = state["periods"]["2025"]
    assert period["status"] == "enforced"
    assert period["obligations"]["E2"] == {
        "quantity": 89,
        "surrendered": 30,
        "offset_surrendered": 0,
        "shortfall": 59,
    }


# ---------------------------------------------------------------------------- bad input


def started() -> Zone:
    zone = Zone()
    setup_zone(zone)
    return zone


def test_wrong_credit_code() -> None:
    zone = started()
    bad = r.RegisterEnterprise(
        enterprise_id="X", name="X Co.", sector="steel", credit_code="91340100MA2N0AAA15"
    )
    refusal = zone.refused(bad, "invalid_credit_code")
    assert refusal.detail == "check character is '5', expected '4'"
    assert validate(bad) == [FieldError("credit_code", "check character is '5', expected '4'")]
    zone.refused(
        r.RegisterEnterprise(
            enterprise_id="X", name="X Co.", sector="steel", credit_code=CODES["S1"]
        ),
        "duplicate_credit_code",
    )


def test_negative_activity_and_unknown_fuel() -> None:
    zone = started()
    zone.on("2025-03-01")
    negative = r.SubmitReport(
        enterprise_id="S1",
        period="2025",
        sources=(source("fuel", "raw_coal", "-10", "t"),),
        output_value="1",
        energy_tce="1",
    )
    refusal = zone.refused(negative, "invalid_report")
    assert refusal.detail == "sources[0].activity: must not be negative"
    assert validate(negative) == [FieldError("sources[0].activity", "must not be negative")]
    unknown = r.SubmitReport(
        enterprise_id="S1",
        period="2025",
        sources=(source("fuel", "bagasse", "10", "t"),),
        output_value="1",
        energy_tce="1",
    )
    refusal = zone.refused(unknown, "invalid_report")
    assert "no default factor for fuel 'bagasse'" in refusal.detail
    # With a factor and a reason, the same fuel is accepted.
    zone.ok(
        r.SubmitReport(
            enterprise_id="S1",
            period="2025",
            sources=(source("fuel", "bagasse", "10", "t", factor="0.1", factor_reason="lab"),),
            output_value="1",
            energy_tce="1",
        )
    )


def test_report_for_a_closed_period_and_closing_twice() -> None:
    zone = run_year()
    zone.refused(
        r.SubmitReport(
            enterprise_id="E1",
            period="2025",
            sources=(source("electricity", "grid", "1", "MWh"),),
            output_value="1",
            energy_tce="1",
        ),
        "period_closed",
    )
    zone.refused(r.ClosePeriod(period="2025"), "period_closed")
    zone.refused(r.ClosePeriod(period="2030"), "unknown_period")
    zone.refused(
        r.SetAllocation(
            period="2025", sector="steel", method="benchmark", params={"benchmark_t_per_unit": "1"}
        ),
        "period_closed",
    )


def test_surrender_above_holdings_and_retirement_of_held_credits() -> None:
    zone = Zone()
    setup_zone(zone)
    reports_and_allocations(zone)
    close_2025(zone)
    zone.on("2026-04-01")
    # S1 owes 652 but holds nothing.
    zone.refused(
        c.SurrenderCredits(enterprise_id="S1", instrument=HCC, quantity=10, period="2025"),
        "insufficient_credits",
    )
    # S2 has no obligation to surrender against.
    zone.refused(
        c.SurrenderCredits(enterprise_id="S2", instrument=HCC, quantity=10, period="2025"),
        "no_obligation",
    )
    # S2 offers all 1,046: none is available to retire while the order holds them.
    zone.ok(
        c.PlaceOrder(
            client_order_id="o",
            enterprise_id="S2",
            instrument=HCC,
            side="sell",
            order_type="limit",
            quantity=1_046,
            price=5_000,
            time_in_force="gtc",
        )
    )
    zone.refused(
        c.RetireCredits(
            enterprise_id="S2", instrument=HCC, quantity=1, beneficiary="b", reason="r"
        ),
        "insufficient_credits",
    )


def test_absurd_figures_are_refused_at_close_not_fatal() -> None:
    """The largest accepted figures multiply into more tonnes than any int64 serial or
    penalty could hold: the close is refused, and the engine carries on."""
    zone = started()
    zone.on("2026-01-05")
    huge = "9999999999999999"
    zone.ok(
        r.SubmitReport(
            enterprise_id="S1",
            period="2025",
            sources=(source("process", "x", huge, "t", factor=huge, factor_reason="test"),),
            output_value="1",
            energy_tce="1",
        )
    )
    zone.ok(r.VerifyReport(report_id="R-2025-S1", accepted=True, note="", verifier="v"))
    zone.ok(
        r.SetAllocation(
            period="2025", sector="steel", method="benchmark", params={"benchmark_t_per_unit": "1"}
        )
    )
    zone.refused(r.ClosePeriod(period="2025"), "out_of_range")
    zone.ok(r.SetEvaluationBenchmarks(sector="steel", benchmarks=STEEL_BENCHMARKS))


def test_lifecycle_refusals() -> None:
    zone = started()
    zone.on("2025-02-01")
    zone.refused(
        r.ChangeEnterpriseStatus(enterprise_id="S1", action="approve"), "invalid_transition"
    )
    zone.refused(
        r.ChangeEnterpriseStatus(enterprise_id="S1", action="reinstate"), "invalid_transition"
    )
    zone.refused(
        r.ChangeEnterpriseStatus(enterprise_id="ZZ", action="suspend"), "unknown_enterprise"
    )
    zone.refused(r.OpenPeriod(period="2025", deadline=1), "period_exists")
    zone.refused(r.EnforcePeriod(period="2025", force=True), "period_open")
    zone.refused(
        r.VerifyReport(report_id="R-2025-S1", accepted=True, note="", verifier="v"),
        "unknown_report",
    )
    # A suspended enterprise cannot trade; reinstated, it can again.
    zone.ok(r.ChangeEnterpriseStatus(enterprise_id="S1", action="suspend", reason="audit"))
    (rejected,) = zone.send(
        c.PlaceOrder(
            client_order_id="x",
            enterprise_id="S1",
            instrument=HCC,
            side="buy",
            order_type="limit",
            quantity=1,
            price=5_000,
        )
    )
    assert isinstance(rejected, OrderRejected) and rejected.reason == "enterprise_suspended"
    zone.ok(r.ChangeEnterpriseStatus(enterprise_id="S1", action="reinstate"))
    zone.ok(
        c.PlaceOrder(
            client_order_id="y",
            enterprise_id="S1",
            instrument=HCC,
            side="buy",
            order_type="limit",
            quantity=1,
            price=5_000,
        )
    )


def test_a_pending_enterprise_cannot_report_and_is_not_closed() -> None:
    zone = started()
    zone.on("2025-03-01")
    zone.ok(
        r.RegisterEnterprise(
            enterprise_id="P", name="P Co.", sector="steel", credit_code="91340100MA2N0EEE1U"
        )
    )
    zone.refused(
        r.SubmitReport(
            enterprise_id="P",
            period="2025",
            sources=(source("fuel", "coke", "1", "t"),),
            output_value="1",
            energy_tce="1",
        ),
        "enterprise_not_approved",
    )
    out = zone.ok(r.ClosePeriod(period="2025"))
    # approved enterprises without a verified report are listed; the pending one is not
    assert out == [
        r.PeriodClosed(
            period="2025",
            instrument=HCC,
            issued=0,
            obligations=0,
            missing_reports=("E1", "E2", "S1", "S2"),
            unallocated=(),
        )
    ]


def test_close_refuses_without_an_instrument_of_the_periods_vintage() -> None:
    zone = started()
    zone.on("2026-02-01")
    zone.ok(r.OpenPeriod(period="2026", deadline=1, instrument=HCC))  # vintage 2025: wrong
    zone.ok(r.OpenPeriod(period="2027", deadline=1))  # HCC-2027, not listed
    for period in ("2026", "2027"):
        zone.ok(
            r.SubmitReport(
                enterprise_id="E1",
                period=period,
                sources=(source("electricity", "grid", "1", "MWh"),),
                output_value="1",
                energy_tce="1",
            )
        )
        zone.ok(r.VerifyReport(report_id=f"R-{period}-E1", accepted=True, note="", verifier="v"))
        zone.ok(  # 10 t quota, 0.5703 t emitted: a 9 t surplus to issue
            r.SetAllocation(
                period=period,
                enterprise_id="E1",
                method="benchmark",
                params={"benchmark_t_per_unit": "10"},
            )
        )
    zone.refused(r.ClosePeriod(period="2026"), "vintage_mismatch")
    zone.refused(r.ClosePeriod(period="2027"), "unknown_instrument")
    zone.ok(c.ListInstrument(symbol="HCC-2027", vintage=2027, reference_price=5_000))
    out = zone.ok(r.ClosePeriod(period="2027"))
    assert zone.of(CreditsIssued, out)[0].quantity == 9


def test_offsets_cover_at_most_five_percent() -> None:
    zone = Zone()
    setup_zone(zone)
    reports_and_allocations(zone)
    close_2025(zone)
    zone.on("2026-04-01")
    zone.ok(c.ListInstrument(symbol="CCER-2024", vintage=2024, reference_price=3_000))
    zone.ok(r.SetOffsetInstrument(instrument="CCER-2024", offset=True))
    zone.ok(
        c.IssueCredits(enterprise_id="S1", instrument="CCER-2024", quantity=100, reason="offset")
    )
    # S1 owes 652: 5% is 32.6 → at most 32 t of offsets
    zone.refused(
        c.SurrenderCredits(enterprise_id="S1", instrument="CCER-2024", quantity=33, period="2025"),
        "offset_cap",
    )
    (_, reduced) = zone.ok(
        c.SurrenderCredits(enterprise_id="S1", instrument="CCER-2024", quantity=32, period="2025")
    )
    assert (reduced.offset, reduced.outstanding) == (True, 620)
    zone.refused(
        c.SurrenderCredits(enterprise_id="S1", instrument="CCER-2024", quantity=1, period="2025"),
        "offset_cap",
    )
    # Later vintages cannot pay for an earlier period.
    zone.ok(c.ListInstrument(symbol="HCC-2026", vintage=2026, reference_price=5_000))
    zone.ok(c.IssueCredits(enterprise_id="S1", instrument="HCC-2026", quantity=5, reason="x"))
    zone.refused(
        c.SurrenderCredits(enterprise_id="S1", instrument="HCC-2026", quantity=5, period="2025"),
        "vintage_not_eligible",
    )


def test_intake_refuses_bad_registry_commands_with_field_errors() -> None:
    assert validate(r.OpenPeriod(period="25-26", deadline=-1)) == [
        FieldError(
            "period", "must be a year with an optional suffix of letters and digits, e.g. 2025"
        ),
        FieldError("deadline", "must be µs since the epoch, or 0 (default)"),
    ]
    assert validate(
        r.SetAllocation(
            period="2025",
            method="benchmark",
            params={"benchmark_t_per_unit": "-1"},
            enterprise_id="A",
            sector="s",
        )
    ) == [
        FieldError("enterprise_id", "name either an enterprise or a sector"),
        FieldError("params.benchmark_t_per_unit", "must not be negative"),
    ]
    assert validate(r.ChangeEnterpriseStatus(enterprise_id="A", action="delete")) == [
        FieldError("action", "must be one of approve, suspend, reinstate")
    ]
    assert validate(r.EvaluatePeriod(period="2025", weights={"economy": "100"})) != []
    assert (
        validate(c.SurrenderCredits(enterprise_id="A", instrument=HCC, quantity=1, period="2025"))
        == []
    )


# ---------------------------------------------------------------------------- amendments


def kiln(tonnes: str) -> dict[str, str]:
    """A process source of exactly `tonnes` t CO2e (factor 1, with its reason)."""
    return source("process", "kiln", tonnes, "t", factor="1", factor_reason="stack test")


def report_s1(zone: Zone, tonnes: str) -> r.ReportSubmitted:
    (submitted,) = zone.ok(
        r.SubmitReport(
            enterprise_id="S1",
            period="2025",
            sources=(kiln(tonnes),),
            output_value="12000",
            energy_tce="3300",
        )
    )
    assert isinstance(submitted, r.ReportSubmitted)
    return submitted


def verified_deficit(emissions: str = "1000", credits: int = 0) -> Zone:
    """Given: S1's report of `emissions` t is verified; its quota is 900 t
    (grandfathering mean(900) × 1); S1 holds `credits` t of HCC-2025. The other three
    enterprises never report."""
    zone = started()
    zone.on("2026-01-20")
    report_s1(zone, emissions)
    zone.ok(r.VerifyReport(report_id="R-2025-S1", accepted=True, note="ok", verifier="V1"))
    zone.ok(
        r.SetAllocation(
            period="2025",
            enterprise_id="S1",
            method="grandfathering",
            params={"base_emissions_t": ["900"], "decline_factor": "1"},
        )
    )
    if credits:
        zone.ok(c.IssueCredits(enterprise_id="S1", instrument=HCC, quantity=credits, reason="t"))
    return zone


def close(zone: Zone) -> list[Event]:
    zone.on("2026-03-31")
    return zone.ok(r.ClosePeriod(period="2025"))


def test_an_unverified_amendment_does_not_erase_a_verified_deficit() -> None:
    """RULES.md: only verified emissions count, and a deficit becomes an obligation.
    An amendment waiting for verification at the close must not make S1 a missing
    report (no obligation, and unverifiable once the period is closed)."""
    # given: 1,000 t verified against a 900 t quota: 100 t owed
    zone = verified_deficit("1000")
    # when: S1 amends its report (the same figures) just before the close
    assert report_s1(zone, "1000").report_version == 2
    out = close(zone)
    # then: the close uses verified version 1, and the deficit is an obligation
    (quota,) = zone.of(r.QuotaComputed, out)
    assert (quota.enterprise_id, quota.emissions_kg, quota.balance_t) == ("S1", "1000000", -100)
    assert quota.inputs["report_version"] == 1
    assert zone.of(r.ObligationCreated, out) == [
        r.ObligationCreated(
            period="2025", enterprise_id="S1", quantity=100, deadline=at(date(2027, 1, 1), "00:00")
        )
    ]
    assert out[-1] == r.PeriodClosed(
        period="2025",
        instrument=HCC,
        issued=0,
        obligations=100,
        missing_reports=("E1", "E2", "S2"),
        unallocated=(),
    )
    # and the amendment stays unverified: the period is closed
    zone.refused(
        r.VerifyReport(report_id="R-2025-S1", accepted=True, note="late", verifier="V1"),
        "period_closed",
    )
    # and at the deadline the 100 t are a shortfall
    zone.on("2027-01-04")
    enforced = zone.ok(r.EnforcePeriod(period="2025"))
    assert zone.of(r.ShortfallRecorded, enforced) == [
        r.ShortfallRecorded(period="2025", enterprise_id="S1", shortfall=100)
    ]


def test_only_a_verified_amendment_replaces_the_verified_figures() -> None:
    """An amendment with lower emissions counts once verified, not before; a returned
    amendment leaves the verified figures standing."""
    # given/when: an unverified amendment claims 500 t (a 400 t surplus)
    pending = verified_deficit("1000")
    report_s1(pending, "500")
    # then: the verified 1,000 t count: 100 t owed, nothing issued
    (quota,) = pending.of(r.QuotaComputed, close(pending))
    assert (quota.emissions_kg, quota.balance_t, quota.inputs["report_version"]) == (
        "1000000",
        -100,
        1,
    )
    # given/when: the verifier returns the amendment
    returned = verified_deficit("1000")
    report_s1(returned, "500")
    returned.ok(r.VerifyReport(report_id="R-2025-S1", accepted=False, note="no", verifier="V1"))
    # then: version 1 still counts
    (quota,) = returned.of(r.QuotaComputed, close(returned))
    assert (quota.balance_t, quota.inputs["report_version"]) == (-100, 1)
    # given/when: the verifier accepts the amendment before the close
    accepted = verified_deficit("1000")
    report_s1(accepted, "500")
    accepted.ok(r.VerifyReport(report_id="R-2025-S1", accepted=True, note="ok", verifier="V1"))
    out = close(accepted)
    # then: version 2 counts: 900 - 500 = 400 t issued
    (quota,) = accepted.of(r.QuotaComputed, out)
    assert (quota.emissions_kg, quota.balance_t, quota.inputs["report_version"]) == (
        "500000",
        400,
        2,
    )
    assert accepted.of(CreditsIssued, out)[0].quantity == 400


def test_a_report_never_verified_is_still_missing_at_the_close() -> None:
    """No verified version at all: the enterprise is listed as missing, as before."""
    # given: S1 submitted and was returned, then amended; nothing was ever verified
    zone = started()
    zone.on("2026-01-20")
    report_s1(zone, "1000")
    zone.ok(r.VerifyReport(report_id="R-2025-S1", accepted=False, note="no", verifier="V1"))
    report_s1(zone, "1000")
    # when: the period closes
    out = close(zone)
    # then: S1 is a missing report; no quota, no obligation
    assert out == [
        r.PeriodClosed(
            period="2025",
            instrument=HCC,
            issued=0,
            obligations=0,
            missing_reports=("E1", "E2", "S1", "S2"),
            unallocated=(),
        )
    ]


# ---------------------------------------------------------------------------- deadline


def test_surrenders_are_refused_from_the_deadline_on() -> None:
    """RULES.md: an obligation is to be surrendered by the deadline (default: the end of
    31 December after the period); the shortfall at the deadline is what is penalised."""
    # given: S1 owes 100 t, holds 100 t, and surrenders 40 on the last day
    zone = verified_deficit("1000", credits=100)
    close(zone)
    zone.on("2026-12-31", "23:59:58")  # the surrender is sent a second later: 23:59:59
    zone.ok(c.SurrenderCredits(enterprise_id="S1", instrument=HCC, quantity=40, period="2025"))
    # when: S1 surrenders the rest at the deadline (00:00 on 1 January), or after it
    zone.on("2027-01-01", "00:00")
    on_time = c.SurrenderCredits(enterprise_id="S1", instrument=HCC, quantity=60, period="2025")
    refusal = zone.refused(on_time, "past_deadline")
    zone.on("2027-01-10")
    zone.refused(on_time, "past_deadline")
    # then: nothing left S1, and the deadline's 60 t shortfall is penalised
    assert refusal.detail == f"the deadline was {at(date(2027, 1, 1), '00:00')}"
    assert zone.credits("S1") == (60, 0)
    zone.on("2027-01-11")
    out = zone.ok(r.EnforcePeriod(period="2025"))
    (penalty,) = zone.of(r.PenaltyCharged, out)
    # no trade ever: the reference price 5,000; 3 × 5,000 × 60 = 900,000, paid from
    # S1's 4,000,000
    assert (penalty.tonnes, penalty.price, penalty.amount, penalty.paid) == (
        60,
        5_000,
        900_000,
        900_000,
    )
    assert zone.engine.registry.enterprises["S1"].shortfall_periods == ["2025"]


def test_a_period_closed_late_can_be_met_once_its_deadline_moves() -> None:
    """A period closed at or after its deadline has obligations due at once: no
    surrender counts until the regulator moves the deadline (SetPeriodDeadline), which
    is then how they can still be met. (The close itself is accepted, as it always
    was: journals that hold one must re-execute to what they say.)"""
    # given: S1's 100 t deficit for 2025, still open at its deadline (2027-01-01 00:00)
    zone = verified_deficit("1000", credits=100)
    deadline = at(date(2027, 1, 1), "00:00")
    zone.on("2027-01-01", "00:00")
    # when: the regulator closes it now
    (obligation,) = zone.of(r.ObligationCreated, zone.ok(r.ClosePeriod(period="2025")))
    # then: the obligation is due already, and a surrender is refused
    assert (obligation.quantity, obligation.deadline) == (100, deadline)
    surrender = c.SurrenderCredits(enterprise_id="S1", instrument=HCC, quantity=60, period="2025")
    zone.refused(surrender, "past_deadline")
    # bad moves of the deadline are refused and change nothing
    zone.refused(r.SetPeriodDeadline(period="2025", deadline=zone.time), "invalid_deadline")
    zone.refused(r.SetPeriodDeadline(period="2099", deadline=deadline * 2), "unknown_period")
    assert validate(r.SetPeriodDeadline(period="2025", deadline=0)) == [
        FieldError("deadline", "must be µs since the epoch")
    ]
    # when: the deadline moves to 31 March 2027
    extended = at(date(2027, 3, 31), "00:00")
    out = zone.ok(r.SetPeriodDeadline(period="2025", deadline=extended))
    assert out == [r.PeriodDeadlineSet(period="2025", deadline=extended, previous=deadline)]
    # then: surrenders count until the new deadline, and the rest is a shortfall there
    zone.on("2027-03-30")
    zone.ok(surrender)
    zone.on("2027-03-31", "00:00")
    late = c.SurrenderCredits(enterprise_id="S1", instrument=HCC, quantity=40, period="2025")
    zone.refused(late, "past_deadline")
    (shortfall,) = zone.of(r.ShortfallRecorded, zone.ok(r.EnforcePeriod(period="2025")))
    assert shortfall.shortfall == 40
    # and an enforced period's deadline is history
    zone.refused(
        r.SetPeriodDeadline(period="2025", deadline=at(date(2027, 6, 30), "00:00")),
        "period_enforced",
    )


def test_enforcement_waits_for_a_moved_deadline() -> None:
    """Moving the deadline moves enforcement with it: before the new deadline,
    enforcing (without force) is refused, and a surrender still counts."""
    # given: S1 owes 100 t, holds 100 t; the deadline moves from 2027-01-01 to 2027-02-01
    zone = verified_deficit("1000", credits=100)
    close(zone)
    moved = at(date(2027, 2, 1), "00:00")
    zone.ok(r.SetPeriodDeadline(period="2025", deadline=moved))
    # when: the old deadline passes
    zone.on("2027-01-15")
    # then: enforcement is early, and S1 may still surrender
    zone.refused(r.EnforcePeriod(period="2025"), "before_deadline")
    out = zone.ok(
        c.SurrenderCredits(enterprise_id="S1", instrument=HCC, quantity=100, period="2025")
    )
    assert zone.of(r.ObligationSettled, out) == [
        r.ObligationSettled(period="2025", enterprise_id="S1")
    ]
    zone.on("2027-02-01", "00:01")
    (enforced,) = zone.of(r.PeriodEnforced, zone.ok(r.EnforcePeriod(period="2025")))
    assert enforced.shortfalls == 0


#: (local time, price) of 100 t trades of HCC-2025 from E1 to S2: two in the six months
#: before the 2025 deadline (2027-01-01 00:00), two after it; the last one comes 200
#: days after 2027-01-11, when daily prices that old are normally no longer kept.
TRADES = (
    ("2026-07-15 10:00", 5_500),
    ("2026-12-01 10:00", 5_000),
    ("2027-01-01 10:00", 4_600),
    ("2027-07-30 10:00", 4_700),
)


def trade_until(zone: Zone, until: str) -> None:
    """Given: the TRADES before local time `until` (E1 sells, S2 buys)."""
    zone.ok(c.DepositCash(enterprise_id="S2", amount=100_000_000))
    zone.ok(c.IssueCredits(enterprise_id="E1", instrument=HCC, quantity=1_000, reason="t"))
    for moment, price in TRADES:
        if moment >= until:
            break
        zone.on(*moment.split())
        for who, side in (("E1", "sell"), ("S2", "buy")):
            zone.ok(
                c.PlaceOrder(
                    client_order_id=f"{who}-{moment}",
                    enterprise_id=who,
                    instrument=HCC,
                    side=side,
                    order_type="limit",
                    quantity=100,
                    price=price,
                )
            )


def enforced_on(moment: str, *, force: bool = False) -> tuple[Zone, list[Event]]:
    """S1 owes 100 t for 2025 and surrenders nothing; the regulator enforces at
    `moment` (local), after the TRADES before it."""
    zone = verified_deficit("1000")
    close(zone)
    trade_until(zone, moment)
    zone.on(*moment.split())
    return zone, zone.ok(r.EnforcePeriod(period="2025", force=force))


def test_the_penalty_price_is_the_six_months_before_the_deadline() -> None:
    """RULES.md: the shortfall at the deadline pays 3 × the average price of the last 6
    months. The window ends with the deadline, so the penalty does not depend on when
    the regulator enforces: at the deadline, three weeks or seven months later (when
    the engine would otherwise have dropped the daily prices of 2026)."""
    penalties = set()
    for moment in ("2027-01-01 00:00", "2027-01-20 10:00", "2027-08-02 10:00"):
        # given/when
        zone, out = enforced_on(moment)
        # then: always the window 2026-07-01..2026-12-31, trades after it left out:
        # (100 × 5,500 + 100 × 5,000) / 200 = 5,250; 3 × 5,250 × 100 = 1,575,000 fen,
        # paid from S1's 4,000,000
        (penalty,) = zone.of(r.PenaltyCharged, out)
        penalties.add((penalty.price, penalty.price_basis, penalty.amount, penalty.paid))
        assert out[-1] == r.PeriodEnforced(
            period="2025",
            price=5_250,
            price_basis="vwap 2026-07-01..2026-12-31: 200 t",
            shortfalls=1,
            forced=False,
        )
    assert penalties == {(5_250, "vwap 2026-07-01..2026-12-31: 200 t", 1_575_000, 1_575_000)}
    assert zone.cash("S1") == (4_000_000 - 1_575_000, 0)
    # and once the period is enforced, old daily prices are dropped again (HISTORY_DAYS)
    zone.ok(c.IssueCredits(enterprise_id="E1", instrument=HCC, quantity=1, reason="t"))
    for who, side in (("E1", "sell"), ("S2", "buy")):
        zone.ok(
            c.PlaceOrder(
                client_order_id=f"{who}-last",
                enterprise_id=who,
                instrument=HCC,
                side=side,
                order_type="limit",
                quantity=1,
                price=4_700,
            )
        )
    zone.on("2027-08-03")
    assert [day for day, *_ in zone.engine.state()["instruments"][HCC]["history"]] == [
        (date(2027, 7, 30) - date(1970, 1, 1)).days,
        (date(2027, 8, 2) - date(1970, 1, 1)).days,
    ]


def test_a_forced_enforcement_averages_the_six_months_before_it() -> None:
    """Before the deadline (`force`), there is no deadline window yet: the six months up
    to the enforcement's day count, as the latest prices there are."""
    # given: the trade of 2026-07-15 only; when: enforced by force on 2026-10-01
    zone, out = enforced_on("2026-10-01 10:00", force=True)
    # then: 3 × 5,500 × 100
    assert out[-1] == r.PeriodEnforced(
        period="2025",
        price=5_500,
        price_basis="vwap 2026-04-02..2026-10-01: 100 t",
        shortfalls=1,
        forced=True,
    )
    assert zone.of(r.PenaltyCharged, out)[0].amount == 1_650_000


def two_unpaid_penalties() -> Zone:
    """S1 owes penalties for two periods, 2025 (100 t short) and 2025H2 (50 t short),
    with no cash to pay them at the deadline, and pays its debt in three collections.

    The later period is enforced first. The engine keeps one debt per enterprise and
    does not say which period a collection pays; the read model pays the oldest period
    first (tests/test_projections.py)."""
    zone = verified_deficit("1000")  # 2025: 1,000 t verified against 900 t
    zone.ok(r.OpenPeriod(period="2025H2", instrument=HCC))
    zone.ok(
        r.SubmitReport(
            enterprise_id="S1",
            period="2025H2",
            sources=(kiln("950"),),
            output_value="12000",
            energy_tce="3300",
        )
    )
    zone.ok(r.VerifyReport(report_id="R-2025H2-S1", accepted=True, note="ok", verifier="V1"))
    zone.ok(
        r.SetAllocation(
            period="2025H2",
            enterprise_id="S1",
            method="grandfathering",
            params={"base_emissions_t": ["900"], "decline_factor": "1"},
        )
    )
    close(zone)
    zone.ok(r.ClosePeriod(period="2025H2"))
    zone.ok(c.WithdrawCash(enterprise_id="S1", amount=4_000_000))  # all of S1's cash
    zone.on("2027-01-11")
    # No trade ever: the reference price 5,000. 3 × 5,000 × 50 = 750,000 for 2025H2,
    # then 3 × 5,000 × 100 = 1,500,000 for 2025, none of it paid.
    for period, amount in (("2025H2", 750_000), ("2025", 1_500_000)):
        (penalty,) = zone.of(r.PenaltyCharged, zone.ok(r.EnforcePeriod(period=period)))
        assert (penalty.amount, penalty.paid, penalty.unpaid) == (amount, 0, amount)
    assert zone.engine.registry.penalty_debt("S1") == 2_250_000
    for deposit, paid, left in (
        (1_000_000, 1_000_000, 1_250_000),
        (1_000_000, 1_000_000, 250_000),
        (300_000, 250_000, 0),
    ):
        zone.ok(c.DepositCash(enterprise_id="S1", amount=deposit))
        assert zone.ok(r.CollectPenalty(enterprise_id="S1")) == [
            r.PenaltyCollected(enterprise_id="S1", amount=paid, remaining_debt=left)
        ]
    assert zone.cash("S1") == (50_000, 0)
    zone.refused(r.CollectPenalty(enterprise_id="S1"), "no_penalty_debt")
    return zone


def test_a_penalty_debt_over_two_periods_is_collected_in_parts() -> None:
    zone = two_unpaid_penalties()
    assert zone.engine.penalties_collected == 2_250_000
    check_conservation(zone)


# ---------------------------------------------------------------------------- on the stores


def test_the_year_on_the_store_journals_the_same_results(store_url: str, tmp_path: Path) -> None:
    """SQLite and PostgreSQL: the intake log and the runner give the in-memory results,
    and a restart from a snapshot taken midway (registry state included) agrees."""
    zone = run_year()
    expected = zone.results
    with open_store(store_url) as store:
        Intake(store).submit([(command, time) for _, time, command in zone.log])
        runner = EngineRunner(store, CONFIG, batch=17, snapshot_every=40)
        runner.recover()
        while runner.position < len(zone.log) // 2:
            runner.step()
        reborn = EngineRunner(store, CONFIG, batch=17, snapshot_every=40)
        assert reborn.recover() == runner.position
        assert reborn.engine.state_hash() == runner.engine.state_hash()
        assert "registry" in reborn.engine.state()
        reborn.drain()
        journal = [decode(row.payload).event for page in store.journal.pages() for row in page]
    assert [e for e in journal if type(e).__name__ != "EngineSnapshot"] == expected
    assert reborn.engine.state_hash() == zone.engine.state_hash()
    with pytest.raises(InvalidCommand), open_store(store_url) as store:
        Intake(store).submit([(r.ClosePeriod(period="twenty"), 1)])


def test_every_registry_command_gets_an_answer() -> None:
    """The gateway waits for each command's results: evaluating a closed period with no
    verified report must be a refusal, not silence (found by the API fuzz test)."""
    engine = Engine(CONFIG)
    engine.apply(1, 1_764_036_000_000_000, r.OpenPeriod(period="2030"))
    engine.apply(2, 1_764_036_000_000_001, r.ClosePeriod(period="2030"))
    (answer,) = engine.apply(3, 1_764_036_000_000_002, r.EvaluatePeriod(period="2030"))
    assert isinstance(answer, CommandRejected) and answer.reason == "nothing_to_evaluate"
