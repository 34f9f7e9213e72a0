"""Cash and credit movements, balances and the ledger, instruments."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from events import commands as c
from events.base import Event
from projections.balances import balances_of, ledger_of
from projections.holdings import holdings_of
from services.gateway import models as m
from services.gateway.auth import Principal, principal
from services.gateway.context import Gateway, gateway
from services.gateway.idempotency import idempotent
from services.gateway.problems import Problem
from services.gateway.requests import OrjsonRoute
from services.gateway.routes.common import ERRORS, MAX_POSITION, json

__all__ = ["router", "submit_command"]

router = APIRouter(tags=["accounts"], route_class=OrjsonRoute)
Caller = Annotated[Principal, Depends(principal)]
Ctx = Annotated[Gateway, Depends(gateway)]


async def submit_command(
    request: Request,
    caller: Caller,
    ctx: Gateway,
    payload: dict[str, Any],
    command: Event,
    answer: dict[str, Any] | None = None,
    status: int = 201,
    check_instrument: bool = True,
) -> Response:
    """Send a command (idempotently), wait for the engine, map a refusal to a problem."""

    async def work() -> Response:
        result = await ctx.send_and_wait(command, check_instrument)
        if result.get("via") == "kafka":
            return json({"status": "pending"}, 202)
        if result.get("reject_reason"):
            detail = result.get("detail") or ""
            raise Problem(
                409 if result["reject_reason"] in _CONFLICTS else 422,
                "Refused",
                f"the engine refused the command: {result['reject_reason']}"
                + (f" ({detail})" if detail else ""),
                reason=result["reject_reason"],
                position=result["first_position"],
            )
        body = {"position": result["last_position"], "intake_position": result["cause"]}
        return json({**(answer or {}), **body}, status)

    return await idempotent(request, caller, payload, work)


#: Refusals that are about the state, not the input: 409 rather than 422.
_CONFLICTS = {
    "already_listed",
    "already_registered",
    "account_frozen",
    "before_deadline",
    "duplicate_credit_code",
    "invalid_transition",
    "not_awaiting_verification",
    "past_deadline",
    "period_closed",
    "period_exists",
    "period_open",
    "stale_version",
}


@router.post("/v1/instruments", status_code=201, responses=ERRORS)
async def list_instrument(
    body: m.InstrumentIn, request: Request, caller: Caller, ctx: Ctx
) -> Response:
    """List a credit type of one vintage (operator)."""
    caller.require("operator")
    command = c.ListInstrument(
        symbol=body.symbol,
        vintage=body.vintage,
        reference_price=body.reference_price,
        fee_bps=body.fee_bps,
    )
    return await submit_command(
        request, caller, ctx, body.model_dump(), command, {"symbol": body.symbol},
        check_instrument=False,
    )  # fmt: skip


@router.post("/v1/cash/deposits", status_code=201, responses=ERRORS)
async def deposit(body: m.CashIn, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Cash in from the enterprise's bank (operator)."""
    caller.require("operator")
    command = c.DepositCash(
        enterprise_id=body.enterprise_id, amount=body.amount, reference=body.reference
    )
    return await submit_command(request, caller, ctx, body.model_dump(), command)


@router.post("/v1/cash/withdrawals", status_code=201, responses=ERRORS)
async def withdraw(body: m.CashIn, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Cash out, only ever from available cash (operator)."""
    caller.require("operator")
    command = c.WithdrawCash(
        enterprise_id=body.enterprise_id, amount=body.amount, reference=body.reference
    )
    return await submit_command(request, caller, ctx, body.model_dump(), command)


@router.post("/v1/credits/issuances", status_code=201, responses=ERRORS)
async def issue(body: m.IssuanceIn, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Direct issuance (allocation, correction): a new block of serials (regulator)."""
    caller.require("regulator")
    command = c.IssueCredits(
        enterprise_id=body.enterprise_id,
        instrument=body.instrument,
        quantity=body.quantity,
        reason=body.reason,
    )
    return await submit_command(request, caller, ctx, body.model_dump(), command)


@router.post("/v1/surrenders", status_code=201, responses=ERRORS)
async def surrender(body: m.SurrenderIn, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Surrender credits against a period's obligation (the enterprise's trader)."""
    caller.require_enterprise(body.enterprise_id, write=True)
    command = c.SurrenderCredits(
        enterprise_id=body.enterprise_id,
        instrument=body.instrument,
        quantity=body.quantity,
        period=body.period,
    )
    return await submit_command(request, caller, ctx, body.model_dump(), command)


@router.post("/v1/retirements", status_code=201, responses=ERRORS)
async def retire(body: m.RetirementIn, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Voluntary retirement for a beneficiary; the retired serials are published."""
    caller.require_enterprise(body.enterprise_id, write=True)
    command = c.RetireCredits(
        enterprise_id=body.enterprise_id,
        instrument=body.instrument,
        quantity=body.quantity,
        beneficiary=body.beneficiary,
        reason=body.reason,
    )
    return await submit_command(request, caller, ctx, body.model_dump(), command)


def _balances(ctx: Gateway, enterprise_id: str) -> dict[str, Any]:
    found = balances_of(ctx.store.sql, enterprise_id)
    if found is None:
        raise Problem(404, "Not Found", f"no account for enterprise {enterprise_id}")
    found["serials"] = holdings_of(ctx.store.sql, enterprise_id)
    return found


@router.get("/v1/enterprises/{enterprise_id}/balances", response_model=m.Balances, responses=ERRORS)
async def balances(enterprise_id: str, caller: Caller, ctx: Ctx) -> Response:
    """Cash and credits, available and held for open orders, with serial ranges."""
    caller.require_enterprise(enterprise_id)
    return json(await run_in_threadpool(_balances, ctx, enterprise_id))


@router.get("/v1/enterprises/{enterprise_id}/ledger", response_model=m.LedgerOut, responses=ERRORS)
async def ledger(
    enterprise_id: str,
    caller: Caller,
    ctx: Ctx,
    after: Annotated[int, Query(ge=0, le=MAX_POSITION, description="journal position")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Response:
    """Every posting on the enterprise's accounts, with its journal position."""
    caller.require_enterprise(enterprise_id)
    entries = await run_in_threadpool(ledger_of, ctx.store.sql, enterprise_id, after, limit)
    return json({"enterprise_id": enterprise_id, "entries": entries})
