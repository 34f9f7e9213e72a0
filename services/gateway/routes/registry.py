"""The registry: enterprises, compliance periods, emission reports and their
verification, allocations, deadlines, compliance and evaluation.

Every write is a registry command on the intake log, decided by the engine in order
with the exchange's commands (a period close issues credits in the same step).
Decimals (activity data, factors, intensities) may be sent as JSON numbers or strings;
they travel on as exact decimal strings, never as floats.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from events import commands as c
from events import registry as r
from projections import registry as read
from projections.balances import enterprises
from services.gateway.auth import Principal, principal
from services.gateway.context import Gateway, gateway
from services.gateway.problems import Problem
from services.gateway.requests import OrjsonRoute
from services.gateway.routes.accounts import submit_command
from services.gateway.routes.common import ERRORS, json, require_enterprise_exists

__all__ = ["router"]

router = APIRouter(tags=["registry"], route_class=OrjsonRoute)
Caller = Annotated[Principal, Depends(principal)]
Ctx = Annotated[Gateway, Depends(gateway)]
Period = Annotated[str, Path(min_length=1, max_length=16, pattern=r"^[0-9]{4}[A-Za-z0-9]*$")]
EnterpriseId = Annotated[str, Path(min_length=1, max_length=64)]
Amount = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=30)]
#: The engine's refusals that mean the enterprise or period named in the path does not
#: exist: 404 (an unknown period in a body, as on a report, stays 422).
_NO_ENTERPRISE = frozenset({"unknown_enterprise"})
_NO_PERIOD = frozenset({"unknown_period"})


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnterpriseIn(_In):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    sector: Annotated[str, Field(min_length=1, max_length=64)]
    credit_code: Annotated[
        str, Field(min_length=18, max_length=18, description="unified social credit code")
    ]


class StatusIn(_In):
    reason: Annotated[str, Field(max_length=200)] = ""


class FreezeIn(_In):
    frozen: StrictBool
    reason: Annotated[str, Field(max_length=200)] = ""


class PositionLimitIn(_In):
    limit: Annotated[
        int,
        Field(
            strict=True,
            ge=0,
            le=10**12,
            description="tonnes CO2e an enterprise may hold plus buy on open orders; 0 "
            "removes the limit. RULES.md: its annual allocation + 1,000,000 t",
        ),
    ]


class PeriodIn(_In):
    period: Annotated[str, Field(min_length=4, max_length=16, pattern=r"^[0-9]{4}[A-Za-z0-9]*$")]
    deadline: datetime | None = Field(
        None, description="surrender deadline (default: 31 December of the next year)"
    )
    instrument: Annotated[str, Field(max_length=32)] = ""


class DeadlineIn(_In):
    deadline: datetime = Field(
        description="the new surrender deadline, a moment still to come (without an "
        "offset: Asia/Shanghai)"
    )


class EnforceIn(_In):
    force: StrictBool = False


class EvaluateIn(_In):
    weights: dict[str, Amount] = Field(default_factory=dict)


class SourceIn(_In):
    kind: Literal["fuel", "electricity", "heat", "process"]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    activity: Amount
    unit: Annotated[str, Field(min_length=1, max_length=16)]
    factor: Amount | None = Field(None, description="t CO2e per unit; overrides the default")
    factor_reason: Annotated[str, Field(max_length=200)] | None = None


class ReportIn(_In):
    period: Annotated[str, Field(min_length=4, max_length=16)]
    sources: Annotated[list[SourceIn], Field(min_length=1, max_length=200)]
    output_value: Amount = Field(description="industrial output value, 10k CNY")
    energy_tce: Amount = Field(description="energy use, t of standard coal equivalent")
    pollutants: dict[str, Amount] = Field(default_factory=dict)


class VerificationIn(_In):
    accepted: StrictBool
    note: Annotated[str, Field(max_length=2000)] = ""
    report_version: Annotated[int, Field(ge=0, le=2**31)] = 0


class AllocationIn(_In):
    method: Literal["benchmark", "historical", "grandfathering"]
    params: dict[str, Any]


class BenchmarksIn(_In):
    benchmarks: dict[str, Any]


def _text(value: Decimal) -> str:
    return format(value, "f")


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone(timedelta(hours=8)))  # the zone's own time
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _plain(value: Any) -> Any:
    """Params as canonical data: decimals as strings, no floats."""
    if isinstance(value, float):
        return format(Decimal(str(value)), "f")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------ enterprises


def _profiles(ctx: Gateway) -> list[dict[str, Any]]:
    """Registered enterprises joined with their exchange accounts (status, freeze)."""
    db = ctx.store.sql
    accounts = {a["enterprise_id"]: a for a in enterprises(db)}
    found = []
    for eid, profile in sorted(read.registered(db).items()):
        account = accounts.pop(eid, None)
        found.append({**profile, "frozen": bool(account and account["frozen"])})
    for eid, account in sorted(accounts.items()):  # accounts opened without registration
        found.append({"enterprise_id": eid, "name": eid, "sector": "", "credit_code": "",
                      "status": account["status"], "frozen": account["frozen"],
                      "registered_position": None})  # fmt: skip
    return found


@router.get("/v1/enterprises", responses=ERRORS)
async def list_enterprises(caller: Caller, ctx: Ctx) -> Response:
    """Every enterprise with its status (regulator, operator)."""
    caller.require("regulator", "operator")
    return json({"enterprises": await run_in_threadpool(_profiles, ctx)})


@router.post("/v1/enterprises", status_code=201, responses=ERRORS)
async def register(body: EnterpriseIn, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Register an enterprise (status `pending` until a regulator approves it). Its id is
    derived from the credit code: `E-` + the code."""
    caller.require("operator", "regulator")
    eid = f"E-{body.credit_code.upper()}"
    command = r.RegisterEnterprise(
        enterprise_id=eid, name=body.name, sector=body.sector, credit_code=body.credit_code
    )
    return await submit_command(
        request, caller, ctx, body.model_dump(), command, {"enterprise_id": eid}
    )


@router.get("/v1/enterprises/{enterprise_id}", responses=ERRORS)
async def get_enterprise(enterprise_id: EnterpriseId, caller: Caller, ctx: Ctx) -> Response:
    """Profile and status (regulator, or the enterprise's own tokens)."""
    caller.require_enterprise(enterprise_id)
    for profile in await run_in_threadpool(_profiles, ctx):
        if profile["enterprise_id"] == enterprise_id:
            return json(profile)
    raise Problem(404, "Not Found", f"no enterprise {enterprise_id}")


async def _status(
    action: str, enterprise_id: str, body: StatusIn | None, request: Request, caller: Principal,
    ctx: Gateway,
) -> Response:  # fmt: skip
    caller.require("regulator")
    reason = body.reason if body else ""
    command = r.ChangeEnterpriseStatus(enterprise_id=enterprise_id, action=action, reason=reason)
    payload = {"action": action, "enterprise_id": enterprise_id, "reason": reason}
    return await submit_command(
        request, caller, ctx, payload, command, {"enterprise_id": enterprise_id}, status=200,
        not_found=_NO_ENTERPRISE,
    )  # fmt: skip


@router.post("/v1/enterprises/{enterprise_id}/approve", responses=ERRORS)
async def approve(
    enterprise_id: EnterpriseId, request: Request, caller: Caller, ctx: Ctx,
    body: StatusIn | None = None,
) -> Response:  # fmt: skip
    """Approve a pending enterprise: its exchange accounts open."""
    return await _status("approve", enterprise_id, body, request, caller, ctx)


@router.post("/v1/enterprises/{enterprise_id}/suspend", responses=ERRORS)
async def suspend(
    enterprise_id: EnterpriseId, request: Request, caller: Caller, ctx: Ctx,
    body: StatusIn | None = None,
) -> Response:  # fmt: skip
    """Suspend: no orders. Its open orders are cancelled and their holds released."""
    return await _status("suspend", enterprise_id, body, request, caller, ctx)


@router.post("/v1/enterprises/{enterprise_id}/reinstate", responses=ERRORS)
async def reinstate(
    enterprise_id: EnterpriseId, request: Request, caller: Caller, ctx: Ctx,
    body: StatusIn | None = None,
) -> Response:  # fmt: skip
    return await _status("reinstate", enterprise_id, body, request, caller, ctx)


@router.post("/v1/enterprises/{enterprise_id}/freeze", responses=ERRORS)
async def freeze(
    enterprise_id: EnterpriseId, body: FreezeIn, request: Request, caller: Caller, ctx: Ctx
) -> Response:
    """Freeze (or unfreeze) an account: no orders, no withdrawals, no transfers or
    retirements out (regulator). Freezing cancels its open orders and releases their
    holds."""
    caller.require("regulator")
    command = c.FreezeAccount(enterprise_id=enterprise_id, frozen=body.frozen, reason=body.reason)
    return await submit_command(
        request, caller, ctx, {"enterprise_id": enterprise_id, **body.model_dump()}, command,
        {"enterprise_id": enterprise_id, "frozen": body.frozen}, status=200,
        not_found=_NO_ENTERPRISE,
    )  # fmt: skip


@router.put("/v1/enterprises/{enterprise_id}/position-limit", responses=ERRORS)
async def set_position_limit(
    enterprise_id: EnterpriseId, body: PositionLimitIn, request: Request, caller: Caller,
    ctx: Ctx,
) -> Response:  # fmt: skip
    """Set the enterprise's position limit (RULES.md, optional): an order or block trade
    that would take its holdings plus open buys beyond it is refused
    (`position_limit`). 0 removes it (regulator)."""
    caller.require("regulator")
    command = c.SetPositionLimit(enterprise_id=enterprise_id, limit=body.limit)
    return await submit_command(
        request, caller, ctx, {"enterprise_id": enterprise_id, "limit": body.limit}, command,
        {"enterprise_id": enterprise_id, "limit": body.limit}, status=200,
        not_found=_NO_ENTERPRISE,
    )  # fmt: skip


# ------------------------------------------------------------------ reports


@router.post("/v1/enterprises/{enterprise_id}/reports", status_code=201, responses=ERRORS)
async def submit_report(
    enterprise_id: EnterpriseId, body: ReportIn, request: Request, caller: Caller, ctx: Ctx
) -> Response:
    """Submit (or amend: a new version) the period's emission report; answers with the
    computed emissions. Only a trader of that enterprise.

    `emissions_t` and `emissions_kg` are decimal strings, not integers: RULES.md keeps
    emissions exact as decimals and rounds only where credits or obligations are made
    (the period's close); money and credits are the integers."""
    caller.require_enterprise(enterprise_id, write=True)
    sources = []
    for source in body.sources:
        item = {"kind": source.kind, "name": source.name, "activity": _text(source.activity),
                "unit": source.unit}  # fmt: skip
        if source.factor is not None:
            item["factor"] = _text(source.factor)
        if source.factor_reason is not None:
            item["factor_reason"] = source.factor_reason
        sources.append(item)
    command = r.SubmitReport(
        enterprise_id=enterprise_id,
        period=body.period,
        sources=tuple(sources),
        output_value=_text(body.output_value),
        energy_tce=_text(body.energy_tce),
        pollutants={k: _text(v) for k, v in sorted(body.pollutants.items())},
    )
    report_id = r.report_id(enterprise_id, body.period)
    response = await submit_command(
        request, caller, ctx, _plain(body.model_dump(mode="json")), command,
        {"report_id": report_id}, not_found=_NO_ENTERPRISE,
    )  # fmt: skip
    if response.status_code == 201:
        versions = await run_in_threadpool(read.report, ctx.store.sql, report_id)
        if versions:
            latest = versions[-1]
            body_out = orjson.loads(bytes(response.body))
            body_out.update(
                report_version=latest["report_version"],
                emissions_t=latest["emissions_t"],
                emissions_kg=latest["emissions_kg"],
                sources=latest["sources"],
            )
            return json(body_out, 201)
    return response


def _visible_report(ctx: Gateway, caller: Principal, report_id: str) -> list[dict[str, Any]]:
    if not caller.is_("verifier", "regulator", "trader", "viewer"):
        caller.require("verifier", "regulator")
    versions = read.report(ctx.store.sql, report_id)
    if not versions:
        raise Problem(404, "Not Found", f"no report {report_id}")
    if not caller.is_("verifier", "regulator"):
        caller.require_enterprise(versions[-1]["enterprise_id"])
    return versions


@router.get("/v1/reports/{report_id}", responses=ERRORS)
async def get_report(
    report_id: Annotated[str, Path(max_length=100)], caller: Caller, ctx: Ctx
) -> Response:
    """Every version of a report (history kept): sources with factors and their sources."""
    versions = await run_in_threadpool(_visible_report, ctx, caller, report_id)
    return json({"report_id": report_id, "versions": versions})


@router.get("/v1/reports", responses=ERRORS)
async def list_reports(
    caller: Caller,
    ctx: Ctx,
    enterprise_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(submitted|verified|returned)$")] = None,
) -> Response:
    """Reports (verifiers and regulators: all; enterprises: their own)."""
    if not caller.is_("verifier", "regulator"):
        if caller.enterprise_id is None:
            caller.require("verifier", "regulator")
        enterprise_id = caller.enterprise_id
    found = await run_in_threadpool(read.reports, ctx.store.sql, enterprise_id, status)
    return json({"reports": found})


@router.post("/v1/reports/{report_id}/verification", responses=ERRORS)
async def verify_report(
    report_id: Annotated[str, Path(max_length=100)],
    body: VerificationIn,
    request: Request,
    caller: Caller,
    ctx: Ctx,
) -> Response:
    """Accept (verified emissions count) or return (with a note) a report (verifier)."""
    caller.require("verifier")
    command = r.VerifyReport(
        report_id=report_id,
        accepted=body.accepted,
        note=body.note,
        verifier=caller.token_hash[:12],
        report_version=body.report_version,
    )
    return await submit_command(
        request, caller, ctx, {"report_id": report_id, **body.model_dump()}, command,
        {"report_id": report_id, "accepted": body.accepted}, status=200,
        not_found={"unknown_report"},
    )  # fmt: skip


# ------------------------------------------------------------------ periods


@router.get("/v1/periods", responses=ERRORS)
async def list_periods(caller: Caller, ctx: Ctx) -> Response:
    """Compliance periods: deadline, status, credits issued, obligations, missing reports."""
    return json({"periods": await run_in_threadpool(read.periods, ctx.store.sql)})


@router.post("/v1/periods", status_code=201, responses=ERRORS)
async def open_period(body: PeriodIn, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Open a compliance period (regulator)."""
    caller.require("regulator")
    deadline = _micros(body.deadline) if body.deadline else 0
    command = r.OpenPeriod(period=body.period, deadline=deadline, instrument=body.instrument)
    return await submit_command(
        request, caller, ctx, body.model_dump(mode="json"), command, {"period": body.period},
        check_instrument=False,
    )  # fmt: skip


@router.put("/v1/periods/{period}/deadline", responses=ERRORS)
async def set_period_deadline(
    period: Period, body: DeadlineIn, request: Request, caller: Caller, ctx: Ctx
) -> Response:
    """Move the period's surrender deadline (regulator), e.g. to extend it: until the
    period is enforced, to a moment still to come. A period closed at or after its
    deadline has obligations due at once; moving the deadline lets them be met."""
    caller.require("regulator")
    deadline = _micros(body.deadline)
    return await submit_command(
        request, caller, ctx, {"period": period, "deadline": deadline},
        r.SetPeriodDeadline(period=period, deadline=deadline),
        {"period": period, "deadline": deadline}, status=200, not_found=_NO_PERIOD,
    )  # fmt: skip


@router.post("/v1/periods/{period}/close", responses=ERRORS)
async def close_period(period: Period, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Close the period: surplus credits issued (a serial block each), obligations
    created; enterprises without a verified report are listed. Closing twice is refused.
    Closed at or after its deadline, its obligations are due at once (no surrender is
    accepted until `PUT /v1/periods/{period}/deadline` moves the deadline)."""
    caller.require("regulator")
    return await submit_command(
        request, caller, ctx, {"period": period}, r.ClosePeriod(period=period),
        {"period": period}, status=200, not_found=_NO_PERIOD,
    )  # fmt: skip


@router.post("/v1/periods/{period}/enforce", responses=ERRORS)
async def enforce_period(
    period: Period, request: Request, caller: Caller, ctx: Ctx, body: EnforceIn | None = None
) -> Response:
    """Process the surrender deadline: shortfalls deducted from the next allocation and
    penalties charged; refused before the deadline unless `force`."""
    caller.require("regulator")
    force = bool(body and body.force)
    return await submit_command(
        request, caller, ctx, {"period": period, "force": force},
        r.EnforcePeriod(period=period, force=force), {"period": period}, status=200,
        not_found=_NO_PERIOD,
    )  # fmt: skip


@router.post("/v1/periods/{period}/evaluate", responses=ERRORS)
async def evaluate_period(
    period: Period, request: Request, caller: Caller, ctx: Ctx, body: EvaluateIn | None = None
) -> Response:
    """Compute every enterprise's evaluation for the period (regulator)."""
    caller.require("regulator")
    weights = {k: _text(v) for k, v in sorted((body.weights if body else {}).items())}
    return await submit_command(
        request, caller, ctx, {"period": period, "weights": weights},
        r.EvaluatePeriod(period=period, weights=weights), {"period": period}, status=200,
        not_found=_NO_PERIOD,
    )  # fmt: skip


@router.put("/v1/periods/{period}/allocations/{enterprise_id}", responses=ERRORS)
async def allocate(
    period: Period,
    enterprise_id: EnterpriseId,
    body: AllocationIn,
    request: Request,
    caller: Caller,
    ctx: Ctx,
) -> Response:
    """The enterprise's quota method and parameters for the period (regulator)."""
    caller.require("regulator")
    params = _plain(body.params)
    command = r.SetAllocation(
        period=period, method=body.method, params=params, enterprise_id=enterprise_id
    )
    return await submit_command(
        request, caller, ctx, {"period": period, "enterprise_id": enterprise_id,
                               "method": body.method, "params": params},
        command, {"period": period, "enterprise_id": enterprise_id}, status=200,
        not_found={*_NO_PERIOD, *_NO_ENTERPRISE},
    )  # fmt: skip


@router.put("/v1/periods/{period}/sector-allocations/{sector}", responses=ERRORS)
async def allocate_sector(
    period: Period,
    sector: Annotated[str, Path(min_length=1, max_length=64)],
    body: AllocationIn,
    request: Request,
    caller: Caller,
    ctx: Ctx,
) -> Response:
    """A sector's quota method for the period; an enterprise's own allocation wins."""
    caller.require("regulator")
    params = _plain(body.params)
    command = r.SetAllocation(period=period, method=body.method, params=params, sector=sector)
    return await submit_command(
        request, caller, ctx, {"period": period, "sector": sector, "method": body.method,
                               "params": params},
        command, {"period": period, "sector": sector}, status=200, not_found=_NO_PERIOD,
    )  # fmt: skip


@router.put("/v1/sectors/{sector}/benchmarks", responses=ERRORS)
async def benchmarks(
    sector: Annotated[str, Path(min_length=1, max_length=64)],
    body: BenchmarksIn,
    request: Request,
    caller: Caller,
    ctx: Ctx,
) -> Response:
    """The sector's evaluation benchmarks (regulator)."""
    caller.require("regulator")
    values = _plain(body.benchmarks)
    return await submit_command(
        request, caller, ctx, {"sector": sector, "benchmarks": values},
        r.SetEvaluationBenchmarks(sector=sector, benchmarks=values), {"sector": sector},
        status=200,
    )  # fmt: skip


# ------------------------------------------------------------------ compliance


@router.get("/v1/enterprises/{enterprise_id}/compliance", responses=ERRORS)
async def compliance(enterprise_id: EnterpriseId, caller: Caller, ctx: Ctx) -> Response:
    """Per period: verified emissions, quota (with its inputs), surplus or deficit,
    surrendered, outstanding, shortfall, penalty, status."""
    caller.require_enterprise(enterprise_id)
    await run_in_threadpool(require_enterprise_exists, ctx.store.sql, enterprise_id)
    found = await run_in_threadpool(read.compliance_of, ctx.store.sql, enterprise_id)
    return json({"enterprise_id": enterprise_id, "periods": found})


@router.get("/v1/enterprises/{enterprise_id}/evaluation", responses=ERRORS)
async def evaluation(
    enterprise_id: EnterpriseId,
    caller: Caller,
    ctx: Ctx,
    period: Annotated[str, Query(min_length=1, max_length=16)],
) -> Response:
    """The four dimension scores, total, grade, near-zero-carbon flag and their inputs."""
    caller.require_enterprise(enterprise_id)
    found = await run_in_threadpool(read.evaluation_of, ctx.store.sql, enterprise_id, period)
    if found is None:
        raise Problem(404, "Not Found", f"no evaluation of {enterprise_id} for {period}")
    return json(found)
