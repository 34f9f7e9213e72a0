"""The default emission factor table: data only, one row per fuel or energy carrier.

Kept as a Python module rather than a CSV beside it so that it ships in every kind of
install (a wheel built without package-data rules would silently drop a CSV).

Columns: kind, name, unit, factor (t CO2 per unit, decimal text), published source.

Fuel factors are the default values of the national guidelines for enterprise GHG
accounting: 《工业其他行业企业温室气体排放核算方法与报告指南(试行)》 (NDRC, 2015,
annex 2, table 2.1), computed there as net calorific value × carbon content per unit of
heat × oxidation rate × 44/12. The same defaults appear in the sector guidelines of
2013–2015 (e.g. 《中国钢铁生产企业温室气体排放核算方法与报告指南(试行)》).
"""

from __future__ import annotations

__all__ = ["DEFAULT_FACTORS"]

_GUIDE = "NDRC 2015 industrial GHG accounting guideline, annex 2 table 2.1"

DEFAULT_FACTORS: tuple[tuple[str, str, str, str, str], ...] = (
    # NCV 20.908 GJ/t × 26.37 tC/TJ × 94% × 44/12 = 1.9003 t CO2/t
    ("fuel", "raw_coal", "t", "1.9003", f"{_GUIDE}: raw coal (原煤)"),
    # NCV 28.435 GJ/t × 29.5 tC/TJ × 93% × 44/12 = 2.8604 t CO2/t
    ("fuel", "coke", "t", "2.8604", f"{_GUIDE}: coke (焦炭)"),
    # NCV 389.31 GJ/10^4 Nm3 × 15.3 tC/TJ × 99% × 44/12 = 21.622 t CO2/10^4 Nm3
    ("fuel", "natural_gas", "10^4 Nm3", "21.622", f"{_GUIDE}: natural gas (天然气)"),
    # NCV 41.816 GJ/t × 21.1 tC/TJ × 98% × 44/12 = 3.1705 t CO2/t
    ("fuel", "fuel_oil", "t", "3.1705", f"{_GUIDE}: fuel oil (燃料油)"),
    # NCV 42.652 GJ/t × 20.2 tC/TJ × 98% × 44/12 = 3.0959 t CO2/t
    ("fuel", "diesel", "t", "3.0959", f"{_GUIDE}: diesel (柴油)"),
    # NCV 43.070 GJ/t × 18.9 tC/TJ × 98% × 44/12 = 2.9251 t CO2/t
    ("fuel", "gasoline", "t", "2.9251", f"{_GUIDE}: gasoline (汽油)"),
    # NCV 50.179 GJ/t × 17.2 tC/TJ × 98% × 44/12 = 3.1013 t CO2/t
    ("fuel", "lpg", "t", "3.1013", f"{_GUIDE}: liquefied petroleum gas (液化石油气)"),
    # National grid average emission factor for 2022, published by the Ministry of
    # Ecology and Environment (环办气候函[2023]43号): 0.5703 t CO2/MWh.
    ("electricity", "grid", "MWh", "0.5703", "MEE national grid average factor 2022 (2023 No. 43)"),
    # Purchased heat (steam, hot water): 0.11 t CO2/GJ, the guideline's default.
    ("heat", "purchased_heat", "GJ", "0.11", f"{_GUIDE}: purchased heat default"),
)
