"""The registry's vocabulary: carbon-accounting commands and the facts they produce.

Registry commands travel on the same intake log as the exchange's and are decided by the
same single-writer engine, so a period close that issues credits and creates obligations,
or a deadline that charges penalties from cash, is one atomic, ordered step.

Decimals (activity data, emission factors, intensities, scores) travel as strings: the
codec refuses floats, and a decimal string is exact and canonical. Whole tonnes and fen
are integers. Emissions are in kg CO2e (RULES.md: rounded to whole tonnes only where
credits or obligations are created). Inside dict fields, sequences are lists (that is
what JSON gives back), so an event read from the log equals the one that was written.

Refusals are :class:`events.accounts.CommandRejected` with a reason code, like every
other non-order command; credits and cash move through the existing account facts
(``CreditsIssued``, ``CreditsSurrendered``, ``AccountOpened``,
``EnterpriseStatusChanged``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from events.base import Event, event_type

__all__ = [
    "AllocationDeducted",
    "AllocationSet",
    "ChangeEnterpriseStatus",
    "ClosePeriod",
    "CollectPenalty",
    "EnforcePeriod",
    "EnterpriseRegistered",
    "EvaluatePeriod",
    "EvaluationBenchmarksSet",
    "EvaluationComputed",
    "ObligationCreated",
    "ObligationReduced",
    "ObligationSettled",
    "OffsetInstrumentSet",
    "OpenPeriod",
    "PenaltyCharged",
    "PenaltyCollected",
    "PeriodClosed",
    "PeriodDeadlineSet",
    "PeriodEnforced",
    "PeriodOpened",
    "QuotaComputed",
    "RegisterEnterprise",
    "ReportReturned",
    "ReportSubmitted",
    "ReportVerified",
    "SetAllocation",
    "SetEvaluationBenchmarks",
    "SetOffsetInstrument",
    "SetPeriodDeadline",
    "ShortfallRecorded",
    "SubmitReport",
    "VerifyReport",
    "report_id",
]


def report_id(enterprise_id: str, period: str) -> str:
    """The id of an enterprise's emission report for a period: one report per pair.

    Amendments are new versions of the same report, so the id is derived, not drawn:
    a client can name the report it just submitted without waiting for an answer.
    Periods contain no ``-`` (see the intake's period format), so the id parses back.
    """
    return f"R-{period}-{enterprise_id}"


# ============================================================================ commands


@event_type("RegisterEnterprise")
class RegisterEnterprise(Event):
    """Register an enterprise (status `pending` until a regulator approves it).

    `credit_code` is the 18-character unified social credit code (GB 32100-2015).
    """

    enterprise_id: str
    name: str
    sector: str
    credit_code: str


@event_type("ChangeEnterpriseStatus")
class ChangeEnterpriseStatus(Event):
    """`action`: `approve` (pending → active; opens the exchange account), `suspend`
    (active → suspended: no new orders), `reinstate` (suspended → active)."""

    enterprise_id: str
    action: str
    reason: str = ""


@event_type("OpenPeriod")
class OpenPeriod(Event):
    """Open a compliance period, e.g. ``2025``; `deadline` (µs) is the surrender deadline,
    0 for RULES.md's default (the end of 31 December after the period, Asia/Shanghai).

    `instrument` receives the period's surplus credits (its vintage must be the period's
    year); empty means ``HCC-<period>``.
    """

    period: str
    deadline: int = 0
    instrument: str = ""


@event_type("SetPeriodDeadline")
class SetPeriodDeadline(Event):
    """Move a period's surrender deadline (µs), e.g. to extend it, as pilots do.

    Until the period is enforced, and only to a moment still to come: surrenders are
    taken until the new deadline, and enforcement waits for it. This is how the
    obligations of a period closed at or after its deadline (due at once) can still be
    met.
    """

    period: str
    deadline: int


@event_type("SubmitReport")
class SubmitReport(Event):
    """An emission report, or an amendment of it (a new version; history is kept).

    Each source is ``{kind: fuel|electricity|heat|process, name, activity, unit,
    factor?, factor_reason?}`` with decimal strings; `factor` (t CO2e per unit of
    activity) overrides the default table and needs a reason. `output_value` is in
    10k CNY, `energy_tce` in t of standard coal equivalent, `pollutants` maps
    so2/nox/particulates/cod to tonnes.
    """

    enterprise_id: str
    period: str
    sources: tuple[dict[str, str], ...]
    output_value: str
    energy_tce: str
    pollutants: dict[str, str] = dataclasses.field(default_factory=dict)


@event_type("VerifyReport")
class VerifyReport(Event):
    """A verifier accepts or returns a report; `report_version` 0 means the latest version."""

    report_id: str
    accepted: bool
    note: str
    verifier: str
    report_version: int = 0


@event_type("SetAllocation")
class SetAllocation(Event):
    """Quota method and parameters for one enterprise or (when `sector` is set) a sector.

    Methods: ``benchmark`` ``{benchmark_t_per_unit}``; ``historical`` ``{base_intensity,
    decline_factor}``; ``grandfathering`` ``{base_emissions_t: [..], decline_factor}``.
    The unit of output is the report's `output_value` (10k CNY). An enterprise's own
    allocation wins over its sector's.
    """

    period: str
    method: str
    params: dict[str, Any]
    enterprise_id: str = ""
    sector: str = ""


@event_type("SetEvaluationBenchmarks")
class SetEvaluationBenchmarks(Event):
    """A sector's evaluation benchmarks (decimal strings): ``output_value`` (10k CNY),
    ``energy_intensity`` (tce per 10k CNY), ``carbon_intensity`` (t CO2e per 10k CNY)
    and ``pollutants`` ``{so2|nox|particulates|cod: t per 10k CNY}``."""

    sector: str
    benchmarks: dict[str, Any]


@event_type("SetOffsetInstrument")
class SetOffsetInstrument(Event):
    """Mark an instrument as certified offsets: they may cover at most 5% of an obligation."""

    instrument: str
    offset: bool


@event_type("ClosePeriod")
class ClosePeriod(Event):
    """Close a period: surplus → credits issued, deficit → obligation. Once only."""

    period: str


@event_type("EnforcePeriod")
class EnforcePeriod(Event):
    """Process the surrender deadline: shortfalls deducted from the next allocation and
    penalised. Refused before the deadline unless `force`."""

    period: str
    force: bool = False


@event_type("EvaluatePeriod")
class EvaluatePeriod(Event):
    """Score every enterprise with a verified report for the period.

    `weights` (economy, energy, pollution, carbon; decimal strings summing to 100)
    override the defaults 20/25/20/35 for this evaluation.
    """

    period: str
    weights: dict[str, str] = dataclasses.field(default_factory=dict)


@event_type("CollectPenalty")
class CollectPenalty(Event):
    """Collect an enterprise's unpaid penalties from its available cash, as far as it goes."""

    enterprise_id: str


# ============================================================================ facts


@event_type("EnterpriseRegistered")
class EnterpriseRegistered(Event):
    enterprise_id: str
    name: str
    sector: str
    credit_code: str
    status: str


@event_type("PeriodOpened")
class PeriodOpened(Event):
    period: str
    deadline: int
    instrument: str


@event_type("PeriodDeadlineSet")
class PeriodDeadlineSet(Event):
    """The surrender deadline of `period` moved from `previous` to `deadline` (µs)."""

    period: str
    deadline: int
    previous: int


@event_type("ReportSubmitted")
class ReportSubmitted(Event):
    """A report version with every source's computed emissions.

    Each source: ``kind, name, activity, unit, factor (t CO2e per factor_unit),
    factor_unit, factor_source, factor_reason, kg_co2e``. `emissions_kg` is the exact
    total; `emissions_t` the same in tonnes (not rounded: rounding happens at close).
    """

    report_id: str
    enterprise_id: str
    period: str
    report_version: int
    sources: tuple[dict[str, str], ...]
    emissions_kg: str
    emissions_t: str
    output_value: str
    energy_tce: str
    pollutants: dict[str, str]


@event_type("ReportVerified")
class ReportVerified(Event):
    report_id: str
    enterprise_id: str
    period: str
    report_version: int
    verifier: str
    note: str
    emissions_kg: str


@event_type("ReportReturned")
class ReportReturned(Event):
    report_id: str
    enterprise_id: str
    period: str
    report_version: int
    verifier: str
    note: str


@event_type("AllocationSet")
class AllocationSet(Event):
    """`params` normalised: decimals as canonical strings, base emissions as a list."""

    period: str
    enterprise_id: str
    sector: str
    method: str
    params: dict[str, Any]


@event_type("EvaluationBenchmarksSet")
class EvaluationBenchmarksSet(Event):
    sector: str
    benchmarks: dict[str, Any]


@event_type("OffsetInstrumentSet")
class OffsetInstrumentSet(Event):
    instrument: str
    offset: bool


@event_type("QuotaComputed")
class QuotaComputed(Event):
    """One enterprise's result at a period close, with everything it came from.

    ``balance_t = round_half_up((quota_kg - emissions_kg) / 1000) - deduction_t``;
    positive: credits issued, negative: an obligation of that many tonnes.
    `inputs` holds the method's parameters, the output used and the report version.
    """

    period: str
    enterprise_id: str
    method: str
    inputs: dict[str, Any]
    quota_kg: str
    emissions_kg: str
    deduction_t: int
    balance_t: int


@event_type("ObligationCreated")
class ObligationCreated(Event):
    period: str
    enterprise_id: str
    quantity: int
    deadline: int


@event_type("PeriodClosed")
class PeriodClosed(Event):
    """`missing_reports`: enterprises without a verified report (no issuance, no
    obligation); `unallocated`: verified but without a quota method."""

    period: str
    instrument: str
    issued: int
    obligations: int
    missing_reports: tuple[str, ...]
    unallocated: tuple[str, ...]


@event_type("ObligationReduced")
class ObligationReduced(Event):
    """A surrender counted against an obligation (`offset`: with offset credits)."""

    period: str
    enterprise_id: str
    instrument: str
    quantity: int
    outstanding: int
    offset: bool


@event_type("ObligationSettled")
class ObligationSettled(Event):
    period: str
    enterprise_id: str


@event_type("ShortfallRecorded")
class ShortfallRecorded(Event):
    period: str
    enterprise_id: str
    shortfall: int


@event_type("AllocationDeducted")
class AllocationDeducted(Event):
    """`quantity` tonnes come off the enterprise's next closed period's balance."""

    from_period: str
    enterprise_id: str
    quantity: int


@event_type("PenaltyCharged")
class PenaltyCharged(Event):
    """``amount = multiplier × price × tonnes`` fen; `paid` left available cash at once,
    `unpaid` is a debt (no negative balances), collected later by ``CollectPenalty``.
    `price_basis` says where the price came from (see the engine's average price)."""

    period: str
    enterprise_id: str
    tonnes: int
    price: int
    multiplier: int
    amount: int
    paid: int
    unpaid: int
    price_basis: str


@event_type("PenaltyCollected")
class PenaltyCollected(Event):
    enterprise_id: str
    amount: int
    remaining_debt: int


@event_type("PeriodEnforced")
class PeriodEnforced(Event):
    period: str
    price: int
    price_basis: str
    shortfalls: int
    forced: bool


@event_type("EvaluationComputed")
class EvaluationComputed(Event):
    """The four dimension scores (0–100), weighted total, grade and near-zero flag.

    `inputs` names every figure each score used (dimension → {name: value}).
    """

    period: str
    enterprise_id: str
    sector: str
    scores: dict[str, str]
    weights: dict[str, str]
    total: str
    grade: str
    near_zero_carbon: bool
    inputs: dict[str, Any]
