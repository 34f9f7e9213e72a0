"""Public market data: any signed-in caller may read it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from projections import market as read
from services.gateway import models as m
from services.gateway.auth import Principal, principal
from services.gateway.context import Gateway, gateway
from services.gateway.problems import Problem
from services.gateway.requests import OrjsonRoute
from services.gateway.routes.common import ERRORS, MAX_POSITION, json

__all__ = ["router"]

router = APIRouter(tags=["market data"], route_class=OrjsonRoute)
Caller = Annotated[Principal, Depends(principal)]
Ctx = Annotated[Gateway, Depends(gateway)]


def _market(ctx: Gateway, symbol: str) -> dict[str, object]:
    found = read.instruments(ctx.store.sql, ctx.config.band_bps, symbol)
    if not found:
        raise Problem(404, "Not Found", f"no instrument {symbol}")
    return found[0]


@router.get("/v1/markets", response_model=m.MarketsOut, responses=ERRORS)
async def markets(caller: Caller, ctx: Ctx) -> Response:
    """Every listed instrument: last, the day's open/high/low, the latest close, band."""
    found = await run_in_threadpool(read.instruments, ctx.store.sql, ctx.config.band_bps)
    return json({"markets": found})


@router.get("/v1/markets/{symbol}", response_model=m.Market, responses=ERRORS)
async def market(symbol: str, caller: Caller, ctx: Ctx) -> Response:
    return json(await run_in_threadpool(_market, ctx, symbol))


@router.get("/v1/markets/{symbol}/book", response_model=m.Book, responses=ERRORS)
async def book(
    symbol: str, caller: Caller, ctx: Ctx, depth: Annotated[int, Query(ge=1, le=500)] = 10
) -> Response:
    """Aggregated depth, best first: `[price, quantity, orders]` per level."""
    await run_in_threadpool(_market, ctx, symbol)
    return json(await run_in_threadpool(read.book, ctx.store.sql, symbol, depth))


@router.get("/v1/markets/{symbol}/trades", response_model=m.TradesOut, responses=ERRORS)
async def trades(
    symbol: str,
    caller: Caller,
    ctx: Ctx,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_POSITION,
            description="journal position: the trades after it, oldest first "
            "(without it: the latest trades, newest first)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The tape; block trades are flagged `block`.

    Without `after`: the latest `limit` trades, newest first. With `after=P`: the next
    `limit` trades after journal position P, oldest first. `next_after` is where to go on
    from: the newest position in the answer (P itself, or 0, when it is empty), so
    `?after=0`, then `?after={next_after}` again and again, walks the whole tape in order
    and then follows new trades.
    """
    await run_in_threadpool(_market, ctx, symbol)
    found = await run_in_threadpool(read.trades, ctx.store.sql, symbol, after, limit)
    newest = max((t["position"] for t in found), default=after or 0)
    return json({"trades": found, "next_after": newest})


@router.get("/v1/markets/{symbol}/candles", response_model=m.CandlesOut, responses=ERRORS)
async def candles(
    symbol: str,
    caller: Caller,
    ctx: Ctx,
    interval: Literal["1m", "1h", "1d"] = "1m",
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Response:
    """OHLCV, oldest first. 1d is the engine's daily close (VWAP; carried on quiet days)."""
    await run_in_threadpool(_market, ctx, symbol)
    found = await run_in_threadpool(read.candles, ctx.store.sql, symbol, interval, limit)
    return json({"symbol": symbol, "interval": interval, "candles": found})
