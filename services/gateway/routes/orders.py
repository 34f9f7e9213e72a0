"""Orders: place, look up, cancel, reduce or reprice; negotiated block trades."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from events import commands as c
from events.base import Event, constructor
from infra.sqldb import SqlDatabase
from projections import orders as read
from services.exchange.intake import FieldError
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
from services.gateway.submit import ReusedClientOrderId, used_client_ids

__all__ = ["router"]

router = APIRouter(tags=["exchange"], route_class=OrjsonRoute)
Caller = Annotated[Principal, Depends(principal)]
Ctx = Annotated[Gateway, Depends(gateway)]
#: `?wait=false`: answer 202 as soon as the commands are appended.
Wait = Annotated[bool, Query(description="false: answer 202 once appended")]
OrderId = Annotated[
    int, Path(ge=1, le=MAX_POSITION, description="the intake position that placed it")
]


def _find_by_client_id(db: SqlDatabase, enterprise_id: str, client_order_id: str) -> int | None:
    rows = db.query(
        "SELECT order_id FROM rm_orders WHERE enterprise_id = %s AND client_order_id = %s",
        (enterprise_id, client_order_id),
    )
    return int(rows[0][0]) if rows else None


def _rejected(found: dict[str, Any]) -> Problem:
    return Problem(
        422,
        "Order rejected",
        f"the engine rejected the order: {found['reject_reason']}",
        reason=found["reject_reason"],
        order_id=found["order_id"],
    )


@router.post(
    "/v1/orders",
    status_code=201,
    response_model=m.OrderOut,
    responses={202: {"model": m.OrderAccepted}, **ERRORS},
    summary="Place an order; waits for the engine's result unless ?wait=false",
)
async def place_order(
    body: m.OrderIn,
    request: Request,
    caller: Caller,
    ctx: Ctx,
    wait: Wait = True,
) -> Response:
    caller.require_enterprise(body.enterprise_id, write=True)

    async def work() -> Response:
        db = ctx.store.sql
        # Through the store, the intake writer checks client ids for a whole batch at
        # once; through Kafka there is no such writer here: look before sending.
        eid, coid = body.enterprise_id, body.client_order_id
        if (
            ctx.sender is not None
            and (await run_in_threadpool(_find_by_client_id, db, eid, coid)) is not None
        ):
            raise Problem(
                409,
                "Conflict",
                f"client_order_id {body.client_order_id!r} was already used by "
                f"{body.enterprise_id}",
            )
        if body.type == "limit" and body.price is None:
            raise Problem(
                422, "Invalid request", "a limit order needs a price",
                errors=[FieldError("price", "required for a limit order")],
            )  # fmt: skip
        position = await ctx.send(_command(body))
        if position is None:  # Kafka: find it again by its client order id
            if not wait:
                return json({"order_id": None, "status": "pending", "intake_position": None,
                             "client_order_id": coid}, 202)  # fmt: skip
            order_id = await run_in_threadpool(
                ctx.poll_until,
                lambda: _find_by_client_id(db, body.enterprise_id, body.client_order_id),
                ctx.wait_timeout,
            )
            if order_id is None:
                raise Problem(504, "Gateway Timeout", "the engine has not answered yet")
        else:
            if not wait:
                return json(
                    {"order_id": position, "status": "pending", "intake_position": position,
                     "client_order_id": coid}, 202,
                )  # fmt: skip
            answered = await ctx.outcome(position)
            order_id = position
            found = answered.get("order")
            if found is not None:
                if found["status"] == "rejected":
                    raise _rejected(found)
                return json(found, 201)
        found = await run_in_threadpool(read.order, db, order_id)
        if found is None:
            raise Problem(500, "Internal Server Error", "the order's result is missing")
        if found["status"] == "rejected":
            raise _rejected(found)
        return json(found, 201)

    return await idempotent(request, caller, body, work)


async def _refuse_reused_client_ids(ctx: Gateway, keys: list[tuple[str, str]]) -> None:
    """409 unless every (enterprise, client order id) is new: neither repeated among
    `keys` nor already in the read models."""
    reused = [key for key, times in Counter(keys).items() if times > 1]
    reused += sorted(await run_in_threadpool(used_client_ids, ctx.store.sql, keys))
    if reused:
        eid, coid = reused[0]
        raise Problem(409, "Conflict", str(ReusedClientOrderId(eid, coid)))


_place_order = constructor(c.PlaceOrder)


def _command(body: m.OrderIn) -> c.PlaceOrder:
    return _place_order(
        client_order_id=body.client_order_id,
        enterprise_id=body.enterprise_id,
        instrument=body.instrument,
        side=body.side,
        order_type=body.type,
        quantity=body.quantity,
        price=body.price or 0,
        time_in_force=body.time_in_force,
        post_only=body.post_only,
        expire_at=body.expire_at or 0,
    )


@router.post(
    "/v1/orders/batch",
    status_code=201,
    response_model=m.OrderBatchOut,
    responses={202: {"model": m.OrderBatchAccepted}, **ERRORS},
    summary="Place up to 500 orders at once, all appended or none; waits for every result",
)
async def place_orders(
    body: m.OrderBatchIn,
    request: Request,
    caller: Caller,
    ctx: Ctx,
    wait: Wait = True,
) -> Response:
    """One request, one intake transaction, one wait: for clients that quote many
    orders at once (market makers, a compliance desk covering a shortfall in slices).

    Every order is checked before anything is appended: a field error in any of them
    (`orders.N.field`), a client order id already used or repeated in the batch (409),
    or an enterprise the token may not trade for (403) refuses the whole batch. The
    engine then decides each order on its own, in the order given.
    """
    for item in body.orders:
        caller.require_enterprise(item.enterprise_id, write=True)

    async def work() -> Response:
        priceless = [
            FieldError(f"orders.{index}.price", "required for a limit order")
            for index, item in enumerate(body.orders)
            if item.type == "limit" and item.price is None
        ]
        if priceless:
            raise Problem(422, "Invalid request", "a limit order needs a price", errors=priceless)
        if ctx.sender is not None:  # no intake writer to check client ids: look first
            keys = [(item.enterprise_id, item.client_order_id) for item in body.orders]
            await _refuse_reused_client_ids(ctx, keys)
        commands: list[Event] = [_command(item) for item in body.orders]
        first = await ctx.send_group(commands, field="orders")
        if first is None:  # Kafka: positions are assigned by the engine's bridge
            pending = [
                {"order_id": None, "status": "pending", "intake_position": None,
                 "client_order_id": item.client_order_id}
                for item in body.orders
            ]  # fmt: skip
            return json({"orders": pending}, 202)
        positions = range(first, first + len(commands))
        if not wait:
            return json(
                {"orders": [
                    {"order_id": p, "status": "pending", "intake_position": p,
                     "client_order_id": item.client_order_id}
                    for p, item in zip(positions, body.orders, strict=True)
                ]}, 202,
            )  # fmt: skip
        answers = await ctx.outcomes(list(positions))
        found = [answer.get("order") for answer in answers]
        if any(order is None for order in found):
            missing = [p for p, order in zip(positions, found, strict=True) if order is None]
            by_id = {
                o["order_id"]: o
                for o in await run_in_threadpool(read.orders_by_ids, ctx.store.sql, missing)
            }
            found = [order or by_id.get(p) for p, order in zip(positions, found, strict=True)]
            if any(order is None for order in found):
                raise Problem(500, "Internal Server Error", "an order's result is missing")
        return json({"orders": found}, 201)

    return await idempotent(request, caller, body, work)


def _visible_order(ctx: Gateway, caller: Principal, order_id: int) -> dict[str, Any]:
    found = read.order(ctx.store.sql, order_id)
    if found is None:
        raise Problem(404, "Not Found", f"no order {order_id}")
    caller.require_enterprise(found["enterprise_id"])
    return found


@router.get("/v1/orders/{order_id}", response_model=m.OrderOut, responses=ERRORS)
async def get_order(order_id: OrderId, caller: Caller, ctx: Ctx) -> Response:
    return json(await run_in_threadpool(_visible_order, ctx, caller, order_id))


@router.get("/v1/orders", response_model=m.OrdersOut, responses=ERRORS)
async def list_orders(
    caller: Caller,
    ctx: Ctx,
    enterprise_id: str | None = None,
    status: Annotated[
        str | None,
        Query(pattern="^(open|partially_filled|queued|filled|cancelled|rejected|expired)$"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_POSITION, description="order ids below this")
    ] = None,
) -> Response:
    if enterprise_id is None:
        if caller.is_("trader", "viewer"):
            enterprise_id = caller.enterprise_id
        else:
            caller.require("regulator")
    assert enterprise_id is not None or caller.is_("regulator")
    if enterprise_id is not None:
        caller.require_enterprise(enterprise_id)
    found = await run_in_threadpool(
        read.orders, ctx.store.sql, enterprise_id, status, limit, before
    )
    return json({"orders": found})


@router.get("/v1/enterprises/{enterprise_id}/fills", response_model=m.FillsOut, responses=ERRORS)
async def list_fills(
    enterprise_id: str,
    caller: Caller,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_POSITION, description="trade ids below this")
    ] = None,
) -> Response:
    """The enterprise's fills, newest first, across all its orders. `GET /v1/orders`
    carries fills too, but only those of the orders on its page: an enterprise with
    many newer rejected or cancelled orders would seem to have none (the dashboard's
    Fills panel reads this instead)."""
    caller.require_enterprise(enterprise_id)
    await run_in_threadpool(require_enterprise_exists, ctx.store.sql, enterprise_id)
    found = await run_in_threadpool(
        read.fills_of_enterprise, ctx.store.sql, enterprise_id, limit, before
    )
    return json({"enterprise_id": enterprise_id, "fills": found})


#: Refusals of a cancel, reduce or reprice that are about the order's or the account's
#: state (409); the others are about the input (a quantity or price that cannot be
#: taken) and get 422, as on every other write. The order itself was found before the
#: command was sent, so the engine's `unknown_order` means "no longer open".
_AMEND_CONFLICTS = CONFLICTS | {"unknown_order", "not_owner", "order_queued"}


async def _amend(
    ctx: Gateway,
    caller: Principal,
    order_id: int,
    command: c.CancelOrder | c.ReduceOrder | c.RepriceOrder,
) -> Response:
    result = await ctx.send_and_wait(command, check_instrument=False)
    reason = result.get("reject_reason")
    if reason:
        raise Problem(
            409 if reason in _AMEND_CONFLICTS else 422,
            "Conflict" if reason in _AMEND_CONFLICTS else "Refused",
            f"the engine refused: {reason}"
            + (f" ({result['detail']})" if result.get("detail") else ""),
            reason=reason,
        )
    if result.get("via") == "kafka":
        return json({"order_id": order_id, "status": "pending"}, 202)
    return json(await run_in_threadpool(_visible_order, ctx, caller, order_id))


@router.delete("/v1/orders/{order_id}", response_model=m.OrderOut, responses=ERRORS)
async def cancel_order(order_id: OrderId, request: Request, caller: Caller, ctx: Ctx) -> Response:
    """Cancel the remainder; the hold is released. With an `Idempotency-Key`, a repeat
    gets the first answer (the key covers the method and path: the same key on another
    order is a 409)."""
    found = await run_in_threadpool(_visible_order, ctx, caller, order_id)
    caller.require_enterprise(found["enterprise_id"], write=True)
    command = c.CancelOrder(order_id=order_id, enterprise_id=found["enterprise_id"])
    return await idempotent(request, caller, None, lambda: _amend(ctx, caller, order_id, command))


@router.post(
    "/v1/orders/cancel",
    response_model=m.CancelBatchOut,
    responses={202: {"model": m.CancelBatchAccepted}, **ERRORS},
    summary="Cancel up to 500 orders at once, all appended or none; waits for every result",
)
async def cancel_orders(
    body: m.CancelBatchIn,
    request: Request,
    caller: Caller,
    ctx: Ctx,
    wait: Wait = True,
) -> Response:
    """Cancel the remainder of each order; its hold is released.

    Every id is checked first: one repeated (422), unknown (404) or of an enterprise
    the token may not trade for (403) refuses them all, and nothing is appended. An
    order with nothing left to cancel (filled, already cancelled) is answered with
    `cancelled: false` and the engine's reason; the others are cancelled.
    """
    ids = body.order_ids
    first_seen: dict[int, int] = {}
    for index, order_id in enumerate(ids):
        if order_id in first_seen:
            error = FieldError(f"order_ids.{index}", f"repeats order_ids.{first_seen[order_id]}")
            raise Problem(
                422, "Invalid request", f"order {order_id} is named twice", errors=[error]
            )
        first_seen[order_id] = index
    owners = await run_in_threadpool(read.owners_of, ctx.store.sql, ids)
    for index, order_id in enumerate(ids):
        owner = owners.get(order_id)
        if owner is None:
            raise Problem(404, "Not Found", f"no order {order_id} (order_ids.{index})")
        caller.require_enterprise(owner, write=True)

    async def work() -> Response:
        commands: list[Event] = [c.CancelOrder(order_id=i, enterprise_id=owners[i]) for i in ids]
        first = await ctx.send_group(commands, field="order_ids")
        if first is None or not wait:  # Kafka: positions are assigned by the engine's bridge
            pending = [
                {"order_id": i, "status": "pending",
                 "intake_position": None if first is None else first + n}
                for n, i in enumerate(ids)
            ]  # fmt: skip
            return json({"results": pending}, 202)
        answers = await ctx.outcomes(list(range(first, first + len(ids))))
        after = {
            o["order_id"]: o
            for o in await run_in_threadpool(read.orders_by_ids, ctx.store.sql, ids)
        }
        results = [
            {"order_id": i, "cancelled": not answer.get("reject_reason"),
             "reason": answer.get("reject_reason"), "order": after[i]}
            for i, answer in zip(ids, answers, strict=True)
        ]  # fmt: skip
        return json({"results": results})

    return await idempotent(request, caller, body, work)


@router.patch("/v1/orders/{order_id}", response_model=m.OrderOut, responses=ERRORS)
async def amend_order(
    order_id: OrderId, body: m.OrderPatch, request: Request, caller: Caller, ctx: Ctx
) -> Response:
    """`{quantity}` reduces (keeps priority); `{price}` reprices (loses priority).

    A refusal about the order's state (no longer open) is a 409; one about the input
    (a quantity that does not reduce, a price outside the band) a 422 with `reason`."""
    if (body.quantity is None) == (body.price is None):
        raise Problem(
            422, "Invalid request", "give exactly one of quantity or price",
            errors=[FieldError("quantity", "exactly one of quantity or price")],
        )  # fmt: skip
    found = await run_in_threadpool(_visible_order, ctx, caller, order_id)
    eid = found["enterprise_id"]
    caller.require_enterprise(eid, write=True)
    command: c.ReduceOrder | c.RepriceOrder
    if body.quantity is not None:
        command = c.ReduceOrder(order_id=order_id, enterprise_id=eid, quantity=body.quantity)
    else:
        assert body.price is not None
        command = c.RepriceOrder(order_id=order_id, enterprise_id=eid, price=body.price)
    return await idempotent(request, caller, body, lambda: _amend(ctx, caller, order_id, command))
