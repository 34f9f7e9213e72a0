"""The zone's carbon-credit evaluation: four dimension scores, a weighted total, a grade.

Every score is a pure function of verified report figures, the sector's benchmarks and
the compliance record, and comes back with each input it used, so that a regulator can
check it by hand. Scoring rules (all are :class:`EvaluationSettings`):

- *ratio score* of a "lower is better" figure against its benchmark, r = actual ÷
  benchmark: 100 at r ≤ 0.5 (half the benchmark or better), 60 at r = 1 (meets the
  benchmark), falling on the same line to 0 (at r = 1.75); i.e.
  ``clamp(100 - 80 × (r - 0.5), 0, 100)``;
- economy = mean of *level* ``min(100, 100 × output ÷ sector output benchmark)`` and
  *growth* ``clamp(60 + 400 × g, 0, 100)`` with g the growth of output value over the
  previous period's verified report (60, neutral, when there is none: +10% scores 100);
- energy = ratio score of energy intensity (tce per 10k CNY);
- pollution = mean ratio score over the pollutants the sector has a benchmark for
  (t per 10k CNY);
- carbon = 80% ratio score of carbon intensity (t CO2e per 10k CNY) + 20% compliance
  (100 when no shortfall was ever recorded against the enterprise, else 0);
- total = Σ weight × score ÷ 100 (weights 20/25/20/35 by default); grade A ≥ 85,
  B ≥ 70, C ≥ 55, else D; near-zero carbon factory when carbon intensity ≤ 20% of the
  sector benchmark.

Dimension scores and the total are rounded half-up to 0.01; a zero output value makes
every intensity undefined, which scores 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.registry.decimals import (
    ONE,
    ZERO,
    DecimalError,
    add,
    div,
    fmt,
    mul,
    parse,
    quantize,
    sub,
)
from services.registry.emissions import POLLUTANTS

__all__ = [
    "DIMENSIONS",
    "Evaluation",
    "EvaluationInput",
    "EvaluationSettings",
    "SectorBenchmarks",
    "Weights",
    "evaluate",
    "parse_benchmarks",
    "parse_weights",
]

DIMENSIONS = ("economy", "energy", "pollution", "carbon")
HUNDRED = Decimal(100)
_KG_PER_T = Decimal(1000)

Problem = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Weights:
    economy: Decimal = Decimal(20)
    energy: Decimal = Decimal(25)
    pollution: Decimal = Decimal(20)
    carbon: Decimal = Decimal(35)

    def as_data(self) -> dict[str, str]:
        return {name: fmt(getattr(self, name)) for name in DIMENSIONS}


@dataclass(frozen=True, slots=True)
class EvaluationSettings:
    weights: Weights = field(default_factory=Weights)
    grades: tuple[tuple[str, Decimal], ...] = (
        ("A", Decimal(85)),
        ("B", Decimal(70)),
        ("C", Decimal(55)),
    )
    lowest_grade: str = "D"
    full_marks_ratio: Decimal = Decimal("0.5")  # ratio at or below which a score is 100
    pass_score: Decimal = Decimal(60)  # the score of a figure exactly at its benchmark
    growth_for_full_marks: Decimal = Decimal("0.1")  # output growth scoring 100
    compliance_share: Decimal = Decimal("0.2")  # of the carbon score
    near_zero_ratio: Decimal = Decimal("0.2")


@dataclass(frozen=True, slots=True)
class SectorBenchmarks:
    output_value: Decimal  # 10k CNY: a typical enterprise's output in the sector
    energy_intensity: Decimal  # tce per 10k CNY
    carbon_intensity: Decimal  # t CO2e per 10k CNY
    pollutants: tuple[tuple[str, Decimal], ...]  # (pollutant, t per 10k CNY), sorted

    def as_data(self) -> dict[str, Any]:
        return {
            "output_value": fmt(self.output_value),
            "energy_intensity": fmt(self.energy_intensity),
            "carbon_intensity": fmt(self.carbon_intensity),
            "pollutants": {name: fmt(value) for name, value in self.pollutants},
        }


@dataclass(frozen=True, slots=True)
class EvaluationInput:
    output_value: Decimal
    previous_output_value: Decimal | None  # from the previous period's verified report
    energy_tce: Decimal
    pollutants: Mapping[str, Decimal]
    emissions_kg: Decimal
    shortfall_periods: tuple[str, ...]  # periods whose deadline found a shortfall


@dataclass(frozen=True, slots=True)
class Evaluation:
    scores: dict[str, Decimal]
    total: Decimal
    grade: str
    near_zero_carbon: bool
    inputs: dict[str, dict[str, Any]]


def _positive(raw: object, name: str, problems: list[Problem]) -> Decimal:
    try:
        value = parse(raw)
    except DecimalError as error:
        problems.append((name, str(error)))
        return ONE
    if value <= 0:
        problems.append((name, "must be above 0"))
    return value


def parse_benchmarks(raw: object) -> tuple[SectorBenchmarks | None, list[Problem]]:
    if not isinstance(raw, Mapping):
        return None, [("benchmarks", "must be an object")]
    problems: list[Problem] = []
    keys = ("output_value", "energy_intensity", "carbon_intensity", "pollutants")
    for key in sorted(set(raw) - set(keys), key=str):
        problems.append((f"benchmarks.{key}", "unknown benchmark"))
    output, energy, carbon = (_positive(raw.get(k), f"benchmarks.{k}", problems) for k in keys[:3])
    pollutants: list[tuple[str, Decimal]] = []
    table = raw.get("pollutants")
    if not isinstance(table, Mapping) or not table:
        problems.append(("benchmarks.pollutants", "must name at least one pollutant"))
    else:
        for name in sorted(table, key=str):
            if name not in POLLUTANTS:
                problems.append(
                    (f"benchmarks.pollutants.{name}", f"must be one of {', '.join(POLLUTANTS)}")
                )
                continue
            pollutants.append(
                (name, _positive(table[name], f"benchmarks.pollutants.{name}", problems))
            )
    if problems:
        return None, problems
    return SectorBenchmarks(output, energy, carbon, tuple(pollutants)), []


def parse_weights(raw: Mapping[str, object]) -> tuple[Weights | None, list[Problem]]:
    """Weights from `raw` (all four dimensions, summing to 100); empty means the defaults."""
    if not raw:
        return Weights(), []
    problems: list[Problem] = []
    for key in sorted(set(raw) - set(DIMENSIONS), key=str):
        problems.append((f"weights.{key}", "unknown dimension"))
    values: dict[str, Decimal] = {}
    for name in DIMENSIONS:
        try:
            values[name] = parse(raw.get(name))
        except DecimalError as error:
            problems.append((f"weights.{name}", str(error)))
    if not problems:
        total = ZERO
        for value in values.values():
            total = add(total, value)
        if total != HUNDRED:
            problems.append(("weights", f"must sum to 100, not {fmt(total)}"))
    if problems:
        return None, problems
    return Weights(**values), []


def _clamp(value: Decimal) -> Decimal:
    return min(HUNDRED, max(ZERO, value))


def _ratio_score(actual: Decimal | None, benchmark: Decimal, s: EvaluationSettings) -> Decimal:
    if actual is None:
        return ZERO
    ratio = div(actual, benchmark)
    slope = div(sub(HUNDRED, s.pass_score), sub(ONE, s.full_marks_ratio))
    return _clamp(sub(HUNDRED, mul(slope, sub(ratio, s.full_marks_ratio))))


def _per_output(amount: Decimal, output: Decimal) -> Decimal | None:
    return None if output.is_zero() else div(amount, output)


def _text(value: Decimal | None) -> str:
    return "undefined" if value is None else fmt(value)


def evaluate(
    figures: EvaluationInput, benchmarks: SectorBenchmarks, settings: EvaluationSettings
) -> Evaluation:
    s = settings
    v = figures.output_value
    two = Decimal(2)

    level = ZERO if v.is_zero() else _clamp(div(mul(HUNDRED, v), benchmarks.output_value))
    previous = figures.previous_output_value
    growth: Decimal | None = None
    if previous is None or previous.is_zero():
        growth_score = s.pass_score
    else:
        growth = div(sub(v, previous), previous)
        slope = div(sub(HUNDRED, s.pass_score), s.growth_for_full_marks)
        growth_score = _clamp(add(s.pass_score, mul(slope, growth)))
    economy = div(add(level, growth_score), two)

    energy_intensity = _per_output(figures.energy_tce, v)
    energy = _ratio_score(energy_intensity, benchmarks.energy_intensity, s)

    pollutant_scores: dict[str, str] = {}
    total_pollution = ZERO
    for name, benchmark in benchmarks.pollutants:
        intensity = _per_output(figures.pollutants.get(name, ZERO), v)
        score = _ratio_score(intensity, benchmark, s)
        pollutant_scores[name] = fmt(quantize(score, 2))
        total_pollution = add(total_pollution, score)
    pollution = div(total_pollution, Decimal(len(benchmarks.pollutants)))

    emissions_t = div(figures.emissions_kg, _KG_PER_T)
    carbon_intensity = _per_output(emissions_t, v)
    intensity_score = _ratio_score(carbon_intensity, benchmarks.carbon_intensity, s)
    compliance = ZERO if figures.shortfall_periods else HUNDRED
    carbon = add(
        mul(sub(ONE, s.compliance_share), intensity_score), mul(s.compliance_share, compliance)
    )

    scores = {
        "economy": quantize(economy, 2),
        "energy": quantize(energy, 2),
        "pollution": quantize(pollution, 2),
        "carbon": quantize(carbon, 2),
    }
    weighted = ZERO
    for name in DIMENSIONS:
        weighted = add(weighted, mul(getattr(s.weights, name), scores[name]))
    total = quantize(div(weighted, HUNDRED), 2)
    grade = next((g for g, floor in s.grades if total >= floor), s.lowest_grade)
    near_zero = carbon_intensity is not None and carbon_intensity <= mul(
        s.near_zero_ratio, benchmarks.carbon_intensity
    )
    inputs: dict[str, dict[str, Any]] = {
        "economy": {
            "output_value": fmt(v),
            "previous_output_value": "none" if previous is None else fmt(previous),
            "benchmark_output_value": fmt(benchmarks.output_value),
            "level_score": fmt(quantize(level, 2)),
            "growth": _text(None if growth is None else quantize(growth, 4)),
            "growth_score": fmt(quantize(growth_score, 2)),
        },
        "energy": {
            "energy_tce": fmt(figures.energy_tce),
            "energy_intensity": _text(
                None if energy_intensity is None else quantize(energy_intensity, 6)
            ),
            "benchmark_energy_intensity": fmt(benchmarks.energy_intensity),
        },
        "pollution": {
            "pollutants_t": {name: fmt(figures.pollutants.get(name, ZERO)) for name in POLLUTANTS},
            "benchmarks": {name: fmt(value) for name, value in benchmarks.pollutants},
            "pollutant_scores": pollutant_scores,
        },
        "carbon": {
            "emissions_t": fmt(emissions_t),
            "carbon_intensity": _text(
                None if carbon_intensity is None else quantize(carbon_intensity, 6)
            ),
            "benchmark_carbon_intensity": fmt(benchmarks.carbon_intensity),
            "intensity_score": fmt(quantize(intensity_score, 2)),
            "shortfall_periods": list(figures.shortfall_periods),
            "compliance_score": fmt(compliance),
        },
    }
    return Evaluation(scores, total, grade, near_zero, inputs)
