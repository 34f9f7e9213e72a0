"""The registry's read models: enterprises, emission reports, periods, compliance per
enterprise and period, and evaluations.

Compliance follows one enterprise through a period: its verified emissions, its quota
and the inputs behind it, the credits issued for a surplus or the obligation for a
deficit, what it surrendered, any shortfall at the deadline, the penalty charged and
what of it is still unpaid.
Decimals stay the exact strings the engine journaled.
"""

from __future__ import annotations

from typing import Any

import orjson

from events import registry as r
from infra.sqldb import Cursor, SqlDatabase
from projections.base import Entry, Projection, Table

__all__ = [
    "Registry",
    "compliance_of",
    "enterprise",
    "evaluation_of",
    "periods",
    "registered",
    "report",
    "reports",
]

ENTERPRISES = Table(
    "rm_enterprises",
    (
        ("enterprise_id", "TEXT NOT NULL"),
        ("name", "TEXT NOT NULL"),
        ("sector", "TEXT NOT NULL"),
        ("credit_code", "TEXT NOT NULL"),
        ("status", "TEXT NOT NULL"),
        ("registered_position", "BIGINT NOT NULL"),
    ),
    key=("enterprise_id",),
)
REPORTS = Table(
    "rm_reports",
    (
        ("report_id", "TEXT NOT NULL"),
        ("report_version", "BIGINT NOT NULL"),
        ("enterprise_id", "TEXT NOT NULL"),
        ("period", "TEXT NOT NULL"),
        ("status", "TEXT NOT NULL"),  # submitted | verified | returned
        ("emissions_kg", "TEXT NOT NULL"),
        ("emissions_t", "TEXT NOT NULL"),
        ("output_value", "TEXT NOT NULL"),
        ("energy_tce", "TEXT NOT NULL"),
        ("sources", "TEXT NOT NULL"),  # JSON, each with its factor, source and kg CO2e
        ("pollutants", "TEXT NOT NULL"),  # JSON
        ("verifier", "TEXT"),
        ("note", "TEXT"),
        ("submitted_position", "BIGINT NOT NULL"),
        ("decided_position", "BIGINT"),
    ),
    key=("report_id", "report_version"),
    indexes=(("enterprise_id", "period"), ("status",)),
)
PERIODS = Table(
    "rm_periods",
    (
        ("period", "TEXT NOT NULL"),
        ("deadline", "BIGINT NOT NULL"),
        ("instrument", "TEXT NOT NULL"),
        ("status", "TEXT NOT NULL"),  # open | closed | enforced
        ("issued", "BIGINT NOT NULL"),
        ("obligations", "BIGINT NOT NULL"),
        ("missing_reports", "TEXT NOT NULL"),  # JSON list
        ("enforcement_price", "BIGINT"),
        ("price_basis", "TEXT"),
    ),
    key=("period",),
)
COMPLIANCE = Table(
    "rm_compliance",
    (
        ("enterprise_id", "TEXT NOT NULL"),
        ("period", "TEXT NOT NULL"),
        ("verified_emissions_kg", "TEXT"),
        ("method", "TEXT"),
        ("quota_kg", "TEXT"),
        ("quota_inputs", "TEXT"),  # JSON
        ("deduction_t", "BIGINT NOT NULL"),
        ("balance_t", "BIGINT"),
        ("issued_t", "BIGINT NOT NULL"),
        ("obligation_t", "BIGINT NOT NULL"),
        ("surrendered_t", "BIGINT NOT NULL"),
        ("outstanding_t", "BIGINT NOT NULL"),
        ("shortfall_t", "BIGINT NOT NULL"),
        ("penalty_fen", "BIGINT NOT NULL"),
        ("penalty_unpaid_fen", "BIGINT NOT NULL"),
        ("status", "TEXT NOT NULL"),
    ),
    key=("enterprise_id", "period"),
)
EVALUATIONS = Table(
    "rm_evaluations",
    (
        ("enterprise_id", "TEXT NOT NULL"),
        ("period", "TEXT NOT NULL"),
        ("sector", "TEXT NOT NULL"),
        ("scores", "TEXT NOT NULL"),
        ("weights", "TEXT NOT NULL"),
        ("total", "TEXT NOT NULL"),
        ("grade", "TEXT NOT NULL"),
        ("near_zero_carbon", "BOOLEAN NOT NULL"),
        ("inputs", "TEXT NOT NULL"),
        ("position", "BIGINT NOT NULL"),
    ),
    key=("enterprise_id", "period"),
)

_C = {name: index for index, (name, _) in enumerate(COMPLIANCE.columns)}


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class Registry(Projection):
    name = "registry"
    cost = 1
    tables = (ENTERPRISES, REPORTS, PERIODS, COMPLIANCE, EVALUATIONS)

    def reset(self) -> None:
        self.enterprises: dict[str, list[Any]] = {}
        self.periods: dict[str, list[Any]] = {}
        self.compliance: dict[tuple[str, str], list[Any]] = {}
        self._reports: dict[tuple[str, int], list[Any]] = {}
        self._evaluations: list[tuple[Any, ...]] = []
        self._decisions: list[tuple[Any, ...]] = []
        self._dirty_enterprises: set[str] = set()
        self._dirty_periods: set[str] = set()
        self._dirty_compliance: set[tuple[str, str]] = set()

    def load(self, db: SqlDatabase) -> None:
        for row in db.query("SELECT * FROM rm_enterprises"):
            self.enterprises[row[0]] = list(row)
        for row in db.query("SELECT * FROM rm_periods"):
            self.periods[row[0]] = list(row)
        for row in db.query("SELECT * FROM rm_compliance"):
            self.compliance[(row[0], row[1])] = list(row)

    def flush(self, cursor: Cursor) -> None:
        self.write_upserts(
            cursor, ENTERPRISES, [self.enterprises[e] for e in sorted(self._dirty_enterprises)]
        )
        self.write_upserts(cursor, PERIODS, [self.periods[p] for p in sorted(self._dirty_periods)])
        self.write_upserts(
            cursor, COMPLIANCE, [self.compliance[k] for k in sorted(self._dirty_compliance)]
        )
        self.write_upserts(cursor, REPORTS, [row for _, row in sorted(self._reports.items())])
        cursor.executemany(
            "UPDATE rm_reports SET status = %s, verifier = %s, note = %s, decided_position = %s "
            "WHERE report_id = %s AND report_version = %s",
            self._decisions,
        )
        self.write_upserts(cursor, EVALUATIONS, self._evaluations)
        self._decisions = []
        self._dirty_enterprises.clear()
        self._dirty_periods.clear()
        self._dirty_compliance.clear()
        self._reports.clear()
        self._evaluations = []

    def _row(self, enterprise_id: str, period: str) -> list[Any]:
        key = (enterprise_id, period)
        self._dirty_compliance.add(key)
        row = self.compliance.get(key)
        if row is None:
            row = self.compliance[key] = [
                enterprise_id, period, None, None, None, None, 0, None, 0, 0, 0, 0, 0, 0, 0,
                "no_verified_report",
            ]  # fmt: skip
        return row

    # -- enterprises

    def on_EnterpriseRegistered(self, entry: Entry) -> None:
        e: r.EnterpriseRegistered = entry.event  # type: ignore[assignment]
        self.enterprises[e.enterprise_id] = [
            e.enterprise_id, e.name, e.sector, e.credit_code, e.status, entry.position
        ]  # fmt: skip
        self._dirty_enterprises.add(e.enterprise_id)

    def on_EnterpriseStatusChanged(self, entry: Entry) -> None:
        eid = entry.event.enterprise_id  # type: ignore[attr-defined]
        found = self.enterprises.get(eid)
        if found is not None:
            found[4] = entry.event.status  # type: ignore[attr-defined]
            self._dirty_enterprises.add(eid)

    # -- reports

    def on_ReportSubmitted(self, entry: Entry) -> None:
        e: r.ReportSubmitted = entry.event  # type: ignore[assignment]
        self._reports[(e.report_id, e.report_version)] = [
            e.report_id, e.report_version, e.enterprise_id, e.period, "submitted",
            e.emissions_kg, e.emissions_t, e.output_value, e.energy_tce,
            _json(list(e.sources)), _json(e.pollutants), None, None, entry.position, None,
        ]  # fmt: skip

    def _decide(self, entry: Entry, status: str) -> None:
        e: r.ReportVerified | r.ReportReturned = entry.event  # type: ignore[assignment]
        key = (e.report_id, e.report_version)
        row = self._reports.get(key)
        if row is None:  # submitted in an earlier batch: update just the decision
            self._decisions.append((status, e.verifier, e.note, entry.position, *key))
            return
        row[4], row[11], row[12], row[14] = status, e.verifier, e.note, entry.position

    def on_ReportVerified(self, entry: Entry) -> None:
        self._decide(entry, "verified")
        e: r.ReportVerified = entry.event  # type: ignore[assignment]
        row = self._row(e.enterprise_id, e.period)
        row[_C["verified_emissions_kg"]] = e.emissions_kg
        if row[_C["status"]] == "no_verified_report":
            row[_C["status"]] = "report_verified"

    def on_ReportReturned(self, entry: Entry) -> None:
        self._decide(entry, "returned")

    # -- periods and compliance

    def on_PeriodOpened(self, entry: Entry) -> None:
        e: r.PeriodOpened = entry.event  # type: ignore[assignment]
        self.periods[e.period] = [
            e.period,
            e.deadline,
            e.instrument,
            "open",
            0,
            0,
            "[]",
            None,
            None,
        ]
        self._dirty_periods.add(e.period)

    def on_PeriodDeadlineSet(self, entry: Entry) -> None:
        e: r.PeriodDeadlineSet = entry.event  # type: ignore[assignment]
        row = self.periods.get(e.period)
        if row is not None:
            row[1] = e.deadline
            self._dirty_periods.add(e.period)

    def on_QuotaComputed(self, entry: Entry) -> None:
        e: r.QuotaComputed = entry.event  # type: ignore[assignment]
        row = self._row(e.enterprise_id, e.period)
        row[_C["method"]] = e.method
        row[_C["quota_kg"]] = e.quota_kg
        row[_C["quota_inputs"]] = _json(e.inputs)
        row[_C["verified_emissions_kg"]] = e.emissions_kg
        row[_C["deduction_t"]] = e.deduction_t
        row[_C["balance_t"]] = e.balance_t
        if e.balance_t >= 0:
            row[_C["issued_t"]] = e.balance_t
            row[_C["status"]] = "surplus_issued" if e.balance_t else "balanced"

    def on_ObligationCreated(self, entry: Entry) -> None:
        e: r.ObligationCreated = entry.event  # type: ignore[assignment]
        row = self._row(e.enterprise_id, e.period)
        row[_C["obligation_t"]] = e.quantity
        row[_C["outstanding_t"]] = e.quantity
        row[_C["status"]] = "obligation_open"

    def on_ObligationReduced(self, entry: Entry) -> None:
        e: r.ObligationReduced = entry.event  # type: ignore[assignment]
        row = self._row(e.enterprise_id, e.period)
        row[_C["surrendered_t"]] += e.quantity
        row[_C["outstanding_t"]] = e.outstanding

    def on_ObligationSettled(self, entry: Entry) -> None:
        e: r.ObligationSettled = entry.event  # type: ignore[assignment]
        self._row(e.enterprise_id, e.period)[_C["status"]] = "settled"

    def on_ShortfallRecorded(self, entry: Entry) -> None:
        e: r.ShortfallRecorded = entry.event  # type: ignore[assignment]
        row = self._row(e.enterprise_id, e.period)
        row[_C["shortfall_t"]] = e.shortfall
        row[_C["status"]] = "shortfall"

    def on_PenaltyCharged(self, entry: Entry) -> None:
        e: r.PenaltyCharged = entry.event  # type: ignore[assignment]
        row = self._row(e.enterprise_id, e.period)
        row[_C["penalty_fen"]] += e.amount
        row[_C["penalty_unpaid_fen"]] += e.unpaid

    def on_PenaltyCollected(self, entry: Entry) -> None:
        """Take a collection off the enterprise's unpaid penalties, oldest period first.

        The engine keeps one debt per enterprise (the unpaid parts of its penalties,
        less what `CollectPenalty` took) and does not say which period a collection
        pays. Paying the oldest first keeps the sum of `penalty_unpaid_fen` over the
        enterprise's periods equal to the engine's debt at every position, with an
        order that does not depend on when the projector's batches fall.
        """
        e: r.PenaltyCollected = entry.event  # type: ignore[assignment]
        left = e.amount
        for period in sorted(self.periods):  # by name, as the engine sorts periods
            if left == 0:
                break
            key = (e.enterprise_id, period)
            row = self.compliance.get(key)
            if row is None or not row[_C["penalty_unpaid_fen"]]:
                continue
            paid = min(left, row[_C["penalty_unpaid_fen"]])
            row[_C["penalty_unpaid_fen"]] -= paid
            left -= paid
            self._dirty_compliance.add(key)

    def on_PeriodClosed(self, entry: Entry) -> None:
        e: r.PeriodClosed = entry.event  # type: ignore[assignment]
        row = self.periods.get(e.period)
        if row is not None:
            row[3], row[4], row[5] = "closed", e.issued, e.obligations
            row[6] = _json(list(e.missing_reports))
            self._dirty_periods.add(e.period)

    def on_PeriodEnforced(self, entry: Entry) -> None:
        e: r.PeriodEnforced = entry.event  # type: ignore[assignment]
        row = self.periods.get(e.period)
        if row is not None:
            row[3], row[7], row[8] = "enforced", e.price, e.price_basis
            self._dirty_periods.add(e.period)

    def on_EvaluationComputed(self, entry: Entry) -> None:
        e: r.EvaluationComputed = entry.event  # type: ignore[assignment]
        self._evaluations.append(
            (e.enterprise_id, e.period, e.sector, _json(e.scores), _json(e.weights), e.total,
             e.grade, e.near_zero_carbon, _json(e.inputs), entry.position)
        )  # fmt: skip


# ---------------------------------------------------------------------------- queries


def _rows(
    db: SqlDatabase, table: Table, where: str, params: tuple[Any, ...]
) -> list[dict[str, Any]]:
    names = table.column_names
    return [
        dict(zip(names, row, strict=True))
        for row in db.query(f"SELECT * FROM {table.name} {where}", params)
    ]


def enterprise(db: SqlDatabase, enterprise_id: str) -> dict[str, Any] | None:
    found = _rows(db, ENTERPRISES, "WHERE enterprise_id = %s", (enterprise_id,))
    return found[0] if found else None


def registered(db: SqlDatabase) -> dict[str, dict[str, Any]]:
    """Every registered enterprise by id."""
    return {e["enterprise_id"]: e for e in _rows(db, ENTERPRISES, "", ())}


def _decode(row: dict[str, Any], *names: str) -> dict[str, Any]:
    for name in names:
        if row.get(name) is not None:
            row[name] = orjson.loads(row[name])
    return row


def report(db: SqlDatabase, report_id: str) -> list[dict[str, Any]]:
    """Every version of a report, oldest first."""
    return [
        _decode(row, "sources", "pollutants")
        for row in _rows(db, REPORTS, "WHERE report_id = %s ORDER BY report_version", (report_id,))
    ]


def reports(
    db: SqlDatabase, enterprise_id: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    where, params = [], []
    if enterprise_id is not None:
        where.append("enterprise_id = %s")
        params.append(enterprise_id)
    if status is not None:
        where.append("status = %s")
        params.append(status)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return [
        _decode(row, "sources", "pollutants")
        for row in _rows(
            db, REPORTS, clause + " ORDER BY period, report_id, report_version", tuple(params)
        )
    ]


def periods(db: SqlDatabase) -> list[dict[str, Any]]:
    return [_decode(row, "missing_reports") for row in _rows(db, PERIODS, "ORDER BY period", ())]


def compliance_of(db: SqlDatabase, enterprise_id: str) -> list[dict[str, Any]]:
    """Per period: verified emissions, quota and its inputs, surplus or deficit,
    surrendered, outstanding, shortfall, penalty, status."""
    found = []
    for row in _rows(db, COMPLIANCE, "WHERE enterprise_id = %s ORDER BY period", (enterprise_id,)):
        row = _decode(row, "quota_inputs")
        balance = row["balance_t"]
        row["surplus_t"] = balance if balance is not None and balance > 0 else 0
        row["deficit_t"] = -balance if balance is not None and balance < 0 else 0
        found.append(row)
    return found


def evaluation_of(db: SqlDatabase, enterprise_id: str, period: str) -> dict[str, Any] | None:
    found = _rows(
        db, EVALUATIONS, "WHERE enterprise_id = %s AND period = %s", (enterprise_id, period)
    )
    if not found:
        return None
    row = _decode(found[0], "scores", "weights", "inputs")
    row["near_zero_carbon"] = bool(row["near_zero_carbon"])
    return row
