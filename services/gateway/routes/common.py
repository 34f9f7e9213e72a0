"""Helpers every route module shares."""

from __future__ import annotations

from typing import Any

from services.gateway.models import Problem
from services.gateway.problems import PROBLEM_JSON
from services.gateway.responses import OrjsonResponse

__all__ = ["ERRORS", "MAX_POSITION", "json"]

#: Positions and ids are BIGINT: anything larger is refused as input, never reaches SQL.
MAX_POSITION = 2**63 - 1

_PROBLEM = {"model": Problem, "content": {PROBLEM_JSON: {}}}
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


def json(content: Any, status: int = 200) -> OrjsonResponse:
    return OrjsonResponse(content, status_code=status)
