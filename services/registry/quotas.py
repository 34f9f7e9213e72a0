"""Quotas (allocations) by the three methods of RULES.md, each showing its inputs.

- ``benchmark``: quota = benchmark t CO2e per unit of output × actual output;
- ``historical``: quota = base-year intensity × decline factor × actual output;
- ``grandfathering``: quota = mean of the base years' emissions × decline factor.

The unit of output is the report's industrial output value (10k CNY), so benchmarks and
intensities are t CO2e per 10k CNY. Quotas are exact decimals in kg CO2e; the only
rounding is :func:`period_balance`'s, at period close, where credits or obligations
are created (RULES.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
    round_half_up,
    sub,
)

__all__ = ["METHODS", "Allocation", "Quota", "compute_quota", "parse_allocation", "period_balance"]

METHODS = ("benchmark", "historical", "grandfathering")
_PARAMS = {
    "benchmark": ("benchmark_t_per_unit",),
    "historical": ("base_intensity", "decline_factor"),
    "grandfathering": ("base_emissions_t", "decline_factor"),
}
_KG_PER_T = Decimal(1000)
MAX_BASE_YEARS = 10

Problem = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Allocation:
    """A validated method and its parameters (decimals; base emissions as a tuple)."""

    method: str
    values: dict[str, Decimal]
    base_emissions_t: tuple[Decimal, ...] = ()

    def as_params(self) -> dict[str, Any]:
        """The parameters in canonical plain data (decimal text, a list of them)."""
        params: dict[str, Any] = {k: fmt(v) for k, v in sorted(self.values.items())}
        if self.method == "grandfathering":
            params["base_emissions_t"] = [fmt(v) for v in self.base_emissions_t]
        return params


@dataclass(frozen=True, slots=True)
class Quota:
    method: str
    kg: Decimal
    formula: str
    inputs: dict[str, Any]  # plain data: every figure the quota came from


def parse_allocation(method: object, params: object) -> tuple[Allocation | None, list[Problem]]:
    """A validated allocation, or None and the problems."""
    if method not in METHODS:
        return None, [("method", f"must be one of {', '.join(METHODS)}")]
    assert isinstance(method, str)
    if not isinstance(params, Mapping):
        return None, [("params", "must be an object")]
    problems: list[Problem] = []
    wanted = _PARAMS[method]
    for key in sorted(set(params) - set(wanted), key=str):
        problems.append((f"params.{key}", f"not a parameter of {method}"))
    values: dict[str, Decimal] = {}
    base: list[Decimal] = []
    for key in wanted:
        if key not in params:
            problems.append((f"params.{key}", "required"))
            continue
        raw = params[key]
        if key == "base_emissions_t":
            if not isinstance(raw, list | tuple) or not 1 <= len(raw) <= MAX_BASE_YEARS:
                problems.append((f"params.{key}", f"must list 1 to {MAX_BASE_YEARS} years"))
                continue
            for i, item in enumerate(raw):
                try:
                    base.append(parse(item))
                except DecimalError as error:
                    problems.append((f"params.{key}[{i}]", str(error)))
            continue
        try:
            values[key] = parse(raw)
        except DecimalError as error:
            problems.append((f"params.{key}", str(error)))
            continue
        if key == "decline_factor" and not ZERO < values[key] <= ONE:
            problems.append((f"params.{key}", "must be above 0 and at most 1"))
    if problems:
        return None, problems
    return Allocation(method, values, tuple(base)), []


def compute_quota(allocation: Allocation, output_value: Decimal) -> Quota:
    """The quota in kg CO2e for an enterprise whose verified output is `output_value`."""
    v = allocation.values
    inputs: dict[str, Any] = allocation.as_params()
    if allocation.method == "benchmark":
        tonnes = mul(v["benchmark_t_per_unit"], output_value)
        formula = "benchmark_t_per_unit × output_value"
        inputs["output_value"] = fmt(output_value)
    elif allocation.method == "historical":
        tonnes = mul(mul(v["base_intensity"], v["decline_factor"]), output_value)
        formula = "base_intensity × decline_factor × output_value"
        inputs["output_value"] = fmt(output_value)
    else:
        total = ZERO
        for year in allocation.base_emissions_t:
            total = add(total, year)
        mean = div(total, Decimal(len(allocation.base_emissions_t)))
        tonnes = mul(mean, v["decline_factor"])
        formula = "mean(base_emissions_t) × decline_factor"
        inputs["base_mean_t"] = fmt(mean)
    inputs["quota_t"] = fmt(tonnes)
    return Quota(allocation.method, mul(tonnes, _KG_PER_T), formula, inputs)


def period_balance(quota_kg: Decimal, emissions_kg: Decimal, deduction_t: int) -> int:
    """Whole tonnes of surplus (> 0) or deficit (< 0) at period close.

    The exact difference is rounded once, half-up (a tie goes away from zero, so a
    2.5 t deficit is a 3 t obligation and a 2.5 t surplus 3 credits), then earlier
    shortfalls deducted from this period's allocation are subtracted.
    """
    return round_half_up(div(sub(quota_kg, emissions_kg), _KG_PER_T)) - deduction_t
