"""Enterprises: the registry's view (registration, approval, status)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from projections.balances import enterprises
from services.gateway.auth import Principal, principal
from services.gateway.context import Gateway, gateway
from services.gateway.problems import Problem
from services.gateway.routes.common import ERRORS, json

__all__ = ["router"]

router = APIRouter(tags=["registry"])
Caller = Annotated[Principal, Depends(principal)]
Ctx = Annotated[Gateway, Depends(gateway)]


def _profiles(ctx: Gateway) -> list[dict[str, Any]]:
    return enterprises(ctx.store.sql)


@router.get("/v1/enterprises", responses=ERRORS)
async def list_enterprises(caller: Caller, ctx: Ctx) -> Response:
    """Every enterprise with its status (regulator, operator)."""
    caller.require("regulator", "operator")
    return json({"enterprises": await run_in_threadpool(_profiles, ctx)})


@router.get("/v1/enterprises/{enterprise_id}", responses=ERRORS)
async def get_enterprise(enterprise_id: str, caller: Caller, ctx: Ctx) -> Response:
    """Profile and status (regulator, or the enterprise's own tokens)."""
    caller.require_enterprise(enterprise_id)
    for profile in await run_in_threadpool(_profiles, ctx):
        if profile["enterprise_id"] == enterprise_id:
            return json(profile)
    raise Problem(404, "Not Found", f"no enterprise {enterprise_id}")
