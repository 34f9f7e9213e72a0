"""The registry's aggregates: Enterprise, EmissionReport and CompliancePeriod.

They are the `eventsourcing` library's :class:`~eventsourcing.domain.Aggregate`, made
deterministic: ids are uuid5 of the business key (never uuid4) and every event is
stamped with the command's time (never the wall clock), so two engines applying the
same log hold equal aggregates. The library's domain events are the aggregates' own
bookkeeping; what the log records are carbonx's result events, which the registry
emits alongside (the engine's journal is the store, not the library's recorders).

Their state is plain data — strings, ints, lists, dicts; decimals as text — so an
aggregate serialises canonically into the engine's snapshot (:func:`dump`) and comes
back from it (:func:`load`) with the same id, version and timestamps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

__all__ = [
    "CompliancePeriod",
    "EmissionReport",
    "Enterprise",
    "aggregate_id",
    "dump",
    "load",
    "stamp",
]

NAMESPACE = uuid5(NAMESPACE_URL, "https://carbonx/registry")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
A = TypeVar("A", bound=Aggregate)
_US = timedelta(microseconds=1)


def aggregate_id(kind: str, key: str) -> UUID:
    """The id of the `kind` aggregate for business `key`: the same on every machine."""
    return uuid5(NAMESPACE, f"{kind}:{key}")


def stamp(time: int) -> datetime:
    """A command time (µs since the epoch, UTC) as the aggregate timestamp it stands for."""
    return _EPOCH + timedelta(microseconds=time)


def _trigger(aggregate: Aggregate, event: type[Aggregate.Event], time: int, **fields: Any) -> None:
    """Apply one library event stamped with the command's time, then drop it.

    The engine's journal is where facts are stored; pending library events would only
    accumulate (and would make two equal aggregates compare unequal).
    """
    aggregate.trigger_event(event, timestamp=stamp(time), **fields)
    aggregate.collect_events()


def _created(aggregate: A) -> A:
    aggregate.collect_events()
    return aggregate


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


# ---------------------------------------------------------------------------- enterprise


class Enterprise(Aggregate):
    """A registered enterprise, its status, pending allocation deductions and penalty debt."""

    class Registered(Aggregate.Created):
        enterprise_id: str
        name: str
        sector: str
        credit_code: str

    class StatusChanged(Aggregate.Event):
        status: str
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = self.status

    class ShortfallNoted(Aggregate.Event):
        """A deadline found `quantity` t missing: deducted from the next closed period."""

        period: str
        quantity: int

        def apply(self, aggregate: Any) -> None:
            aggregate.shortfall_periods.append(self.period)
            aggregate.pending_deductions.append([self.period, self.quantity])

    class DeductionsApplied(Aggregate.Event):
        """The deductions from periods before `period` were taken off its balance."""

        period: str

        def apply(self, aggregate: Any) -> None:
            aggregate.pending_deductions = [
                d for d in aggregate.pending_deductions if d[0] >= self.period
            ]

    class PenaltyDebtChanged(Aggregate.Event):
        delta: int

        def apply(self, aggregate: Any) -> None:
            aggregate.penalty_debt += self.delta

    def __init__(self, enterprise_id: str, name: str, sector: str, credit_code: str) -> None:
        self.enterprise_id = enterprise_id
        self.name = name
        self.sector = sector
        self.credit_code = credit_code
        self.status = "pending"
        self.pending_deductions: list[list[Any]] = []  # [from_period, tonnes]
        self.shortfall_periods: list[str] = []
        self.penalty_debt = 0  # fen

    @classmethod
    def register(
        cls, enterprise_id: str, name: str, sector: str, credit_code: str, time: int
    ) -> Enterprise:
        return _created(
            cls._create(
                cls.Registered,
                id=aggregate_id("enterprise", enterprise_id),
                timestamp=stamp(time),
                enterprise_id=enterprise_id,
                name=name,
                sector=sector,
                credit_code=credit_code,
            )
        )

    def change_status(self, status: str, reason: str, time: int) -> None:
        _trigger(self, self.StatusChanged, time, status=status, reason=reason)

    def note_shortfall(self, period: str, quantity: int, time: int) -> None:
        _trigger(self, self.ShortfallNoted, time, period=period, quantity=quantity)

    def deductions_before(self, period: str) -> int:
        return sum(int(q) for p, q in self.pending_deductions if p < period)

    def apply_deductions(self, period: str, time: int) -> None:
        _trigger(self, self.DeductionsApplied, time, period=period)

    def change_debt(self, delta: int, time: int) -> None:
        _trigger(self, self.PenaltyDebtChanged, time, delta=delta)


# ---------------------------------------------------------------------------- report


class EmissionReport(Aggregate):
    """One enterprise's report for one period; each amendment is a new version.

    `versions` keeps every version's figures (plain data, as in ``ReportSubmitted``)
    with its status and the verifier's note; only the latest version can be verified.
    """

    class Submitted(Aggregate.Created):
        report_id: str
        enterprise_id: str
        period: str
        figures: dict[str, Any]

    class Amended(Aggregate.Event):
        figures: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.add_version(self.figures)

    class Verified(Aggregate.Event):
        accepted: bool
        verifier: str
        note: str

        def apply(self, aggregate: Any) -> None:
            latest = aggregate.versions[-1]
            latest["status"] = "verified" if self.accepted else "returned"
            latest["verifier"] = self.verifier
            latest["note"] = self.note

    def __init__(
        self, report_id: str, enterprise_id: str, period: str, figures: dict[str, Any]
    ) -> None:
        self.report_id = report_id
        self.enterprise_id = enterprise_id
        self.period = period
        self.versions: list[dict[str, Any]] = []
        self.add_version(figures)

    def add_version(self, figures: dict[str, Any]) -> None:
        self.versions.append(
            {
                **figures,
                "version": len(self.versions) + 1,
                "status": "submitted",
                "verifier": "",
                "note": "",
            }
        )

    @property
    def latest(self) -> dict[str, Any]:
        return self.versions[-1]

    @property
    def status(self) -> str:
        return str(self.latest["status"])

    @classmethod
    def submit(
        cls, report_id: str, enterprise_id: str, period: str, figures: dict[str, Any], time: int
    ) -> EmissionReport:
        return _created(
            cls._create(
                cls.Submitted,
                id=aggregate_id("report", report_id),
                timestamp=stamp(time),
                report_id=report_id,
                enterprise_id=enterprise_id,
                period=period,
                figures=figures,
            )
        )

    def amend(self, figures: dict[str, Any], time: int) -> None:
        _trigger(self, self.Amended, time, figures=figures)

    def verify(self, accepted: bool, verifier: str, note: str, time: int) -> None:
        _trigger(self, self.Verified, time, accepted=accepted, verifier=verifier, note=note)


# ---------------------------------------------------------------------------- period


class CompliancePeriod(Aggregate):
    """A compliance period: allocations while open, results and obligations once closed.

    Status: ``open`` → ``closed`` (ClosePeriod) → ``enforced`` (EnforcePeriod).
    `obligations` maps enterprise → {quantity, surrendered, offset_surrendered,
    shortfall}; `results` maps enterprise → its ``QuotaComputed`` figures.
    """

    class Opened(Aggregate.Created):
        period: str
        deadline: int
        instrument: str

    class AllocationSet(Aggregate.Event):
        scope: str  # "enterprise" or "sector"
        key: str
        allocation: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.allocations[self.scope][self.key] = self.allocation

    class Closed(Aggregate.Event):
        results: dict[str, Any]
        obligations: dict[str, int]

        def apply(self, aggregate: Any) -> None:
            aggregate.status = "closed"
            aggregate.results = self.results
            aggregate.obligations = {
                eid: {"quantity": q, "surrendered": 0, "offset_surrendered": 0, "shortfall": 0}
                for eid, q in self.obligations.items()
            }

    class Surrendered(Aggregate.Event):
        enterprise_id: str
        quantity: int
        offset: bool

        def apply(self, aggregate: Any) -> None:
            obligation = aggregate.obligations[self.enterprise_id]
            obligation["surrendered"] += self.quantity
            if self.offset:
                obligation["offset_surrendered"] += self.quantity

    class DeadlineSet(Aggregate.Event):
        deadline: int

        def apply(self, aggregate: Any) -> None:
            aggregate.deadline = self.deadline

    class Enforced(Aggregate.Event):
        shortfalls: dict[str, int]

        def apply(self, aggregate: Any) -> None:
            aggregate.status = "enforced"
            for eid, missing in self.shortfalls.items():
                aggregate.obligations[eid]["shortfall"] = missing

    def __init__(self, period: str, deadline: int, instrument: str) -> None:
        self.period = period
        self.deadline = deadline
        self.instrument = instrument
        self.status = "open"
        self.allocations: dict[str, dict[str, Any]] = {"enterprise": {}, "sector": {}}
        self.results: dict[str, Any] = {}
        self.obligations: dict[str, dict[str, int]] = {}

    @classmethod
    def open(cls, period: str, deadline: int, instrument: str, time: int) -> CompliancePeriod:
        return _created(
            cls._create(
                cls.Opened,
                id=aggregate_id("period", period),
                timestamp=stamp(time),
                period=period,
                deadline=deadline,
                instrument=instrument,
            )
        )

    def outstanding(self, enterprise_id: str) -> int:
        obligation = self.obligations[enterprise_id]
        return obligation["quantity"] - obligation["surrendered"]

    def set_allocation(self, scope: str, key: str, allocation: dict[str, Any], time: int) -> None:
        _trigger(self, self.AllocationSet, time, scope=scope, key=key, allocation=allocation)

    def close(self, results: dict[str, Any], obligations: dict[str, int], time: int) -> None:
        _trigger(self, self.Closed, time, results=results, obligations=obligations)

    def surrender(self, enterprise_id: str, quantity: int, offset: bool, time: int) -> None:
        _trigger(
            self,
            self.Surrendered,
            time,
            enterprise_id=enterprise_id,
            quantity=quantity,
            offset=offset,
        )

    def set_deadline(self, deadline: int, time: int) -> None:
        _trigger(self, self.DeadlineSet, time, deadline=deadline)

    def enforce(self, shortfalls: dict[str, int], time: int) -> None:
        _trigger(self, self.Enforced, time, shortfalls=shortfalls)


# ---------------------------------------------------------------------------- plain data

_FIELDS: dict[type[Aggregate], tuple[str, ...]] = {
    Enterprise: (
        "enterprise_id",
        "name",
        "sector",
        "credit_code",
        "status",
        "pending_deductions",
        "shortfall_periods",
        "penalty_debt",
    ),
    EmissionReport: ("report_id", "enterprise_id", "period", "versions"),
    CompliancePeriod: (
        "period",
        "deadline",
        "instrument",
        "status",
        "allocations",
        "results",
        "obligations",
    ),
}


def dump(aggregate: Aggregate) -> dict[str, Any]:
    """An aggregate's state as plain data: its fields plus id, version and timestamps.

    Pending library events are dropped first: the journal already holds the facts, and
    an aggregate that kept them would grow with every command.
    """
    aggregate.collect_events()
    data = {name: _copy(getattr(aggregate, name)) for name in _FIELDS[type(aggregate)]}
    data["_meta"] = [
        str(aggregate.id),
        aggregate.version,
        _micros(aggregate.created_on),
        _micros(aggregate.modified_on),
    ]
    return data


def load(cls: type[A], data: dict[str, Any]) -> A:
    """The aggregate :func:`dump` described, equal to the one it was taken from."""
    aggregate_id_text, version, created, modified = data["_meta"]
    aggregate = cls.__new__(cls)
    aggregate.__base_init__(
        originator_id=UUID(aggregate_id_text),
        originator_version=version,
        timestamp=stamp(created),
    )
    aggregate.modified_on = stamp(modified)
    for name in _FIELDS[cls]:
        setattr(aggregate, name, _copy(data[name]))
    return aggregate


def _copy(value: Any) -> Any:
    """A deep copy of plain data (lists, dicts, scalars): state and engine share nothing."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value
