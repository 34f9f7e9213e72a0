"""``Idempotency-Key`` for every write: a retried request gets the first response.

The key is scoped to the caller's token, and a request is its method, path and body
(a DELETE has no body: the same key on another resource's path is another request).
The first request with a key claims it (a row inserted before any work), does the work,
and stores its response; a repeat of the same request gets that stored response, byte
for byte, and changes nothing; a repeat with another request is a client bug and gets
409, as does a repeat while the first is still being worked on. A request that fails
with a server-side error releases its claim so that a retry can do the work.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable

import orjson
from fastapi import Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from infra.sqldb import SqlDatabase
from projections.base import Table
from services.gateway.auth import Principal
from services.gateway.problems import Problem, problem_response

__all__ = ["IDEMPOTENCY", "idempotent"]

IDEMPOTENCY = Table(
    "api_idempotency",
    (
        ("owner", "TEXT NOT NULL"),
        ("key", "TEXT NOT NULL"),
        ("request_hash", "TEXT NOT NULL"),
        ("claim", "TEXT NOT NULL"),
        ("status", "INTEGER NOT NULL"),  # 0 while the first request is being worked on
        ("media_type", "TEXT"),
        ("body", "TEXT"),
        ("created_at", "BIGINT NOT NULL"),
    ),
    key=("owner", "key"),
)
MAX_KEY = 200


def _claim(
    db: SqlDatabase, owner: str, key: str, digest: str
) -> tuple[str, tuple[object, ...] | None]:
    """Claim `key`; returns (our claim, None) or (their claim, their row)."""
    claim = secrets.token_hex(8)
    with db.transaction() as cursor:
        cursor.execute(
            "INSERT INTO api_idempotency (owner, key, request_hash, claim, status, created_at) "
            "VALUES (%s, %s, %s, %s, 0, %s) ON CONFLICT (owner, key) DO NOTHING",
            (owner, key, digest, claim, time.time_ns() // 1_000),
        )
        cursor.execute(
            "SELECT request_hash, claim, status, media_type, body FROM api_idempotency "
            "WHERE owner = %s AND key = %s",
            (owner, key),
        )
        row = cursor.fetchone()
    assert row is not None
    return (claim, None) if row[1] == claim else (str(row[1]), row)


def _store(db: SqlDatabase, owner: str, key: str, response: Response) -> None:
    with db.transaction() as cursor:
        cursor.execute(
            "UPDATE api_idempotency SET status = %s, media_type = %s, body = %s "
            "WHERE owner = %s AND key = %s",
            (response.status_code, response.media_type, bytes(response.body).decode(), owner, key),
        )


def _release(db: SqlDatabase, owner: str, key: str) -> None:
    with db.transaction() as cursor:
        cursor.execute("DELETE FROM api_idempotency WHERE owner = %s AND key = %s", (owner, key))


async def idempotent(
    request: Request,
    caller: Principal,
    payload: BaseModel | object,
    work: Callable[[], Awaitable[Response]],
) -> Response:
    """Run `work` once per (caller, Idempotency-Key); without a key, just run it.

    `payload` is what identifies the request (a body model is dumped only when a key
    asks for it: most requests carry none).
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        return await work()
    if not key.strip() or len(key) > MAX_KEY:
        raise Problem(400, "Bad Request", f"Idempotency-Key must be 1 to {MAX_KEY} characters")
    db: SqlDatabase = request.app.state.store.sql
    digest = hashlib.sha256(
        request.method.encode()
        + request.url.path.encode()
        + orjson.dumps(
            payload.model_dump() if isinstance(payload, BaseModel) else payload,
            option=orjson.OPT_SORT_KEYS,
        )
    ).hexdigest()
    owner = caller.token_hash
    _, existing = await run_in_threadpool(_claim, db, owner, key, digest)
    if existing is not None:
        request_hash, _, status, media_type, body = existing
        if request_hash != digest:
            raise Problem(409, "Conflict", "this Idempotency-Key was used with a different request")
        if status == 0:
            raise Problem(409, "Conflict", "a request with this Idempotency-Key is in progress")
        return Response(
            str(body).encode(),
            int(str(status)),
            media_type=str(media_type),
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        response = await work()
    except Problem as problem:
        if problem.status >= 500:
            await run_in_threadpool(_release, db, owner, key)
            raise
        response = problem_response(
            problem.status, problem.title, problem.detail, problem.errors, **problem.extra
        )
    except BaseException:
        await run_in_threadpool(_release, db, owner, key)
        raise
    if response.status_code >= 500:
        await run_in_threadpool(_release, db, owner, key)
    else:
        await run_in_threadpool(_store, db, owner, key, response)
    return response
