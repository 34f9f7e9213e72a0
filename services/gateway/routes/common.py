"""Helpers every route module shares."""

from __future__ import annotations

from typing import Any

from infra.sqldb import SqlDatabase
from services.gateway.models import Problem as ProblemBody
from services.gateway.problems import PROBLEM_JSON, Problem
from services.gateway.responses import OrjsonResponse

__all__ = ["CONFLICTS", "ERRORS", "MAX_POSITION", "json", "require_enterprise_exists"]

#: Positions and ids are BIGINT: anything larger is refused as input, never reaches SQL.
MAX_POSITION = 2**63 - 1

_PROBLEM = {"model": ProblemBody, "content": {PROBLEM_JSON: {}}}
#: The error answers every route may give (documented in OpenAPI).
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {**_PROBLEM, "description": text}
    for status, text in (
        (400, "a malformed header (Idempotency-Key)"),
        (401, "no or unknown token"),
        (403, "role or enterprise not allowed"),
        (404, "unknown"),
        (409, "conflict: idempotency key reused with another body, or a state conflict"),
        (422, "invalid input, or refused by the engine (with `reason`)"),
        (504, "the engine did not answer in time (the command will still be processed)"),
    )
}


#: Refusals that are about the state, not the input: 409 rather than 422.
CONFLICTS = {
    "already_listed",
    "already_registered",
    "account_frozen",
    "before_deadline",
    "duplicate_credit_code",
    "enterprise_not_approved",
    "invalid_transition",
    "not_awaiting_verification",
    "past_deadline",
    "period_closed",
    "period_enforced",
    "period_exists",
    "period_open",
    "stale_version",
}


def json(content: Any, status: int = 200) -> OrjsonResponse:
    return OrjsonResponse(content, status_code=status)


def require_enterprise_exists(db: SqlDatabase, enterprise_id: str) -> None:
    """404 unless the enterprise is registered or has an exchange account: a page about
    an enterprise that does not exist is "unknown", not an empty list."""
    rows = db.query(
        "SELECT 1 FROM rm_enterprises WHERE enterprise_id = %s "
        "UNION ALL SELECT 1 FROM rm_accounts WHERE enterprise_id = %s",
        (enterprise_id, enterprise_id),
    )
    if not rows:
        raise Problem(404, "Not Found", f"no enterprise {enterprise_id}")
