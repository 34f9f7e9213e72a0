"""The registry state machine: carbon-accounting commands in, result events out.

It runs inside the exchange engine's single writer, on the same intake log, so a period
close that issues credits and creates obligations, or a deadline that charges
penalties, is one ordered, atomic step. Every handler checks everything first and
changes state only when the command is accepted: a refusal is one
:class:`~events.accounts.CommandRejected` and leaves the state exactly as it was.

What the registry needs of the exchange (accounts, serial-block issuance, surrender,
cash, prices) it asks through :class:`ExchangePort`, a narrow interface the engine
implements; the registry never reaches into the engine's accounts itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from events import registry as r
from events.accounts import CommandRejected, EnterpriseStatusChanged
from events.base import Event
from events.commands import SurrenderCredits
from services.registry import credit_code
from services.registry.aggregates import CompliancePeriod, EmissionReport, Enterprise, dump, load
from services.registry.decimals import div, fmt, from_text
from services.registry.emissions import Problem, ReportFigures, compute_report
from services.registry.evaluation import (
    EvaluationInput,
    EvaluationSettings,
    SectorBenchmarks,
    evaluate,
    parse_benchmarks,
    parse_weights,
)
from services.registry.quotas import compute_quota, parse_allocation, period_balance

__all__ = [
    "ACTIONS",
    "PERIOD_FORMAT",
    "AveragePrice",
    "ExchangePort",
    "Registry",
    "RegistryRules",
    "default_deadline",
    "period_problem",
]

#: A period is a year, optionally with a suffix (``2025``, ``2025H1``); never a ``-``,
#: so report ids (``R-<period>-<enterprise>``) parse back.
PERIOD_FORMAT = re.compile(r"^\d{4}[A-Za-z0-9]{0,8}$")
#: ChangeEnterpriseStatus actions: (status it applies to, status it leads to).
ACTIONS = {
    "approve": ("pending", "active"),
    "suspend": ("active", "suspended"),
    "reinstate": ("suspended", "active"),
}
_KG_PER_T = Decimal(1000)
#: The largest issuance or obligation a close may create (the intake's quantity limit):
#: keeps serials and penalties (≤ 3 × 10^8 fen/t × 10^10 t) inside 64-bit integers.
MAX_TONNES = 10**10


_US_PER_DAY = 86_400_000_000
_SHANGHAI_OFFSET_US = 8 * 3_600_000_000  # UTC+8 all year: China has no daylight saving


def default_deadline(period: str) -> int:
    """RULES.md's default surrender deadline: the end of 31 December of the year after
    the period's year, Asia/Shanghai (µs since the epoch: midnight starting 1 January
    two years on)."""
    year = int(period[:4]) + 2
    day = date(year, 1, 1).toordinal() - date(1970, 1, 1).toordinal()
    return day * _US_PER_DAY - _SHANGHAI_OFFSET_US


def period_problem(period: object) -> str | None:
    if not isinstance(period, str) or not PERIOD_FORMAT.match(period):
        return "must be a year with an optional suffix of letters and digits, e.g. 2025"
    return None


class AveragePrice(NamedTuple):
    """A price (fen per tonne) and how it was arrived at, for the penalty's record."""

    price: int
    basis: str


class ExchangePort(Protocol):
    """What the registry asks of the exchange engine. Calls that change something are
    made only after every check of the command passed."""

    def has_account(self, enterprise_id: str) -> bool: ...

    def open_account(self, enterprise_id: str) -> Event: ...

    def set_trading_status(self, enterprise_id: str, status: str) -> list[Event]:
        """Let the enterprise trade (``active``) or not; the cancellations of its open
        orders that a suspension implies."""
        ...

    def instrument_vintage(self, symbol: str) -> int | None: ...

    def available_credits(self, enterprise_id: str, instrument: str) -> int: ...

    def issue(self, enterprise_id: str, instrument: str, quantity: int, reason: str) -> Event: ...

    def surrender(
        self, enterprise_id: str, instrument: str, quantity: int, period: str
    ) -> Event: ...

    def available_cash(self, enterprise_id: str) -> int: ...

    def charge(self, enterprise_id: str, amount: int) -> None: ...

    def average_price(self, instrument: str, deadline: int | None) -> AveragePrice: ...


@dataclass(frozen=True)
class RegistryRules:
    """The registry's settings (RULES.md defaults)."""

    #: Penalty per missing tonne = multiplier × the 6-month average price (Shenzhen pilot).
    penalty_multiplier: int = 3
    #: Offset credits may cover at most this share of an obligation (basis points).
    offset_cap_bps: int = 500
    #: Surplus credits go to ``<credit_type>-<period>`` unless the period names another.
    credit_type: str = "HCC"
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)


class Refused(Exception):
    """Raised inside a handler's checks; becomes one CommandRejected."""

    def __init__(self, reason: str, detail: str = "", enterprise_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.enterprise_id = enterprise_id


def _problems(problems: list[Problem]) -> str:
    return "; ".join(f"{name}: {message}" for name, message in problems)


def _figures(report: ReportFigures) -> dict[str, Any]:
    return {
        "sources": [source.as_data() for source in report.sources],
        "emissions_kg": fmt(report.total_kg),
        "output_value": fmt(report.output_value),
        "energy_tce": fmt(report.energy_tce),
        "pollutants": {name: fmt(value) for name, value in report.pollutants.items()},
    }


class Registry:
    """Enterprises, reports and compliance periods, decided one command at a time."""

    def __init__(self, rules: RegistryRules | None = None) -> None:
        self.rules = rules or RegistryRules()
        self.enterprises: dict[str, Enterprise] = {}
        self.reports: dict[str, EmissionReport] = {}
        self.periods: dict[str, CompliancePeriod] = {}
        self.benchmarks: dict[str, SectorBenchmarks] = {}
        self.offset_instruments: set[str] = set()
        self._handlers: dict[type[Event], Callable[[Any, int, ExchangePort], list[Event]]] = {
            r.RegisterEnterprise: self._register,
            r.ChangeEnterpriseStatus: self._change_status,
            r.OpenPeriod: self._open_period,
            r.SetPeriodDeadline: self._set_deadline,
            r.SubmitReport: self._submit,
            r.VerifyReport: self._verify,
            r.SetAllocation: self._set_allocation,
            r.SetEvaluationBenchmarks: self._set_benchmarks,
            r.SetOffsetInstrument: self._set_offset,
            r.ClosePeriod: self._close,
            r.EnforcePeriod: self._enforce,
            r.EvaluatePeriod: self._evaluate,
            r.CollectPenalty: self._collect,
        }

    @property
    def commands(self) -> tuple[type[Event], ...]:
        """The command types :meth:`handle` decides."""
        return tuple(self._handlers)

    def handle(self, command: Event, time: int, port: ExchangePort) -> list[Event]:
        """Decide a registry command sent at `time` (µs)."""
        try:
            return self._handlers[type(command)](command, time, port)
        except Refused as refusal:
            return [
                CommandRejected(
                    command=command.type_name,
                    enterprise_id=refusal.enterprise_id
                    or str(getattr(command, "enterprise_id", "")),
                    reason=refusal.reason,
                    detail=refusal.detail,
                )
            ]

    # ------------------------------------------------------------------ lookups

    def earliest_pending_deadline(self) -> int | None:
        """The earliest deadline (µs) of a period not enforced yet, if any.

        The penalty averages the prices of the six months before the deadline, however
        long after it the regulator enforces; the engine keeps the daily prices that far
        back until then (see ``Engine.average_price``).
        """
        deadlines = [p.deadline for p in self.periods.values() if p.status != "enforced"]
        return min(deadlines) if deadlines else None

    def manages(self, period: str) -> bool:
        """True when `period` is a compliance period of this registry (surrenders
        against it count against obligations)."""
        return period in self.periods

    def penalty_debt(self, enterprise_id: str) -> int:
        enterprise = self.enterprises.get(enterprise_id)
        return enterprise.penalty_debt if enterprise is not None else 0

    def _enterprise(self, enterprise_id: str) -> Enterprise:
        enterprise = self.enterprises.get(enterprise_id)
        if enterprise is None:
            raise Refused("unknown_enterprise", enterprise_id)
        return enterprise

    def _period(self, period: str, *, status: str | None = None) -> CompliancePeriod:
        found = self.periods.get(period)
        if found is None:
            raise Refused("unknown_period", period)
        if status == "open" and found.status != "open":
            raise Refused("period_closed", f"period {period} is {found.status}")
        if status == "closed" and found.status != "closed":
            reason = "period_open" if found.status == "open" else "period_enforced"
            raise Refused(reason, f"period {period} is {found.status}")
        return found

    # ------------------------------------------------------------------ enterprises

    def _register(self, cmd: r.RegisterEnterprise, time: int, port: ExchangePort) -> list[Event]:
        problem = credit_code.problem(cmd.credit_code)
        if problem is not None:
            raise Refused("invalid_credit_code", problem)
        for name, value, limit in (("name", cmd.name, 200), ("sector", cmd.sector, 64)):
            if not value.strip() or len(value) > limit:
                raise Refused("invalid", f"{name} must be 1 to {limit} characters")
        if cmd.enterprise_id in self.enterprises:
            raise Refused("already_registered")
        for other in self.enterprises.values():
            if other.credit_code == cmd.credit_code:
                raise Refused("duplicate_credit_code", f"registered as {other.enterprise_id}")
        enterprise = Enterprise.register(
            cmd.enterprise_id, cmd.name, cmd.sector, cmd.credit_code, time
        )
        self.enterprises[cmd.enterprise_id] = enterprise
        return [
            r.EnterpriseRegistered(
                enterprise_id=cmd.enterprise_id,
                name=cmd.name,
                sector=cmd.sector,
                credit_code=cmd.credit_code,
                status=enterprise.status,
            )
        ]

    def _change_status(
        self, cmd: r.ChangeEnterpriseStatus, time: int, port: ExchangePort
    ) -> list[Event]:
        enterprise = self._enterprise(cmd.enterprise_id)
        transition = ACTIONS.get(cmd.action)
        if transition is None:
            raise Refused("invalid_action", f"action must be one of {', '.join(ACTIONS)}")
        before, after = transition
        if enterprise.status != before:
            raise Refused("invalid_transition", f"cannot {cmd.action} a {enterprise.status} one")
        results: list[Event] = []
        if not port.has_account(cmd.enterprise_id):
            results.append(port.open_account(cmd.enterprise_id))
        cancelled = port.set_trading_status(cmd.enterprise_id, after)
        enterprise.change_status(after, cmd.reason, time)
        results.append(EnterpriseStatusChanged(enterprise_id=cmd.enterprise_id, status=after))
        results += cancelled  # after the change that causes them, as the engine's own
        return results

    # ------------------------------------------------------------------ periods

    def _open_period(self, cmd: r.OpenPeriod, time: int, port: ExchangePort) -> list[Event]:
        problem = period_problem(cmd.period)
        if problem is not None:
            raise Refused("invalid_period", problem)
        if cmd.deadline < 0:
            raise Refused("invalid_deadline", "deadline is µs since the epoch (0: default)")
        if cmd.period in self.periods:
            raise Refused("period_exists", cmd.period)
        instrument = cmd.instrument or f"{self.rules.credit_type}-{cmd.period}"
        deadline = cmd.deadline or default_deadline(cmd.period)
        self.periods[cmd.period] = CompliancePeriod.open(cmd.period, deadline, instrument, time)
        return [r.PeriodOpened(period=cmd.period, deadline=deadline, instrument=instrument)]

    def _set_deadline(self, cmd: r.SetPeriodDeadline, time: int, port: ExchangePort) -> list[Event]:
        """Move the surrender deadline of a period not enforced yet, to a moment still
        to come: a deadline in the past would take surrenders away retroactively.

        A period closed late (at or after its deadline) has obligations due at once:
        no surrender is accepted for them until the deadline moves. Refusing such a
        close instead would change what journals already written re-execute to (a
        replay must reproduce them bit for bit), so the remedy is this command."""
        period = self._period(cmd.period)
        if period.status == "enforced":
            raise Refused("period_enforced", f"period {cmd.period} is enforced")
        if cmd.deadline <= time:
            raise Refused("invalid_deadline", f"the deadline must be after {time}")
        previous = period.deadline
        period.set_deadline(cmd.deadline, time)
        return [r.PeriodDeadlineSet(period=cmd.period, deadline=cmd.deadline, previous=previous)]

    def _set_allocation(self, cmd: r.SetAllocation, time: int, port: ExchangePort) -> list[Event]:
        period = self._period(cmd.period, status="open")
        if bool(cmd.enterprise_id) == bool(cmd.sector):
            raise Refused("invalid_target", "name either an enterprise or a sector")
        if cmd.enterprise_id:
            self._enterprise(cmd.enterprise_id)
        allocation, problems = parse_allocation(cmd.method, cmd.params)
        if allocation is None:
            raise Refused("invalid_allocation", _problems(problems))
        params = allocation.as_params()
        scope, key = (
            ("enterprise", cmd.enterprise_id) if cmd.enterprise_id else ("sector", cmd.sector)
        )
        period.set_allocation(scope, key, {"method": cmd.method, "params": params}, time)
        return [
            r.AllocationSet(
                period=cmd.period,
                enterprise_id=cmd.enterprise_id,
                sector=cmd.sector,
                method=cmd.method,
                params=params,
            )
        ]

    def _set_benchmarks(
        self, cmd: r.SetEvaluationBenchmarks, time: int, port: ExchangePort
    ) -> list[Event]:
        if not cmd.sector.strip() or len(cmd.sector) > 64:
            raise Refused("invalid", "sector must be 1 to 64 characters")
        benchmarks, problems = parse_benchmarks(cmd.benchmarks)
        if benchmarks is None:
            raise Refused("invalid_benchmarks", _problems(problems))
        self.benchmarks[cmd.sector] = benchmarks
        return [r.EvaluationBenchmarksSet(sector=cmd.sector, benchmarks=benchmarks.as_data())]

    def _set_offset(self, cmd: r.SetOffsetInstrument, time: int, port: ExchangePort) -> list[Event]:
        if port.instrument_vintage(cmd.instrument) is None:
            raise Refused("unknown_instrument", cmd.instrument)
        if cmd.offset:
            self.offset_instruments.add(cmd.instrument)
        else:
            self.offset_instruments.discard(cmd.instrument)
        return [r.OffsetInstrumentSet(instrument=cmd.instrument, offset=cmd.offset)]

    # ------------------------------------------------------------------ reports

    def _submit(self, cmd: r.SubmitReport, time: int, port: ExchangePort) -> list[Event]:
        enterprise = self._enterprise(cmd.enterprise_id)
        if enterprise.status == "pending":
            raise Refused("enterprise_not_approved")
        self._period(cmd.period, status="open")
        figures, problems = compute_report(
            cmd.sources, cmd.output_value, cmd.energy_tce, cmd.pollutants
        )
        if figures is None:
            raise Refused("invalid_report", _problems(problems))
        data = _figures(figures)
        rid = r.report_id(cmd.enterprise_id, cmd.period)
        report = self.reports.get(rid)
        if report is None:
            report = EmissionReport.submit(rid, cmd.enterprise_id, cmd.period, data, time)
            self.reports[rid] = report
        else:
            report.amend(data, time)
        return [
            r.ReportSubmitted(
                report_id=rid,
                enterprise_id=cmd.enterprise_id,
                period=cmd.period,
                report_version=len(report.versions),
                sources=tuple(data["sources"]),
                emissions_kg=data["emissions_kg"],
                emissions_t=fmt(div(figures.total_kg, _KG_PER_T)),
                output_value=data["output_value"],
                energy_tce=data["energy_tce"],
                pollutants=data["pollutants"],
            )
        ]

    def _verify(self, cmd: r.VerifyReport, time: int, port: ExchangePort) -> list[Event]:
        report = self.reports.get(cmd.report_id)
        if report is None:
            raise Refused("unknown_report", cmd.report_id)
        eid = report.enterprise_id
        if not cmd.verifier.strip() or len(cmd.verifier) > 64 or len(cmd.note) > 2000:
            raise Refused("invalid", "verifier 1–64 characters, note at most 2000", eid)
        period = self.periods[report.period]
        if period.status != "open":
            raise Refused("period_closed", f"period {period.period} is {period.status}", eid)
        latest = report.latest
        if cmd.report_version not in (0, latest["version"]):
            raise Refused("stale_version", f"the latest version is {latest['version']}", eid)
        if report.status != "submitted":
            raise Refused("not_awaiting_verification", f"version is {report.status}", eid)
        report.verify(cmd.accepted, cmd.verifier, cmd.note, time)
        common = {
            "report_id": report.report_id,
            "enterprise_id": eid,
            "period": report.period,
            "report_version": latest["version"],
            "verifier": cmd.verifier,
            "note": cmd.note,
        }
        if cmd.accepted:
            return [r.ReportVerified(**common, emissions_kg=latest["emissions_kg"])]
        return [r.ReportReturned(**common)]

    def _verified(self, enterprise_id: str, period: str) -> dict[str, Any] | None:
        """The latest verified version of an enterprise's report, if it has one.

        Only verified emissions count (RULES.md), so an amendment counts once it is
        verified, and until then (or when it is returned) the version verified before
        it still does. Letting a pending amendment hide the verified figures would let
        an enterprise with a verified deficit escape its obligation: re-submit before
        the close, be listed as a missing report, and the amendment can no longer be
        verified once the period is closed. An enterprise with no verified version at
        all has no verified figures (a missing report at the close).
        """
        report = self.reports.get(r.report_id(enterprise_id, period))
        if report is None:
            return None
        versions: list[dict[str, Any]] = report.versions
        verified = [version for version in versions if version["status"] == "verified"]
        return verified[-1] if verified else None

    # ------------------------------------------------------------------ close

    def _close(self, cmd: r.ClosePeriod, time: int, port: ExchangePort) -> list[Event]:
        period = self._period(cmd.period, status="open")
        missing: list[str] = []
        unallocated: list[str] = []
        computed: list[tuple[Enterprise, r.QuotaComputed]] = []
        for eid in sorted(self.enterprises):
            enterprise = self.enterprises[eid]
            if enterprise.status == "pending":
                continue
            verified = self._verified(eid, cmd.period)
            if verified is None:
                missing.append(eid)
                continue
            allocation_data = period.allocations["enterprise"].get(eid) or period.allocations[
                "sector"
            ].get(enterprise.sector)
            if allocation_data is None:
                unallocated.append(eid)
                continue
            allocation, _ = parse_allocation(allocation_data["method"], allocation_data["params"])
            assert allocation is not None  # it was validated when it was set
            quota = compute_quota(allocation, from_text(verified["output_value"]))
            emissions_kg = from_text(verified["emissions_kg"])
            deduction = enterprise.deductions_before(cmd.period)
            balance = period_balance(quota.kg, emissions_kg, deduction)
            inputs = {
                **quota.inputs,
                "formula": quota.formula,
                "report_version": verified["version"],
                "scope": "enterprise" if eid in period.allocations["enterprise"] else "sector",
            }
            computed.append(
                (
                    enterprise,
                    r.QuotaComputed(
                        period=cmd.period,
                        enterprise_id=eid,
                        method=allocation.method,
                        inputs=inputs,
                        quota_kg=fmt(quota.kg),
                        emissions_kg=fmt(emissions_kg),
                        deduction_t=deduction,
                        balance_t=balance,
                    ),
                )
            )
        too_large = [q.enterprise_id for _, q in computed if abs(q.balance_t) > MAX_TONNES]
        if too_large:
            raise Refused("out_of_range", f"balance beyond {MAX_TONNES} t: {', '.join(too_large)}")
        instrument = period.instrument
        if any(q.balance_t > 0 for _, q in computed):
            vintage = port.instrument_vintage(instrument)
            if vintage is None:
                raise Refused("unknown_instrument", f"{instrument} is not listed")
            if vintage != int(cmd.period[:4]):
                raise Refused("vintage_mismatch", f"{instrument} is of vintage {vintage}")
        for enterprise, q in computed:
            if q.balance_t > 0 and not port.has_account(enterprise.enterprise_id):
                raise Refused("unknown_enterprise", "no exchange account", enterprise.enterprise_id)

        # Every check passed: from here on, the close happens in full.
        results: list[Event] = []
        obligations: dict[str, int] = {}
        issued = 0
        for enterprise, q in computed:
            eid = enterprise.enterprise_id
            results.append(q)
            if q.balance_t > 0:
                results.append(port.issue(eid, instrument, q.balance_t, f"surplus {cmd.period}"))
                issued += q.balance_t
            elif q.balance_t < 0:
                obligations[eid] = -q.balance_t
                results.append(
                    r.ObligationCreated(
                        period=cmd.period,
                        enterprise_id=eid,
                        quantity=-q.balance_t,
                        deadline=period.deadline,
                    )
                )
            if q.deduction_t:
                enterprise.apply_deductions(cmd.period, time)
        period.close(
            {
                q.enterprise_id: {
                    "method": q.method,
                    "inputs": q.inputs,
                    "quota_kg": q.quota_kg,
                    "emissions_kg": q.emissions_kg,
                    "deduction_t": q.deduction_t,
                    "balance_t": q.balance_t,
                }
                for _, q in computed
            },
            obligations,
            time,
        )
        results.append(
            r.PeriodClosed(
                period=cmd.period,
                instrument=instrument,
                issued=issued,
                obligations=sum(obligations.values()),
                missing_reports=tuple(missing),
                unallocated=tuple(unallocated),
            )
        )
        return results

    # ------------------------------------------------------------------ surrender

    def surrender(self, cmd: SurrenderCredits, time: int, port: ExchangePort) -> list[Event]:
        """Surrender against an obligation of a registry period (``SurrenderCredits``).

        Refused from the period's deadline on (``past_deadline``: RULES.md wants the
        obligation surrendered by the deadline, and what is outstanding at the deadline
        is the shortfall; a later surrender would wipe out a penalty already due), above
        the outstanding obligation, above the available credits (credits held for sell
        orders do not count), with credits of a later vintage than the period, or with
        offsets beyond their cap; the serials surrendered are published in
        ``CreditsSurrendered``.
        """
        try:
            return self._surrender(cmd, time, port)
        except Refused as refusal:
            return [
                CommandRejected(
                    command=cmd.type_name,
                    enterprise_id=cmd.enterprise_id,
                    reason=refusal.reason,
                    detail=refusal.detail,
                )
            ]

    def _surrender(self, cmd: SurrenderCredits, time: int, port: ExchangePort) -> list[Event]:
        period = self._period(cmd.period, status="closed")
        if time >= period.deadline:
            raise Refused("past_deadline", f"the deadline was {period.deadline}")
        if cmd.enterprise_id not in period.obligations:
            raise Refused("no_obligation", f"no obligation for period {cmd.period}")
        if cmd.quantity <= 0:
            raise Refused("invalid_quantity")
        vintage = port.instrument_vintage(cmd.instrument)
        if vintage is None:
            raise Refused("unknown_instrument", cmd.instrument)
        if vintage > int(cmd.period[:4]):
            raise Refused("vintage_not_eligible", f"vintage {vintage} is after {cmd.period}")
        outstanding = period.outstanding(cmd.enterprise_id)
        if cmd.quantity > outstanding:
            raise Refused("above_obligation", f"{outstanding} t outstanding")
        offset = cmd.instrument in self.offset_instruments
        if offset:
            obligation = period.obligations[cmd.enterprise_id]
            cap = obligation["quantity"] * self.rules.offset_cap_bps // 10_000
            if obligation["offset_surrendered"] + cmd.quantity > cap:
                raise Refused("offset_cap", f"offsets may cover at most {cap} t")
        if port.available_credits(cmd.enterprise_id, cmd.instrument) < cmd.quantity:
            raise Refused("insufficient_credits")
        results = [port.surrender(cmd.enterprise_id, cmd.instrument, cmd.quantity, cmd.period)]
        period.surrender(cmd.enterprise_id, cmd.quantity, offset, time)
        left = period.outstanding(cmd.enterprise_id)
        results.append(
            r.ObligationReduced(
                period=cmd.period,
                enterprise_id=cmd.enterprise_id,
                instrument=cmd.instrument,
                quantity=cmd.quantity,
                outstanding=left,
                offset=offset,
            )
        )
        if left == 0:
            results.append(r.ObligationSettled(period=cmd.period, enterprise_id=cmd.enterprise_id))
        return results

    # ------------------------------------------------------------------ deadline

    def _enforce(self, cmd: r.EnforcePeriod, time: int, port: ExchangePort) -> list[Event]:
        """Charge the shortfalls at the deadline (RULES.md): deduct them from the next
        period's allocation and penalise them at 3 × the average price of the six months
        before the deadline.

        Surrenders are refused from the deadline on, so what is outstanding now is what
        was outstanding at the deadline; and the price window ends with the deadline,
        not with the day the regulator runs this, so enforcing later changes nothing.
        Forced before the deadline (`force`), the window ends with the enforcement's
        day instead: there is no deadline window yet, and the six months up to now are
        the latest prices there are.
        """
        period = self._period(cmd.period, status="closed")
        forced = time < period.deadline
        if forced and not cmd.force:
            raise Refused("before_deadline", f"deadline is {period.deadline}")
        shortfalls = {
            eid: period.outstanding(eid)
            for eid in sorted(period.obligations)
            if period.outstanding(eid) > 0
        }
        price = AveragePrice(0, "no shortfall")
        if shortfalls:
            if port.instrument_vintage(period.instrument) is None:
                raise Refused("unknown_instrument", f"{period.instrument} is not listed")
            price = port.average_price(period.instrument, None if forced else period.deadline)
        multiplier = self.rules.penalty_multiplier
        results: list[Event] = []
        for eid, missing in shortfalls.items():
            enterprise = self.enterprises[eid]
            amount = multiplier * price.price * missing
            paid = min(amount, port.available_cash(eid))
            if paid:
                port.charge(eid, paid)
            enterprise.note_shortfall(cmd.period, missing, time)
            if amount > paid:
                enterprise.change_debt(amount - paid, time)
            results += [
                r.ShortfallRecorded(period=cmd.period, enterprise_id=eid, shortfall=missing),
                r.AllocationDeducted(from_period=cmd.period, enterprise_id=eid, quantity=missing),
                r.PenaltyCharged(
                    period=cmd.period,
                    enterprise_id=eid,
                    tonnes=missing,
                    price=price.price,
                    multiplier=multiplier,
                    amount=amount,
                    paid=paid,
                    unpaid=amount - paid,
                    price_basis=price.basis,
                ),
            ]
        period.enforce(shortfalls, time)
        results.append(
            r.PeriodEnforced(
                period=cmd.period,
                price=price.price,
                price_basis=price.basis,
                shortfalls=len(shortfalls),
                forced=forced,
            )
        )
        return results

    def _collect(self, cmd: r.CollectPenalty, time: int, port: ExchangePort) -> list[Event]:
        enterprise = self._enterprise(cmd.enterprise_id)
        if enterprise.penalty_debt == 0:
            raise Refused("no_penalty_debt")
        paid = min(enterprise.penalty_debt, port.available_cash(cmd.enterprise_id))
        if paid == 0:
            raise Refused("insufficient_cash")
        port.charge(cmd.enterprise_id, paid)
        enterprise.change_debt(-paid, time)
        return [
            r.PenaltyCollected(
                enterprise_id=cmd.enterprise_id,
                amount=paid,
                remaining_debt=enterprise.penalty_debt,
            )
        ]

    # ------------------------------------------------------------------ evaluation

    def _evaluate(self, cmd: r.EvaluatePeriod, time: int, port: ExchangePort) -> list[Event]:
        period = self._period(cmd.period)
        if period.status == "open":
            raise Refused("period_open", "evaluate after the period's close")
        weights, problems = parse_weights(cmd.weights)
        if weights is None:
            raise Refused("invalid_weights", _problems(problems))
        settings = dataclasses.replace(self.rules.evaluation, weights=weights)
        subjects = [
            (eid, verified)
            for eid in sorted(self.enterprises)
            if (verified := self._verified(eid, cmd.period)) is not None
        ]
        lacking = sorted(
            {
                self.enterprises[eid].sector
                for eid, _ in subjects
                if self.enterprises[eid].sector not in self.benchmarks
            }
        )
        if lacking:
            raise Refused("missing_benchmarks", f"no benchmarks for {', '.join(lacking)}")
        if not subjects:  # every command gets an answer: nothing to evaluate is a refusal
            raise Refused("nothing_to_evaluate", "no enterprise has a verified report for it")
        results: list[Event] = []
        for eid, verified in subjects:
            enterprise = self.enterprises[eid]
            previous = self._previous_output(eid, cmd.period)
            figures = EvaluationInput(
                output_value=from_text(verified["output_value"]),
                previous_output_value=previous,
                energy_tce=from_text(verified["energy_tce"]),
                pollutants={k: from_text(v) for k, v in verified["pollutants"].items()},
                emissions_kg=from_text(verified["emissions_kg"]),
                shortfall_periods=tuple(p for p in enterprise.shortfall_periods if p <= cmd.period),
            )
            result = evaluate(figures, self.benchmarks[enterprise.sector], settings)
            results.append(
                r.EvaluationComputed(
                    period=cmd.period,
                    enterprise_id=eid,
                    sector=enterprise.sector,
                    scores={k: fmt(v) for k, v in result.scores.items()},
                    weights=weights.as_data(),
                    total=fmt(result.total),
                    grade=result.grade,
                    near_zero_carbon=result.near_zero_carbon,
                    inputs={
                        **result.inputs,
                        "source": {
                            "report_id": r.report_id(eid, cmd.period),
                            "report_version": verified["version"],
                            "benchmarks_sector": enterprise.sector,
                        },
                    },
                )
            )
        return results

    def _previous_output(self, enterprise_id: str, period: str) -> Decimal | None:
        """Output value of the latest earlier period with a verified report, if any."""
        earlier = sorted(p for p in self.periods if p < period)
        for candidate in reversed(earlier):
            verified = self._verified(enterprise_id, candidate)
            if verified is not None:
                return from_text(verified["output_value"])
        return None

    # ------------------------------------------------------------------ state

    def is_empty(self) -> bool:
        return not (
            self.enterprises
            or self.periods
            or self.reports
            or self.benchmarks
            or self.offset_instruments
        )

    def state(self) -> dict[str, Any]:
        """The registry as plain, canonically ordered data (decimals as text)."""
        return {
            "enterprises": {k: dump(self.enterprises[k]) for k in sorted(self.enterprises)},
            "reports": {k: dump(self.reports[k]) for k in sorted(self.reports)},
            "periods": {k: dump(self.periods[k]) for k in sorted(self.periods)},
            "benchmarks": {k: self.benchmarks[k].as_data() for k in sorted(self.benchmarks)},
            "offset_instruments": sorted(self.offset_instruments),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any], rules: RegistryRules | None = None) -> Registry:
        registry = cls(rules)
        registry.enterprises = {k: load(Enterprise, v) for k, v in data["enterprises"].items()}
        registry.reports = {k: load(EmissionReport, v) for k, v in data["reports"].items()}
        registry.periods = {k: load(CompliancePeriod, v) for k, v in data["periods"].items()}
        for sector, raw in data["benchmarks"].items():
            benchmarks, problems = parse_benchmarks(raw)
            if benchmarks is None:
                raise ValueError(f"benchmarks of {sector}: {_problems(problems)}")
            registry.benchmarks[sector] = benchmarks
        registry.offset_instruments = set(data["offset_instruments"])
        return registry
