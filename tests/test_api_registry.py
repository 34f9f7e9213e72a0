"""The registry over HTTP, on both backends: register and approve two enterprises,
report, verify, allocate by two methods, close, trade to cover the deficit, surrender,
and read compliance; bad registry input changes nothing."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from services.gateway.auth import create_token
from tests.live import Live, live_system
from tests.test_registry_year import CODES

SELLER, BUYER = f"E-{CODES['S1']}", f"E-{CODES['S2']}"


@pytest.fixture
def live(store_url: str) -> Iterator[Live]:
    with live_system(store_url) as system:
        yield system


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _post(live: Live, who: str, path: str, body: Any = None, status: int = 200) -> Any:
    return _ok(live.client.post(path, headers=live.headers(who), json=body), status)


def test_a_compliance_period_over_http(live: Live) -> None:
    for name, code in (("Steel One", CODES["S1"]), ("Steel Two", CODES["S2"])):
        created = _post(live, "operator", "/v1/enterprises",
                        {"name": name, "sector": "steel", "credit_code": code}, 201)  # fmt: skip
        assert created["enterprise_id"] == f"E-{code}"
        eid = created["enterprise_id"]
        profile = _ok(live.client.get(f"/v1/enterprises/{eid}", headers=live.headers("regulator")))
        assert profile["status"] == "pending"
        _post(live, "regulator", f"/v1/enterprises/{eid}/approve", {})
        live.tokens[eid] = create_token(live.store.sql, "trader", eid)
    listed = _ok(live.client.get("/v1/enterprises", headers=live.headers("regulator")))
    statuses = {e["enterprise_id"]: e["status"] for e in listed["enterprises"]}
    assert statuses[SELLER] == statuses[BUYER] == "active"

    # The demo zone opened 2025; opening it again is a conflict, a new period is not.
    again_2025 = live.client.post("/v1/periods", headers=live.headers("regulator"),
                                  json={"period": "2025"})  # fmt: skip
    assert again_2025.status_code == 409 and again_2025.json()["reason"] == "period_exists"
    _post(live, "regulator", "/v1/periods",
          {"period": "2026", "deadline": "2027-12-31T23:59:59+08:00"}, 201)  # fmt: skip
    listed_periods = _ok(live.client.get("/v1/periods", headers=live.headers(SELLER)))["periods"]
    assert {p["period"]: p["status"] for p in listed_periods} == {"2025": "open", "2026": "open"}
    # S1: 2,000 t raw coal × 1.9003 + 5,000 MWh × 0.5703 = 3,800.6 + 2,851.5 = 6,652.1 t
    report = _post(live, SELLER, f"/v1/enterprises/{SELLER}/reports", {
        "period": "2025",
        "sources": [
            {"kind": "fuel", "name": "raw_coal", "activity": 2000, "unit": "t"},
            {"kind": "electricity", "name": "grid", "activity": "5000", "unit": "MWh"},
        ],
        "output_value": "12000", "energy_tce": 3300, "pollutants": {"so2": 4.8},
    }, 201)  # fmt: skip
    assert (report["report_id"], report["emissions_t"]) == ("R-2025-" + SELLER, "6652.1")
    assert [s["kg_co2e"] for s in report["sources"]] == ["3800600", "2851500"]
    # S2: 1,500,000 Nm3 natural gas = 150 × 10^4 Nm3 × 21.622 = 3,243.3 t
    _post(live, BUYER, f"/v1/enterprises/{BUYER}/reports", {
        "period": "2025",
        "sources": [{"kind": "fuel", "name": "natural_gas", "activity": "1500000", "unit": "Nm3"}],
        "output_value": "9000", "energy_tce": "2100",
    }, 201)  # fmt: skip
    # A verifier may read reports, but not submit them; an enterprise only its own.
    assert live.client.get(
        "/v1/reports?status=submitted", headers=live.headers("verifier")
    ).is_success
    other = live.client.get(f"/v1/reports/R-2025-{BUYER}", headers=live.headers(SELLER))
    assert other.status_code == 403
    for eid in (SELLER, BUYER):
        _post(live, "verifier", f"/v1/reports/R-2025-{eid}/verification",
              {"accepted": True, "note": "site visit 2026-02"})  # fmt: skip
    # Quotas by two methods. S1 benchmark: 0.6 × 12,000 = 7,200 t → surplus 547.9 → 548.
    # S2 grandfathering: mean(3,000, 3,200) × 0.98 = 3,038 t → deficit 205.3 → 205.
    _ok(live.client.put(f"/v1/periods/2025/allocations/{SELLER}", headers=live.headers("regulator"),
                        json={"method": "benchmark", "params": {"benchmark_t_per_unit": "0.6"}}))  # fmt: skip  # noqa: E501
    _ok(live.client.put(f"/v1/periods/2025/allocations/{BUYER}", headers=live.headers("regulator"),
                        json={"method": "grandfathering",
                              "params": {"base_emissions_t": [3000, "3200"],
                                         "decline_factor": 0.98}}))  # fmt: skip
    _post(live, "regulator", "/v1/periods/2025/close")
    again = live.client.post("/v1/periods/2025/close", headers=live.headers("regulator"))
    assert again.status_code in (409, 422) and again.json()["reason"]
    seller = _ok(
        live.client.get(f"/v1/enterprises/{SELLER}/compliance", headers=live.headers(SELLER))
    )
    (s1,) = seller["periods"]
    assert (s1["issued_t"], s1["surplus_t"], s1["status"]) == (548, 548, "surplus_issued")
    assert s1["quota_inputs"]["quota_t"] == "7200"
    balances = _ok(
        live.client.get(f"/v1/enterprises/{SELLER}/balances", headers=live.headers(SELLER))
    )
    assert balances["credits"]["HCC-2025"]["available"] == 548
    (s2,) = _ok(
        live.client.get(f"/v1/enterprises/{BUYER}/compliance", headers=live.headers(BUYER))
    )["periods"]
    assert (s2["obligation_t"], s2["deficit_t"], s2["status"]) == (205, 205, "obligation_open")

    # The buyer covers its deficit on the exchange and surrenders.
    _post(live, "operator", "/v1/cash/deposits", {"enterprise_id": BUYER, "amount": 2_000_000}, 201)
    sold = live.order(SELLER, SELLER, side="sell", quantity=205, price=6_000)
    assert sold.status_code == 201, sold.text
    bought = live.order(BUYER, BUYER, side="buy", quantity=205, price=6_000)
    assert bought.json()["status"] == "filled"
    surrender = {"enterprise_id": BUYER, "period": "2025", "instrument": "HCC-2025",
                 "quantity": 205}  # fmt: skip
    _post(live, BUYER, "/v1/surrenders", surrender, 201)
    (s2,) = _ok(
        live.client.get(f"/v1/enterprises/{BUYER}/compliance", headers=live.headers("regulator"))
    )["periods"]
    assert (s2["surrendered_t"], s2["outstanding_t"], s2["status"]) == (205, 0, "settled")
    # The surrendered serials are gone from every holding, and the ledger says where.
    cancelled = live.store.sql.query("SELECT quantity, serials FROM rm_cancellations")
    assert [q for q, _ in cancelled] == [205]
    # Evaluation needs the sector's benchmarks: refused without them, computed with them.
    _ok(live.client.put("/v1/sectors/steel/benchmarks", headers=live.headers("regulator"), json={
        "benchmarks": {"output_value": "10000", "energy_intensity": "0.3",
                       "carbon_intensity": "0.5", "pollutants": {"so2": "0.0005"}}}))  # fmt: skip
    _post(live, "regulator", "/v1/periods/2025/evaluate", {})
    graded = _ok(live.client.get(f"/v1/enterprises/{SELLER}/evaluation?period=2025",
                                 headers=live.headers(SELLER)))  # fmt: skip
    assert graded["grade"] in {"A", "B", "C", "D"} and set(graded["scores"]) == {
        "economy", "energy", "pollution", "carbon"}  # fmt: skip
    assert graded["inputs"]


def test_bad_registry_input_is_refused_and_changes_nothing(live: Live) -> None:
    short = {"name": "X", "sector": "steel", "credit_code": "9134010"}
    bad_code = live.client.post("/v1/enterprises", headers=live.headers("operator"), json=short)
    assert bad_code.status_code == 422
    assert "credit_code" in {e["field"] for e in bad_code.json()["errors"]}
    wrong_check = live.client.post(
        "/v1/enterprises", headers=live.headers("operator"),
        json={"name": "X", "sector": "steel", "credit_code": CODES["S1"][:-1] + "0"},
    )  # fmt: skip
    assert wrong_check.status_code == 422, wrong_check.text
    listed = live.client.get("/v1/enterprises", headers=live.headers("regulator")).json()
    assert len(listed["enterprises"]) == 3  # the demo's three, nothing added
    negative = live.client.post(
        "/v1/enterprises/E-DEMO-1/reports", headers=live.headers("trader1"),
        json={"period": "2025", "output_value": 1, "energy_tce": 1,
              "sources": [{"kind": "fuel", "name": "raw_coal", "activity": -5, "unit": "t"}]},
    )  # fmt: skip
    assert negative.status_code == 422, negative.text
    assert not live.client.post("/v1/periods", headers=live.headers("trader1"),
                                json={"period": "2025"}).is_success  # fmt: skip
    # Refusals are journaled as such, but no state changed.
    registered = live.store.sql.query("SELECT enterprise_id FROM rm_enterprises")
    assert sorted(e for (e,) in registered) == ["E-DEMO-1", "E-DEMO-2", "E-DEMO-3"]
    assert live.store.sql.query("SELECT COUNT(*) FROM rm_reports")[0][0] == 0


def test_a_write_or_read_naming_an_unknown_resource_in_its_path_is_404(live: Live) -> None:
    regulator = live.headers("regulator")
    allocation = {"method": "benchmark", "params": {"benchmark_t_per_unit": "0.5"}}
    for method, path, body, reason in (
        ("POST", "/v1/enterprises/E-NOPE/approve", {}, "unknown_enterprise"),
        ("POST", "/v1/enterprises/E-NOPE/suspend", {}, "unknown_enterprise"),
        ("POST", "/v1/enterprises/E-NOPE/freeze", {"frozen": True}, "unknown_enterprise"),
        ("POST", "/v1/periods/2099/close", None, "unknown_period"),
        ("POST", "/v1/periods/2099/enforce", {"force": True}, "unknown_period"),
        ("POST", "/v1/periods/2099/evaluate", {}, "unknown_period"),
        ("PUT", "/v1/periods/2099/allocations/E-DEMO-1", allocation, "unknown_period"),
        ("PUT", "/v1/periods/2025/allocations/E-NOPE", allocation, "unknown_enterprise"),
        ("PUT", "/v1/periods/2099/sector-allocations/steel", allocation, "unknown_period"),
        ("POST", "/v1/reports/R-NOPE/verification", {"accepted": True}, "unknown_report"),
    ):
        who = live.headers("verifier") if "verification" in path else regulator
        answer = live.client.request(method, path, headers=who, json=body)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["reason"] == reason, (path, answer.text)
    # The same refusals about a field of the body stay 422: the path exists.
    deposit = live.client.post("/v1/cash/deposits", headers=live.headers("operator"),
                               json={"enterprise_id": "E-NOPE", "amount": 10})  # fmt: skip
    assert deposit.status_code == 422 and deposit.json()["reason"] == "unknown_enterprise"
    report = live.client.post(
        "/v1/enterprises/E-DEMO-1/reports", headers=live.headers("trader1"),
        json={"period": "2099", "output_value": 1, "energy_tce": 1,
              "sources": [{"kind": "fuel", "name": "raw_coal", "activity": 5, "unit": "t"}]},
    )  # fmt: skip
    assert report.status_code == 422 and report.json()["reason"] == "unknown_period"
    # Reads: an enterprise that does not exist is unknown, not an empty page.
    for page in ("balances", "ledger", "compliance"):
        missing = live.client.get(f"/v1/enterprises/E-NOPE/{page}", headers=regulator)
        assert missing.status_code == 404, (page, missing.text)
        assert missing.headers["content-type"] == "application/problem+json"
        known = live.client.get(f"/v1/enterprises/E-DEMO-1/{page}", headers=regulator)
        assert known.status_code == 200, (page, known.text)


def _owing_100_t(live: Live, demo: str, period: str, deadline: str) -> None:
    """Given: `period` open with `deadline`, and `demo`'s verified 1,000 t against a
    900 t quota (100 t to owe once the period closes)."""
    _post(live, "regulator", "/v1/periods", {"period": period, "deadline": deadline}, 201)
    _post(live, "trader1", f"/v1/enterprises/{demo}/reports", {
        "period": period, "output_value": "100", "energy_tce": "10",
        "sources": [{"kind": "process", "name": "kiln", "activity": "1000", "unit": "t",
                     "factor": "1", "factor_reason": "stack test"}],
    }, 201)  # fmt: skip
    _post(live, "verifier", f"/v1/reports/R-{period}-{demo}/verification",
          {"accepted": True, "note": "ok"})  # fmt: skip
    allocation = {"method": "grandfathering",
                  "params": {"base_emissions_t": ["900"], "decline_factor": "1"}}  # fmt: skip
    _ok(live.client.put(f"/v1/periods/{period}/allocations/{demo}",
                        headers=live.headers("regulator"), json=allocation))  # fmt: skip


def _clock_from(live: Live, moment: str) -> None:
    """Commands from now on are stamped from local `moment` on, 1 ms apart."""
    gateway = live.client.app.state.gateway  # type: ignore[attr-defined]
    start = int(datetime.fromisoformat(moment).timestamp()) * 1_000_000
    ticks = itertools.count(start, 1_000)
    gateway.clock = lambda: next(ticks)


def test_a_surrender_after_the_deadline_is_a_conflict(live: Live) -> None:
    """RULES.md: obligations are surrendered by the deadline. After it, a surrender is
    refused as a 409 problem with reason ``past_deadline`` and changes nothing."""
    # given: E-DEMO-1 owes 100 t for 2025H1, closed before its deadline of 2025-12-01
    # (the clock: 2025-11-25), and the clock is now past that deadline
    demo, trader = "E-DEMO-1", "trader1"
    _owing_100_t(live, demo, "2025H1", "2025-12-01T00:00:00+08:00")
    _post(live, "regulator", "/v1/periods/2025H1/close")
    _clock_from(live, "2025-12-01T00:00:00+08:00")
    balances = f"/v1/enterprises/{demo}/balances"
    before = _ok(live.client.get(balances, headers=live.headers(trader)))
    # when: E-DEMO-1 surrenders HCC-2025 (it holds some) against it
    surrender = {"enterprise_id": demo, "period": "2025H1", "instrument": "HCC-2025",
                 "quantity": 100}  # fmt: skip
    late = live.client.post("/v1/surrenders", headers=live.headers(trader), json=surrender)
    # then: a conflict, as problem+json, and the credits stay where they were
    assert late.status_code == 409, late.text
    assert late.headers["content-type"].startswith("application/problem+json")
    assert late.json()["reason"] == "past_deadline"
    assert (
        _ok(live.client.get(balances, headers=live.headers(trader)))["credits"]
        == (before["credits"])
    )
    compliance = f"/v1/enterprises/{demo}/compliance"
    periods = _ok(live.client.get(compliance, headers=live.headers("regulator")))["periods"]
    (h1,) = [p for p in periods if p["period"] == "2025H1"]
    assert (h1["obligation_t"], h1["surrendered_t"], h1["outstanding_t"]) == (100, 0, 100)


def test_a_period_closed_late_is_met_once_its_deadline_moves(live: Live) -> None:
    """A period closed after its deadline has obligations due at once (a surrender is
    a 409 ``past_deadline``) until the regulator moves the deadline
    (``PUT /v1/periods/{period}/deadline``); then surrenders count until the new one."""
    # given: 2025H1's deadline (2025-07-01) passed before the clock (2025-11-25), and
    # the regulator closes it anyway: E-DEMO-1 owes 100 t, due already
    demo, regulator = "E-DEMO-1", live.headers("regulator")
    _owing_100_t(live, demo, "2025H1", "2025-07-01T00:00:00+08:00")
    _post(live, "regulator", "/v1/periods/2025H1/close")
    surrender = {"enterprise_id": demo, "period": "2025H1", "instrument": "HCC-2025",
                 "quantity": 100}  # fmt: skip
    late = live.client.post("/v1/surrenders", headers=live.headers("trader1"), json=surrender)
    assert late.status_code == 409 and late.json()["reason"] == "past_deadline", late.text
    # A deadline in the past, on a period that does not exist, or none at all: refused.
    path = "/v1/periods/2025H1/deadline"
    past = live.client.put(path, headers=regulator, json={"deadline": "2025-11-01T00:00:00"})
    assert past.status_code == 422 and past.json()["reason"] == "invalid_deadline", past.text
    unknown = live.client.put("/v1/periods/2099/deadline", headers=regulator,
                              json={"deadline": "2026-06-30T00:00:00+08:00"})  # fmt: skip
    assert unknown.status_code == 404, unknown.text
    missing = live.client.put(path, headers=regulator, json={})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "deadline"
    # when: the regulator extends the deadline to 2025-12-31 (no offset: Shanghai time)
    moved = _ok(live.client.put(path, headers=regulator, json={"deadline": "2025-12-31T00:00:00"}))
    # then: the period shows it, and the surrender counts
    new_deadline = int(datetime.fromisoformat("2025-12-31T00:00:00+08:00").timestamp()) * 10**6
    assert moved["deadline"] == new_deadline
    (h1,) = [p for p in _ok(live.client.get("/v1/periods", headers=regulator))["periods"]
             if p["period"] == "2025H1"]  # fmt: skip
    assert (h1["deadline"], h1["status"]) == (new_deadline, "closed")
    _post(live, "trader1", "/v1/surrenders", surrender, 201)
    compliance = f"/v1/enterprises/{demo}/compliance"
    (h1,) = [p for p in _ok(live.client.get(compliance, headers=regulator))["periods"]
             if p["period"] == "2025H1"]  # fmt: skip
    assert (h1["obligation_t"], h1["outstanding_t"], h1["status"]) == (100, 0, "settled")
    # and once the period is enforced, its deadline is history: it cannot move
    _post(live, "regulator", "/v1/periods/2025H1/enforce", {"force": True})
    enforced = live.client.put(path, headers=regulator, json={"deadline": "2026-12-31T00:00:00"})
    assert enforced.status_code == 409 and enforced.json()["reason"] == "period_enforced"


def test_enforcing_twice_or_reporting_before_approval_are_conflicts(live: Live) -> None:
    _post(live, "regulator", "/v1/periods",
          {"period": "2030", "deadline": "2030-01-01T00:00:00+08:00"}, 201)  # fmt: skip
    _post(live, "regulator", "/v1/periods/2030/close")
    _post(live, "regulator", "/v1/periods/2030/enforce", {"force": True})
    again = live.client.post(
        "/v1/periods/2030/enforce", headers=live.headers("regulator"), json={"force": True}
    )
    assert again.status_code == 409, again.text
    assert again.json()["reason"] == "period_enforced"
    pending = _post(live, "operator", "/v1/enterprises",
                    {"name": "P", "sector": "steel", "credit_code": "91340100MA2N0EEE1U"},
                    201)["enterprise_id"]  # fmt: skip
    token = create_token(live.store.sql, "trader", pending)
    early = live.client.post(
        f"/v1/enterprises/{pending}/reports", headers={"Authorization": f"Bearer {token}"},
        json={"period": "2030", "output_value": 1, "energy_tce": 1,
              "sources": [{"kind": "fuel", "name": "raw_coal", "activity": 5, "unit": "t"}]},
    )  # fmt: skip
    assert early.status_code == 409, early.text
    assert early.json()["reason"] == "enterprise_not_approved"
