"""Emission reports: activity data × emission factor → kg CO2e, per source.

A source is ``{kind, name, activity, unit, factor?, factor_reason?}`` (decimal text).
Without `factor`, the default table's factor for (kind, name) applies, after converting
the activity to the factor's unit; with `factor` (t CO2e per the source's own unit) the
default is overridden, and a reason is required so that a verifier can judge it. A fuel
the table does not know needs a factor; negative activity is an error, not a credit.

Results are exact decimals in kg CO2e: RULES.md rounds to whole tonnes only at period
close, so nothing is rounded here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from services.registry.decimals import ZERO, DecimalError, add, div, fmt, mul, parse
from services.registry.factors import DEFAULT_TABLE, KINDS, UNITS, FactorTable

__all__ = [
    "MAX_SOURCES",
    "POLLUTANTS",
    "Problem",
    "ReportFigures",
    "SourceResult",
    "compute_report",
]

POLLUTANTS = ("so2", "nox", "particulates", "cod")
MAX_SOURCES = 100
_SOURCE_KEYS = frozenset(("kind", "name", "activity", "unit", "factor", "factor_reason"))
_KG_PER_T = Decimal(1000)

#: (field, message): what intake turns into a FieldError and the engine into a rejection.
Problem = tuple[str, str]


@dataclass(frozen=True, slots=True)
class SourceResult:
    kind: str
    name: str
    activity: Decimal
    unit: str
    factor: Decimal  # t CO2e per factor_unit
    factor_unit: str
    factor_source: str
    factor_reason: str
    kg_co2e: Decimal

    def as_data(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "activity": fmt(self.activity),
            "unit": self.unit,
            "factor": fmt(self.factor),
            "factor_unit": self.factor_unit,
            "factor_source": self.factor_source,
            "factor_reason": self.factor_reason,
            "kg_co2e": fmt(self.kg_co2e),
        }


@dataclass(frozen=True, slots=True)
class ReportFigures:
    sources: tuple[SourceResult, ...]
    total_kg: Decimal
    output_value: Decimal  # 10k CNY
    energy_tce: Decimal
    pollutants: dict[str, Decimal]  # tonnes, every known pollutant present


def _text(value: object, limit: int = 64) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= limit:
        return value
    return None


def _source(
    index: int, raw: object, table: FactorTable, problems: list[Problem]
) -> SourceResult | None:
    where = f"sources[{index}]"
    if not isinstance(raw, Mapping):
        problems.append((where, "must be an object"))
        return None
    before = len(problems)
    unknown = sorted(set(raw) - _SOURCE_KEYS)
    if unknown:
        problems.append((where, f"unknown fields: {', '.join(map(str, unknown))}"))
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        problems.append((f"{where}.kind", f"must be one of {', '.join(KINDS)}"))
    name = _text(raw.get("name"))
    if name is None:
        problems.append((f"{where}.name", "must be a non-empty string of at most 64 characters"))
    unit = raw.get("unit")
    if not isinstance(unit, str) or unit not in UNITS:
        problems.append((f"{where}.unit", f"must be one of {', '.join(UNITS)}"))
    activity = ZERO
    try:
        activity = parse(raw.get("activity"))
    except DecimalError as error:
        problems.append((f"{where}.activity", str(error)))
    override = raw.get("factor")
    reason = raw.get("factor_reason", "")
    factor = ZERO
    if override not in (None, ""):
        try:
            factor = parse(override)
        except DecimalError as error:
            problems.append((f"{where}.factor", str(error)))
        if _text(reason, 500) is None:
            problems.append(
                (f"{where}.factor_reason", "a factor override needs a reason (1–500 chars)")
            )
    elif reason not in (None, ""):
        problems.append((f"{where}.factor_reason", "only with a factor override"))
    if len(problems) > before:
        return None
    assert isinstance(kind, str) and isinstance(unit, str) and name is not None
    if override not in (None, ""):
        assert isinstance(reason, str)
        kg = mul(mul(activity, factor), _KG_PER_T)
        return SourceResult(kind, name, activity, unit, factor, unit, "override", reason, kg)
    default = table.get(kind, name)
    if default is None:
        known = ", ".join(table.names(kind)) or "none"
        problems.append(
            (
                f"{where}.name",
                f"no default factor for {kind} {name!r} (known: {known}); "
                "give factor and factor_reason",
            )
        )
        return None
    base, per_unit = UNITS[unit]
    if base != UNITS[default.unit][0]:
        problems.append((f"{where}.unit", f"{name} is measured in {default.unit}, not {unit}"))
        return None
    in_factor_unit = mul(activity, div(per_unit, UNITS[default.unit][1]))
    kg = mul(mul(in_factor_unit, default.t_per_unit), _KG_PER_T)
    return SourceResult(
        kind, name, activity, unit, default.t_per_unit, default.unit, default.source, "", kg
    )


def compute_report(
    sources: Sequence[object],
    output_value: object,
    energy_tce: object,
    pollutants: Mapping[str, object],
    table: FactorTable = DEFAULT_TABLE,
) -> tuple[ReportFigures | None, list[Problem]]:
    """The report's figures, or None and every problem found (all of them, not the first)."""
    problems: list[Problem] = []
    if not isinstance(sources, Sequence) or isinstance(sources, str | bytes):
        return None, [("sources", "must be a list")]
    if not 1 <= len(sources) <= MAX_SOURCES:
        return None, [("sources", f"must hold 1 to {MAX_SOURCES} sources")]
    results = [_source(i, raw, table, problems) for i, raw in enumerate(sources)]
    figures: dict[str, Decimal] = {}
    for name, value in (("output_value", output_value), ("energy_tce", energy_tce)):
        try:
            figures[name] = parse(value)
        except DecimalError as error:
            problems.append((name, str(error)))
    amounts = dict.fromkeys(POLLUTANTS, ZERO)
    if not isinstance(pollutants, Mapping):
        problems.append(("pollutants", "must be an object"))
    else:
        for key in sorted(pollutants, key=str):
            if key not in amounts:
                problems.append((f"pollutants.{key}", f"must be one of {', '.join(POLLUTANTS)}"))
                continue
            try:
                amounts[key] = parse(pollutants[key])
            except DecimalError as error:
                problems.append((f"pollutants.{key}", str(error)))
    if problems:
        return None, problems
    done = tuple(r for r in results if r is not None)
    total = ZERO
    for result in done:
        total = add(total, result.kg_co2e)
    report = ReportFigures(done, total, figures["output_value"], figures["energy_tce"], amounts)
    return report, []
