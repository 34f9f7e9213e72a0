"""The registry's pure domain, checked against numbers worked out by hand.

Credit codes (GB 32100-2015), the default factor table, emissions per source, the three
quota methods and the period-close rounding, and the four-dimension evaluation. No
engine, no store: these are functions of their inputs.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from services.registry import credit_code
from services.registry.decimals import DecimalError, fmt, parse
from services.registry.emissions import compute_report
from services.registry.evaluation import (
    EvaluationInput,
    EvaluationSettings,
    SectorBenchmarks,
    Weights,
    evaluate,
    parse_benchmarks,
    parse_weights,
)
from services.registry.factors import DEFAULT_TABLE
from services.registry.quotas import compute_quota, parse_allocation, period_balance

# ---------------------------------------------------------------------------- credit code

# The example of GB 32100-2015 itself, and a real registered company's code.
VALID_CODES = ["91350100M000100Y43", "91110000600037341L"]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_credit_codes(code: str) -> None:
    assert credit_code.problem(code) is None


def test_check_character_worked_by_hand() -> None:
    # 91350100M000100Y4: values 9,1,3,5,0,1,0,0,M=21,0,0,0,1,0,0,Y=30,4
    # weights (3^i mod 31): 1,3,9,27,19,26,16,17,20,29,25,13,8,24,10,30,28
    # sum = 9 + 3 + 27 + 135 + 0 + 26 + 0 + 0 + 420 + 0 + 0 + 0 + 8 + 0 + 0 + 900 + 112
    #     = 1640; 1640 mod 31 = 28; check = 31 - 28 = 3
    assert credit_code.WEIGHTS == (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    assert credit_code.check_character("91350100M000100Y4") == "3"


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("91350100M000100Y44", "check character is '4', expected '3'"),
        ("91350100M000100Y4", "must be 18 characters"),
        ("91350100M000100I43", "alphabet: I"),  # I is never used (looks like 1)
        ("9135A100M000100Y43", "administrative division code"),
        ("91350100m000100y43", "alphabet: my"),  # lower case is not the code
    ],
)
def test_invalid_credit_codes_say_what_is_wrong(code: str, problem: str) -> None:
    found = credit_code.problem(code)
    assert found is not None and problem in found


# ---------------------------------------------------------------------------- factors


def test_default_factor_table_covers_the_common_fuels_with_sources() -> None:
    expected = {
        ("fuel", "raw_coal"): ("t", "1.9003"),
        ("fuel", "coke"): ("t", "2.8604"),
        ("fuel", "natural_gas"): ("10^4 Nm3", "21.622"),
        ("fuel", "fuel_oil"): ("t", "3.1705"),
        ("fuel", "diesel"): ("t", "3.0959"),
        ("fuel", "gasoline"): ("t", "2.9251"),
        ("fuel", "lpg"): ("t", "3.1013"),
        ("electricity", "grid"): ("MWh", "0.5703"),
        ("heat", "purchased_heat"): ("GJ", "0.11"),
    }
    for (kind, name), (unit, value) in expected.items():
        factor = DEFAULT_TABLE.get(kind, name)
        assert factor is not None, name
        assert (factor.unit, factor.t_per_unit) == (unit, D(value))
        assert factor.source  # every factor names where it was published


def test_raw_coal_factor_is_the_guideline_formula() -> None:
    # NCV 20.908 GJ/t × 26.37 tC/TJ × 94% oxidation × 44/12 = 1.90029… t CO2/t
    computed = D("20.908") * D("0.02637") * D("0.94") * D(44) / D(12)
    assert computed.quantize(D("0.0001")) == DEFAULT_TABLE.get("fuel", "raw_coal").t_per_unit  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- emissions


def _report(*sources: dict[str, str], **figures: object) -> tuple[object, list[tuple[str, str]]]:
    return compute_report(
        list(sources),
        figures.get("output_value", "100"),
        figures.get("energy_tce", "1"),
        figures.get("pollutants", {}),  # type: ignore[arg-type]
    )


def test_emissions_per_source_in_kg_with_unit_conversion() -> None:
    report, problems = _report(
        # 2,000 t raw coal × 1.9003 = 3,800.6 t = 3,800,600 kg
        {"kind": "fuel", "name": "raw_coal", "activity": "2000", "unit": "t"},
        # 1,500,000 Nm3 = 150 × 10^4 Nm3; × 21.622 = 3,243.3 t
        {"kind": "fuel", "name": "natural_gas", "activity": "1500000", "unit": "Nm3"},
        # 3,000,000 kWh = 3,000 MWh; × 0.5703 = 1,710.9 t
        {"kind": "electricity", "name": "grid", "activity": "3000000", "unit": "kWh"},
        # 500 GJ × 0.11 = 55 t
        {"kind": "heat", "name": "purchased_heat", "activity": "500", "unit": "GJ"},
        # 20,000 kg LPG = 20 t; × 3.1013 = 62.026 t
        {"kind": "fuel", "name": "lpg", "activity": "20000", "unit": "kg"},
    )
    assert problems == []
    assert report is not None
    kg = [fmt(s.kg_co2e) for s in report.sources]  # type: ignore[attr-defined]
    assert kg == ["3800600", "3243300", "1710900", "55000", "62026"]
    # 3,800,600 + 3,243,300 + 1,710,900 + 55,000 + 62,026 = 8,871,826 kg
    assert report.total_kg == D(8_871_826)  # type: ignore[attr-defined]
    gas = report.sources[1]  # type: ignore[attr-defined]
    assert (gas.factor, gas.factor_unit) == (D("21.622"), "10^4 Nm3")
    assert "NDRC" in gas.factor_source


def test_factor_override_needs_a_reason_and_is_recorded() -> None:
    process = {"kind": "process", "name": "solvent_incineration", "activity": "100", "unit": "t"}
    _, problems = _report({**process, "factor": "2.5"})
    assert problems == [
        ("sources[0].factor_reason", "a factor override needs a reason (1–500 chars)")
    ]
    report, problems = _report({**process, "factor": "2.5", "factor_reason": "lab test 2025-03"})
    assert problems == []
    (source,) = report.sources  # type: ignore[attr-defined]
    # 100 t × 2.5 t CO2e/t = 250 t
    assert (source.kg_co2e, source.factor_source, source.factor_reason) == (
        D(250_000),
        "override",
        "lab test 2025-03",
    )


def test_bad_sources_are_refused_with_every_problem_named() -> None:
    report, problems = _report(
        {"kind": "fuel", "name": "raw_coal", "activity": "-5", "unit": "t"},
        {"kind": "fuel", "name": "peat", "activity": "10", "unit": "t"},
        {"kind": "fuel", "name": "coke", "activity": "10", "unit": "MWh"},
        {"kind": "wind", "name": "x", "activity": "1.5e400", "unit": "t"},
        {"kind": "fuel", "name": "diesel", "activity": 1.5, "unit": "t"},  # type: ignore[dict-item]
    )
    assert report is None
    fields = [field for field, _ in problems]
    assert fields == [
        "sources[0].activity",
        "sources[1].name",
        "sources[2].unit",
        "sources[3].kind",
        "sources[3].activity",
        "sources[4].activity",
    ]
    messages = dict(problems)
    assert messages["sources[0].activity"] == "must not be negative"
    assert "no default factor for fuel 'peat'" in messages["sources[1].name"]
    assert messages["sources[4].activity"] == "must be a decimal string"  # floats refused


def test_report_figures_are_checked_too() -> None:
    src = {"kind": "fuel", "name": "coke", "activity": "1", "unit": "t"}
    _, problems = _report(
        src, output_value="-1", energy_tce="x", pollutants={"so2": "-1", "mercury": "1"}
    )
    assert [f for f, _ in problems] == [
        "output_value",
        "energy_tce",
        "pollutants.mercury",
        "pollutants.so2",
    ]
    assert compute_report([], "1", "1", {})[1] == [("sources", "must hold 1 to 100 sources")]


def test_decimal_parsing_refuses_floats_and_non_finite() -> None:
    assert parse("  12.50 ") == D("12.5")
    assert parse(7) == D(7)
    for bad in (1.5, "NaN", "Infinity", True, None, "1e99", "abc", "1e16", "0.0000000000001"):
        with pytest.raises(DecimalError):
            parse(bad)
    assert fmt(D("1.500")) == "1.5" and fmt(D("1E+3")) == "1000" and fmt(D("-0")) == "0"


# ---------------------------------------------------------------------------- quotas


def test_benchmark_quota() -> None:
    allocation, problems = parse_allocation("benchmark", {"benchmark_t_per_unit": "0.5"})
    assert problems == [] and allocation is not None
    quota = compute_quota(allocation, D(12_000))
    # 0.5 t per 10k CNY × 12,000 (10k CNY) = 6,000 t
    assert quota.kg == D(6_000_000)
    assert quota.inputs == {
        "benchmark_t_per_unit": "0.5",
        "output_value": "12000",
        "quota_t": "6000",
    }


def test_historical_intensity_quota() -> None:
    allocation, _ = parse_allocation(
        "historical", {"base_intensity": "0.05", "decline_factor": "0.96"}
    )
    assert allocation is not None
    # 0.05 × 0.96 × 50,000 = 2,400 t
    quota = compute_quota(allocation, D(50_000))
    assert quota.kg == D(2_400_000)
    assert quota.formula == "base_intensity × decline_factor × output_value"


def test_grandfathering_quota() -> None:
    allocation, _ = parse_allocation(
        "grandfathering", {"base_emissions_t": ["1000", "1200", "1100"], "decline_factor": "0.98"}
    )
    assert allocation is not None
    # mean(1,000, 1,200, 1,100) = 1,100; × 0.98 = 1,078 t (output is not used)
    quota = compute_quota(allocation, D(1))
    assert quota.kg == D(1_078_000)
    assert quota.inputs["base_mean_t"] == "1100"
    assert quota.inputs["base_emissions_t"] == ["1000", "1200", "1100"]


def test_grandfathering_mean_that_does_not_terminate_is_exact_to_34_digits() -> None:
    allocation, _ = parse_allocation(
        "grandfathering", {"base_emissions_t": ["1", "1", "2"], "decline_factor": "1"}
    )
    assert allocation is not None
    # 4/3 t = 1,333.33… kg: rounded only at close, half-up → 1 t
    quota = compute_quota(allocation, D(0))
    assert period_balance(quota.kg, D(0), 0) == 1


@pytest.mark.parametrize(
    ("method", "params", "fields"),
    [
        ("auction", {}, ["method"]),
        ("benchmark", {}, ["params.benchmark_t_per_unit"]),
        ("benchmark", {"benchmark_t_per_unit": "-1"}, ["params.benchmark_t_per_unit"]),
        ("historical", {"base_intensity": "1", "decline_factor": "1.2"}, ["params.decline_factor"]),
        (
            "grandfathering",
            {"base_emissions_t": [], "decline_factor": "1"},
            ["params.base_emissions_t"],
        ),
        ("benchmark", {"benchmark_t_per_unit": "1", "extra": "1"}, ["params.extra"]),
    ],
)
def test_bad_allocations(method: str, params: dict[str, object], fields: list[str]) -> None:
    allocation, problems = parse_allocation(method, params)
    assert allocation is None
    assert [f for f, _ in problems] == fields


def test_period_balance_rounds_once_half_up_then_deducts() -> None:
    # 6,000 t - 6,652.1 t = -652.1 → -652 (an obligation of 652)
    assert period_balance(D(6_000_000), D(6_652_100), 0) == -652
    # 6,000 - 4,954.2 = 1,045.8 → 1,046 credits
    assert period_balance(D(6_000_000), D(4_954_200), 0) == 1_046
    # ties go away from zero: ±2.5 t → ±3 t
    assert period_balance(D(2_500), D(0), 0) == 3
    assert period_balance(D(0), D(2_500), 0) == -3
    # a 59 t shortfall deducted: 222.55 → 223 - 59 = 164
    assert period_balance(D(1_078_000), D(855_450), 59) == 164


# ---------------------------------------------------------------------------- evaluation

STEEL = SectorBenchmarks(
    output_value=D(10_000),
    energy_intensity=D("0.3"),
    carbon_intensity=D("0.5"),
    pollutants=(("nox", D("0.0005")), ("so2", D("0.0005"))),
)


def _figures(**overrides: object) -> EvaluationInput:
    base: dict[str, object] = {
        "output_value": D(12_000),
        "previous_output_value": None,
        "energy_tce": D(3_300),
        "pollutants": {"so2": D("4.8"), "nox": D("7.2")},
        "emissions_kg": D(6_652_100),
        "shortfall_periods": (),
    }
    return EvaluationInput(**{**base, **overrides})  # type: ignore[arg-type]


def test_evaluation_worked_by_hand() -> None:
    result = evaluate(_figures(), STEEL, EvaluationSettings())
    # economy: level min(100, 100 × 12,000 / 10,000) = 100; growth: no previous → 60;
    #          (100 + 60) / 2 = 80
    # energy: 3,300 / 12,000 = 0.275 tce per 10k CNY; r = 0.275 / 0.3 = 0.91667;
    #         100 - 80 × (0.91667 - 0.5) = 66.67
    # pollution: so2 4.8 / 12,000 = 0.0004, r 0.8 → 76; nox 7.2 / 12,000 = 0.0006,
    #            r 1.2 → 44; mean 60
    # carbon: 6,652.1 t / 12,000 = 0.554342; r = 1.108683; 100 - 80 × 0.608683 = 51.305;
    #         0.8 × 51.305 + 0.2 × 100 (no shortfall) = 61.04
    assert {k: fmt(v) for k, v in result.scores.items()} == {
        "economy": "80",
        "energy": "66.67",
        "pollution": "60",
        "carbon": "61.04",
    }
    # (20 × 80 + 25 × 66.67 + 20 × 60 + 35 × 61.04) / 100 = 6,603.15 / 100 = 66.03 → C
    assert (fmt(result.total), result.grade, result.near_zero_carbon) == ("66.03", "C", False)
    assert result.inputs["energy"]["energy_intensity"] == "0.275"
    assert result.inputs["pollution"]["pollutant_scores"] == {"nox": "44", "so2": "76"}
    assert result.inputs["carbon"]["compliance_score"] == "100"


def test_growth_compliance_and_near_zero() -> None:
    result = evaluate(
        _figures(
            previous_output_value=D(10_000),  # +20% growth: 60 + 400 × 0.2 = 140 → 100
            emissions_kg=D(1_200_000),  # 1,200 t / 12,000 = 0.1 = 20% of 0.5: near zero
            shortfall_periods=("2024",),
        ),
        STEEL,
        EvaluationSettings(),
    )
    # economy (100 + 100) / 2 = 100; carbon: r = 0.2 → 100 (capped); 0.8 × 100 + 0 = 80
    assert (result.scores["economy"], result.scores["carbon"]) == (D(100), D(80))
    assert result.near_zero_carbon
    assert result.inputs["economy"]["growth"] == "0.2"
    assert result.inputs["carbon"]["shortfall_periods"] == ["2024"]


def test_grades_and_weights_are_settings() -> None:
    weights, problems = parse_weights(
        {"economy": "25", "energy": "25", "pollution": "25", "carbon": "25"}
    )
    assert problems == [] and weights == Weights(D(25), D(25), D(25), D(25))
    result = evaluate(_figures(), STEEL, EvaluationSettings(weights=weights))  # type: ignore[arg-type]
    # (80 + 66.67 + 60 + 61.04) / 4 = 66.9275 → 66.93
    assert fmt(result.total) == "66.93"
    assert parse_weights({"economy": "50", "energy": "25", "pollution": "20", "carbon": "35"})[
        1
    ] == [("weights", "must sum to 100, not 130")]
    assert (
        evaluate(
            _figures(), STEEL, EvaluationSettings(grades=(("A", D(60)),), lowest_grade="F")
        ).grade
        == "A"
    )


def test_zero_output_scores_intensities_zero() -> None:
    result = evaluate(_figures(output_value=D(0)), STEEL, EvaluationSettings())
    # level 0, growth 60 → 30; every intensity undefined → 0; carbon 0.8 × 0 + 20 = 20
    assert {k: fmt(v) for k, v in result.scores.items()} == {
        "economy": "30",
        "energy": "0",
        "pollution": "0",
        "carbon": "20",
    }
    assert result.inputs["energy"]["energy_intensity"] == "undefined"
    assert not result.near_zero_carbon


def test_benchmarks_are_validated() -> None:
    ok, problems = parse_benchmarks(
        {
            "output_value": "10000",
            "energy_intensity": "0.3",
            "carbon_intensity": "0.5",
            "pollutants": {"so2": "0.0005", "nox": "0.0005"},
        }
    )
    assert problems == [] and ok == STEEL
    _, problems = parse_benchmarks(
        {"output_value": "0", "energy_intensity": "x", "pollutants": {"lead": "1"}}
    )
    assert [f for f, _ in problems] == [
        "benchmarks.output_value",
        "benchmarks.energy_intensity",
        "benchmarks.carbon_intensity",
        "benchmarks.pollutants.lead",
    ]
