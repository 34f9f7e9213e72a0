"""Emission factors: the default table, unit conversions, and the lookup a report uses.

A factor is t CO2e per unit of activity. Activity may be reported in any unit that
converts to the factor's unit (kg of coal against a per-tonne factor, kWh against a
per-MWh one); the conversion is an exact decimal, never a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.registry.decimals import parse
from services.registry.factor_data import DEFAULT_FACTORS

__all__ = ["DEFAULT_TABLE", "KINDS", "UNITS", "Factor", "FactorTable"]

#: Source kinds of RULES.md: fuel combustion, purchased electricity and heat, process.
KINDS = ("fuel", "electricity", "heat", "process")

#: unit → (base unit, how many base units one unit is). A report's activity unit must
#: convert to the unit of the factor it is multiplied with.
UNITS: dict[str, tuple[str, Decimal]] = {
    "t": ("t", Decimal(1)),
    "kg": ("t", Decimal("0.001")),
    "10^4 Nm3": ("10^4 Nm3", Decimal(1)),
    "Nm3": ("10^4 Nm3", Decimal("0.0001")),
    "MWh": ("MWh", Decimal(1)),
    "kWh": ("MWh", Decimal("0.001")),
    "10^4 kWh": ("MWh", Decimal(10)),
    "GJ": ("GJ", Decimal(1)),
    "TJ": ("GJ", Decimal(1000)),
}


@dataclass(frozen=True, slots=True)
class Factor:
    kind: str
    name: str
    unit: str
    t_per_unit: Decimal
    source: str


class FactorTable:
    """Factors by (kind, name); immutable once built."""

    def __init__(self, factors: tuple[Factor, ...]) -> None:
        self._factors = {(f.kind, f.name): f for f in factors}
        if len(self._factors) != len(factors):
            raise ValueError("two factors for one (kind, name)")
        for f in factors:
            if f.kind not in KINDS or f.unit not in UNITS:
                raise ValueError(f"factor {f.name}: unknown kind or unit")

    def get(self, kind: str, name: str) -> Factor | None:
        return self._factors.get((kind, name))

    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self._factors if k == kind)


DEFAULT_TABLE = FactorTable(
    tuple(
        Factor(kind, name, unit, parse(value), source)
        for kind, name, unit, value, source in DEFAULT_FACTORS
    )
)
