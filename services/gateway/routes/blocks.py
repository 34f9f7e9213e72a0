"""Negotiated block trades: one side proposes, the other confirms, the engine settles.

A proposal is a gateway record (`api_block_trades`), not a market fact: nothing moves
until the counterparty confirms. The confirmation submits a `BlockTrade` command, which
the engine checks like any trade (block band, minimum size, session, funds, credits)
and settles in one step; the trade is then on the tape, flagged as a block.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from events import commands as c
from projections.base import Table
from services.gateway import models as m
from services.gateway.auth import Principal, principal
from services.gateway.context import Gateway, gateway
from services.gateway.idempotency import idempotent
from services.gateway.problems import Problem
from services.gateway.requests import OrjsonRoute
from services.gateway.routes.common import CONFLICTS, ERRORS, json

__all__ = ["BLOCK_TRADES", "router"]

router = APIRouter(tags=["exchange"], route_class=OrjsonRoute)
Caller = Annotated[Principal, Depends(principal)]
Ctx = Annotated[Gateway, Depends(gateway)]
BlockId = Annotated[str, Path(min_length=1, max_length=40)]

BLOCK_TRADES = Table(
    "api_block_trades",
    (
        ("block_trade_id", "TEXT NOT NULL"),
        ("instrument", "TEXT NOT NULL"),
        ("seller_id", "TEXT NOT NULL"),
        ("buyer_id", "TEXT NOT NULL"),
        ("quantity", "BIGINT NOT NULL"),
        ("price", "BIGINT NOT NULL"),
        ("proposed_by", "TEXT NOT NULL"),
        ("status", "TEXT NOT NULL"),  # proposed | executed | rejected | withdrawn
        ("reason", "TEXT"),
        ("position", "BIGINT"),
        ("created_at", "BIGINT NOT NULL"),
    ),
    key=("block_trade_id",),
)
_NAMES = BLOCK_TRADES.column_names


def _load(ctx: Gateway, block_id: str) -> dict[str, Any]:
    rows = ctx.store.sql.query(
        "SELECT * FROM api_block_trades WHERE block_trade_id = %s", (block_id,)
    )
    if not rows:
        raise Problem(404, "Not Found", f"no block trade {block_id}")
    return dict(zip(_NAMES, rows[0], strict=True))


def _visible(caller: Principal, block: dict[str, Any]) -> None:
    if caller.is_("regulator"):
        return
    if caller.enterprise_id not in (block["seller_id"], block["buyer_id"]):
        raise Problem(403, "Forbidden", "only the two parties and regulators see a block trade")


def _set(ctx: Gateway, block_id: str, expected: str, **values: Any) -> bool:
    """Move a proposal out of `expected` status; False when someone else already did."""
    names = sorted(values)
    with ctx.store.sql.transaction() as cursor:
        cursor.execute(
            f"UPDATE api_block_trades SET {', '.join(f'{n} = %s' for n in names)} "
            "WHERE block_trade_id = %s AND status = %s",
            (*(values[n] for n in names), block_id, expected),
        )
        cursor.execute("SELECT status FROM api_block_trades WHERE block_trade_id = %s", (block_id,))
        row = cursor.fetchone()
    return row is not None and row[0] == values.get("status", expected)


@router.post("/v1/block-trades", status_code=201, responses=ERRORS)
async def propose(body: m.BlockTradeIn, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Propose a block trade to the other side (a trader of the buyer or the seller)."""
    if caller.role != "trader" or caller.enterprise_id not in (body.seller_id, body.buyer_id):
        raise Problem(403, "Forbidden", "only a trader of the buyer or the seller may propose")
    if body.seller_id == body.buyer_id:
        raise Problem(422, "Invalid request", "buyer and seller must differ")
    if not await run_in_threadpool(ctx.instrument_known, body.instrument):
        raise Problem(422, "Invalid request", f"unknown instrument {body.instrument!r}")

    async def work() -> Response:
        block_id = "B-" + secrets.token_hex(8)
        row = (block_id, body.instrument, body.seller_id, body.buyer_id, body.quantity,
               body.price, caller.enterprise_id, "proposed", None, None,
               time.time_ns() // 1_000)  # fmt: skip

        def insert() -> None:
            with ctx.store.sql.transaction() as cursor:
                cursor.insert_rows(BLOCK_TRADES.name, _NAMES, [row])

        await run_in_threadpool(insert)
        return json(dict(zip(_NAMES, row, strict=True)), 201)

    return await idempotent(request, caller, body, work)


@router.get("/v1/block-trades/{block_trade_id}", responses=ERRORS)
async def get_block(block_trade_id: BlockId, caller: Caller, ctx: Ctx) -> Response:
    block = await run_in_threadpool(_load, ctx, block_trade_id)
    _visible(caller, block)
    return json(block)


@router.post("/v1/block-trades/{block_trade_id}/confirm", responses=ERRORS)
async def confirm(block_trade_id: BlockId, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """The other side confirms: the engine checks and settles the trade in one step.
    With an `Idempotency-Key`, a repeat gets the first answer (not "already executed")."""
    block = await run_in_threadpool(_load, ctx, block_trade_id)
    _visible(caller, block)
    other = block["buyer_id"] if block["proposed_by"] == block["seller_id"] else block["seller_id"]
    caller.require_enterprise(other, write=True)
    return await idempotent(request, caller, None, lambda: _confirm(ctx, block_trade_id, block))


async def _confirm(ctx: Gateway, block_trade_id: str, block: dict[str, Any]) -> Response:
    if block["status"] != "proposed":
        raise Problem(409, "Conflict", f"the block trade is {block['status']}")
    if not await run_in_threadpool(_set, ctx, block_trade_id, "proposed", status="confirming"):
        raise Problem(409, "Conflict", "the block trade is being confirmed or was withdrawn")
    command = c.BlockTrade(
        instrument=block["instrument"],
        seller_id=block["seller_id"],
        buyer_id=block["buyer_id"],
        quantity=block["quantity"],
        price=block["price"],
    )
    try:
        result = await ctx.send_and_wait(command)
    except BaseException:
        await run_in_threadpool(_set, ctx, block_trade_id, "confirming", status="proposed")
        raise
    if result.get("via") == "kafka":
        await run_in_threadpool(_set, ctx, block_trade_id, "confirming", status="submitted")
        return json({**block, "status": "submitted"}, 202)
    reason = result.get("reject_reason")
    status = "rejected" if reason else "executed"
    await run_in_threadpool(
        _set, ctx, block_trade_id, "confirming",
        status=status, reason=reason, position=result["last_position"],
    )  # fmt: skip
    block.update(status=status, reason=reason, position=result["last_position"])
    if reason:  # about the parties' state (a frozen account): 409; about the deal: 422
        raise Problem(409 if reason in CONFLICTS else 422, "Block trade rejected",
                      f"the engine rejected it: {reason}", reason=reason,
                      block_trade_id=block_trade_id)  # fmt: skip
    return json(block)


@router.delete("/v1/block-trades/{block_trade_id}", responses=ERRORS)
async def withdraw(block_trade_id: BlockId, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Withdraw (the proposer) or decline (the other side) a proposal. With an
    `Idempotency-Key`, a repeat gets the first answer."""
    block = await run_in_threadpool(_load, ctx, block_trade_id)
    _visible(caller, block)
    if caller.role != "trader":
        raise Problem(403, "Forbidden", "only the parties' traders may withdraw or decline")

    async def work() -> Response:
        if not await run_in_threadpool(_set, ctx, block_trade_id, "proposed", status="withdrawn"):
            raise Problem(409, "Conflict", f"the block trade is {block['status']}")
        return json({**block, "status": "withdrawn"})

    return await idempotent(request, caller, None, work)
