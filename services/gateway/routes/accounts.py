"""Cash and credit movements, balances and the ledger, instruments."""

from __future__ import annotations

from collections.abc import Collection
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
from services.gateway.routes.common import (
    CONFLICTS,
    ERRORS,
    MAX_POSITION,
    json,
    require_enterprise_exists,
)

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
    not_found: Collection[str] = (),
) -> Response:
    """Send a command (idempotently), wait for the engine, map a refusal to a problem.

    `not_found`: the refusals that mean the resource named in the path does not exist
    (`unknown_period` on `/v1/periods/{period}/close`): 404, as for any unknown path.
    The same reason about a body field (`unknown_enterprise` on a deposit) stays 422."""

    async def work() -> Response:
        result = await ctx.send_and_wait(command, check_instrument)
        if result.get("via") == "kafka":
            return json({"status": "pending"}, 202)
        reason = result.get("reject_reason")
        if reason:
            detail = result.get("detail") or ""
            raise Problem(
                404 if reason in not_found else 409 if reason in CONFLICTS else 422,
                "Not Found" if reason in not_found else "Refused",
                f"the engine refused the command: {reason}" + (f" ({detail})" if detail else ""),
                reason=reason,
                position=result["first_position"],
            )
        body = {"position": result["last_position"], "intake_position": result["cause"]}
        return json({**(answer or {}), **body}, status)

    return await idempotent(request, caller, payload, work)


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


@router.put("/v1/market/queuing", responses=ERRORS)
async def set_queuing(body: m.QueuingIn, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Turn queuing of out-of-session limit orders on or off (operator; RULES.md: "or
    queued, if the operator enables queuing for the next session"). Queued orders hold
    nothing until the session opens, where each is decided as if it arrived then; orders
    already queued when it is turned off still enter."""
    caller.require("operator")
    command = c.SetOrderQueuing(enabled=body.enabled)
    return await submit_command(
        request, caller, ctx, body.model_dump(), command, {"enabled": body.enabled},
        status=200, check_instrument=False,
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
    after: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_POSITION,
            description="journal position: the postings after it (pass `next_after`)",
        ),
    ] = 0,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=5000,
            description="postings per page, at most; a page holds whole positions only",
        ),
    ] = 500,
) -> Response:
    """Every posting on the enterprise's accounts, with its journal position, oldest first.

    A page never splits a journal position (a fill posts several entries at one): it
    ends before the position that would not fit, or, when one position alone has more
    than `limit` postings, holds all of them. `next_after` is the last position in the
    page (`after` itself when it is empty): `?after=0`, then `?after={next_after}` until
    a page comes back empty, gives every posting exactly once.
    """
    caller.require_enterprise(enterprise_id)
    await run_in_threadpool(require_enterprise_exists, ctx.store.sql, enterprise_id)
    entries = await run_in_threadpool(ledger_of, ctx.store.sql, enterprise_id, after, limit)
    newest = entries[-1]["position"] if entries else after
    return json({"enterprise_id": enterprise_id, "entries": entries, "next_after": newest})
