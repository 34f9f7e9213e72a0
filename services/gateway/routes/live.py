"""Server-sent events: market data for everyone, order updates for their owners.

The stream follows the journal, but never ahead of the projections: a client that
refetches a book or an order on an event sees the state that event produced.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from projections.projector import tracking_positions
from services.gateway.auth import Principal, stream_principal
from services.gateway.context import Gateway, gateway
from services.gateway.requests import OrjsonRoute
from services.gateway.routes.common import ERRORS, MAX_POSITION

__all__ = ["router"]

router = APIRouter(tags=["streaming"], route_class=OrjsonRoute)
#: EventSource cannot send headers: the stream also takes `?access_token=`.
Caller = Annotated[Principal, Depends(stream_principal)]
Ctx = Annotated[Gateway, Depends(gateway)]

ORDER_EVENTS = {
    "OrderAccepted",
    "OrderQueued",
    "OrderRejected",
    "OrderCancelled",
    "OrderExpired",
    "OrderReduced",
    "OrderRepriced",
}
HEARTBEAT = 15.0


def _sse(event: str, data: Any, position: int) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (position, event.encode(), orjson.dumps(data))


def _own_fill(trade: dict[str, Any], enterprise_id: str | None) -> dict[str, Any]:
    buyer = trade["buyer_id"] == enterprise_id
    return {
        "trade_id": trade["trade_id"],
        "instrument": trade["instrument"],
        "price": trade["price"],
        "quantity": trade["quantity"],
        "enterprise_id": enterprise_id,
        "side": "buy" if buyer else "sell",
        "order_id": trade["buy_order_id"] if buyer else trade["sell_order_id"],
        "fee": trade["buyer_fee"] if buyer else trade["seller_fee"],
    }


def _messages(ctx: Gateway, caller: Principal, after: int) -> tuple[list[bytes], int]:
    """SSE messages for journal entries after `after` that the projections reached."""
    positions = tracking_positions(ctx.store.sql)
    reached = min(positions.values()) if positions else 0
    if reached <= after:
        return [], after
    out: list[bytes] = []
    books: dict[str, int] = {}
    own = caller.enterprise_id
    everything = caller.is_("regulator")
    last = after
    for row in ctx.store.journal.read(after, 2_000, reached):
        last = row.position
        kind = row.type_name
        if kind != "TradeExecuted" and kind not in ORDER_EVENTS and kind != "TradingDayClosed":
            continue
        envelope = orjson.loads(row.body)
        data = envelope["data"]
        if kind == "TradeExecuted":
            public = {k: data[k] for k in ("trade_id", "instrument", "price", "quantity",
                                           "aggressor")}  # fmt: skip
            out.append(_sse("trade", {**public, "position": row.position,
                                      "time": envelope["time"]}, row.position))  # fmt: skip
            books[data["instrument"]] = row.position
            parties: tuple[Any, ...] = (data["buyer_id"], data["seller_id"])
        elif kind == "TradingDayClosed":
            out.append(_sse("close", data, row.position))
            continue
        else:
            parties = (data.get("enterprise_id"),)
            if "instrument" in data:
                books[data["instrument"]] = row.position
        if everything:
            out.append(_sse("order", {"type": kind, "position": row.position, **data},
                            row.position))  # fmt: skip
        elif own in parties:
            if kind == "TradeExecuted":  # own side of the fill only: counterparties stay anonymous
                data = _own_fill(data, own)
            out.append(_sse("order", {"type": kind, "position": row.position, **data},
                            row.position))  # fmt: skip
    for symbol, position in sorted(books.items()):
        out.append(_sse("book", {"symbol": symbol, "position": position}, position))
    return out, last


@router.get(
    "/v1/stream",
    responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
    response_class=StreamingResponse,
)
async def stream(
    request: Request,
    caller: Caller,
    ctx: Ctx,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_POSITION, description="journal position to start after (default: now)"),
    ] = None,
) -> StreamingResponse:
    """Events `trade`, `book` (refetch that book), `close` (daily close) and `order` (the
    caller's own order updates; all of them for regulators). Each has `id:` = its journal
    position. EventSource cannot send headers: `?access_token=` is accepted instead."""
    start = after if after is not None else ctx.store.journal.head()[0]

    async def events() -> AsyncIterator[bytes]:
        position = start
        idle = 0.0
        yield b": carbonx stream\nretry: 2000\n\n"
        while not await request.is_disconnected():
            messages, position = await run_in_threadpool(_messages, ctx, caller, position)
            if messages:
                idle = 0.0
                yield b"".join(messages)
                continue
            await asyncio.sleep(0.25)
            idle += 0.25
            if idle >= HEARTBEAT:
                idle = 0.0
                yield b": heartbeat\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
