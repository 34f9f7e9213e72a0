"""API tokens, roles and who may see what.

Tokens are random (``secrets``), shown once, and stored only as their SHA-256: a leaked
database does not leak working credentials. Each token has a role and, for traders and
viewers, the one enterprise it acts for. Access rules live here, in one place, as small
functions the routes call: an enterprise's token sees only its own orders, balances,
reports and ledger; regulators see everything; verifiers see reports.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from infra.sqldb import SqlDatabase
from projections.base import Table
from projections.projector import ensure_tables
from services.gateway.problems import Problem

__all__ = [
    "ROLES",
    "TOKENS",
    "Principal",
    "create_token",
    "ensure_auth_tables",
    "principal",
    "stream_principal",
]

ROLES = ("operator", "regulator", "verifier", "trader", "viewer")
ENTERPRISE_ROLES = ("trader", "viewer")

TOKENS = Table(
    "api_tokens",
    (
        ("token_hash", "TEXT NOT NULL"),
        ("role", "TEXT NOT NULL"),
        ("enterprise_id", "TEXT"),
        ("label", "TEXT NOT NULL"),
        ("created_at", "BIGINT NOT NULL"),
    ),
    key=("token_hash",),
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role, and the enterprise for traders and viewers."""

    role: str
    enterprise_id: str | None
    token_hash: str

    def is_(self, *roles: str) -> bool:
        return self.role in roles

    def require(self, *roles: str) -> None:
        """403 unless the caller has one of `roles`."""
        if self.role not in roles:
            raise Problem(403, "Forbidden", f"requires role {' or '.join(roles)}, not {self.role}")

    def require_enterprise(self, enterprise_id: str, *, write: bool = False) -> None:
        """403 unless the caller may act on (write) or see (read) that enterprise."""
        if write:
            if self.role != "trader" or self.enterprise_id != enterprise_id:
                raise Problem(403, "Forbidden", f"only a trader of {enterprise_id} may do this")
            return
        if self.role == "regulator":
            return
        if self.role in ENTERPRISE_ROLES and self.enterprise_id == enterprise_id:
            return
        raise Problem(403, "Forbidden", f"not allowed to see enterprise {enterprise_id}")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_auth_tables(db: SqlDatabase) -> None:
    ensure_tables(db, [TOKENS])


def create_token(
    db: SqlDatabase, role: str, enterprise_id: str | None = None, label: str = ""
) -> str:
    """A new token (returned once, stored hashed). Traders and viewers need an enterprise."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if (role in ENTERPRISE_ROLES) != (enterprise_id is not None):
        raise ValueError(
            f"a {role} token {'needs' if role in ENTERPRISE_ROLES else 'takes no'} --enterprise"
        )
    ensure_auth_tables(db)
    token = "cx_" + secrets.token_urlsafe(32)
    with db.transaction() as cursor:
        cursor.execute(
            "INSERT INTO api_tokens (token_hash, role, enterprise_id, label, created_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (_digest(token), role, enterprise_id, label, time.time_ns() // 1_000),
        )
    return token


class TokenCache:
    """Token lookups, cached: a token's role never changes after creation."""

    def __init__(self, db: SqlDatabase) -> None:
        self.db = db
        self._known: dict[str, Principal] = {}

    def cached(self, token: str) -> Principal | None:
        return self._known.get(_digest(token))

    def lookup(self, token: str) -> Principal | None:
        digest = _digest(token)
        found = self._known.get(digest)
        if found is None:
            rows = self.db.query(
                "SELECT role, enterprise_id FROM api_tokens WHERE token_hash = %s", (digest,)
            )
            if not rows:
                return None
            found = self._known[digest] = Principal(rows[0][0], rows[0][1], digest)
        return found


async def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer TOKEN``; 401 when absent or unknown.

    A token in the URL (``?access_token=``) is not accepted here: URLs end up in logs,
    histories and referrers. Only the event stream takes one (:func:`stream_principal`).
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "Unauthorized", "send Authorization: Bearer TOKEN", auth_challenge=True)
    return await _known(request, token.strip())


async def stream_principal(request: Request) -> Principal:
    """The caller of a server-sent-events route: as :func:`principal`, or from
    ``?access_token=`` when there is no header (EventSource cannot set headers)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        token = request.query_params.get("access_token", "")
        if not token.strip():
            raise Problem(
                401, "Unauthorized", "send Authorization: Bearer TOKEN (or ?access_token=)",
                auth_challenge=True,
            )  # fmt: skip
    return await _known(request, token.strip())


async def _known(request: Request, token: str) -> Principal:
    cache: TokenCache = request.app.state.tokens
    found = cache.cached(token)
    if found is None:  # first sight of this token: one query, off the event loop
        found = await run_in_threadpool(cache.lookup, token)
    if found is None:
        raise Problem(401, "Unauthorized", "unknown token", auth_challenge=True)
    return found
