"""The regulator's audit: the log itself, state as of any point, verification,
surveillance."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from projections.surveillance import summary
from services.audit import search_events, verify_store
from services.exchange.asof import parse_point, report, state_as_of
from services.gateway import models as m
from services.gateway.auth import Principal, principal
from services.gateway.context import Gateway, gateway
from services.gateway.problems import Problem
from services.gateway.requests import OrjsonRoute
from services.gateway.routes.common import ERRORS, MAX_POSITION, json

__all__ = ["router"]

router = APIRouter(tags=["audit"], route_class=OrjsonRoute)
Caller = Annotated[Principal, Depends(principal)]
Ctx = Annotated[Gateway, Depends(gateway)]


@router.get("/v1/audit/events", response_model=m.AuditEventsOut, responses=ERRORS)
async def events(
    caller: Caller,
    ctx: Ctx,
    after: Annotated[int, Query(ge=0, le=MAX_POSITION, description="journal position")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    enterprise_id: Annotated[str | None, Query(max_length=64)] = None,
    type: Annotated[str | None, Query(max_length=64, description="event type name")] = None,
    log: Annotated[str, Query(pattern="^(journal|intake)$")] = "journal",
) -> Response:
    """The log itself: position, type, payload, time, cause and hash; paged by position."""
    caller.require("regulator")
    found = await run_in_threadpool(
        search_events, ctx.store, after, limit, enterprise_id or None, type or None, log
    )
    return json(found)


@router.get("/v1/audit/state", responses=ERRORS)
async def state(
    caller: Caller,
    ctx: Ctx,
    as_of: Annotated[
        str,
        Query(
            min_length=1,
            max_length=64,
            description="a journal position (digits) or an ISO 8601 time",
        ),
    ],
) -> Response:
    """Every balance, holding (with serials), open order, obligation, penalty debt and
    market as of that point, rebuilt from the log (and checked against the journal on
    the way)."""
    caller.require("regulator")
    try:
        point = parse_point(as_of.strip())
    except ValueError as error:
        raise Problem(
            422, "Invalid request", f"as_of: {error}",
        ) from error  # fmt: skip

    def rebuild() -> dict[str, object]:
        try:
            engine = state_as_of(ctx.store, point, ctx.config)
        except ValueError as error:
            raise Problem(404, "Not Found", str(error)) from error
        return {"as_of": as_of, **report(engine)}

    return json(await run_in_threadpool(rebuild))


@router.get("/v1/audit/verify", responses=ERRORS)
async def verify(
    caller: Caller,
    ctx: Ctx,
    reexecute: Annotated[
        bool, Query(description="also re-run the engine over the intake log (slower)")
    ] = True,
) -> Response:
    """Walk every hash chain and (by default) re-execute the engine over the intake log:
    `{ok, events, head_hash}` plus the details (the first broken or differing position)."""
    caller.require("regulator")
    answer = await run_in_threadpool(verify_store, ctx.store, ctx.config, None, reexecute)
    return json(answer)


@router.get("/v1/audit/surveillance", responses=ERRORS)
async def surveillance(
    caller: Caller, ctx: Ctx, instrument: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    """Volume by enterprise with shares, concentration (HHI), wash-trade candidates.

    An enterprise's volume is what it bought plus what it sold. `share_bps` are
    rounded by largest remainder, so that they add up to exactly 10,000 when there is
    any volume; `hhi` (0-10,000) comes from the exact volumes, rounded half up.
    """
    caller.require("regulator")
    return json(await run_in_threadpool(summary, ctx.store.sql, instrument))
