"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns has ``type``, ``title``, ``status`` and ``detail``; bad
input adds ``errors``: one ``{field, message}`` per problem, so a client can show each
next to its form field. An engine refusal adds its ``reason`` code. Nothing but a bug
becomes a 500, and even that answers in the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from services.exchange.intake import FieldError, InvalidCommand

__all__ = ["PROBLEM_JSON", "Problem", "install_problem_handlers", "problem_response"]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("carbonx.gateway")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        auth_challenge: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.auth_challenge = auth_challenge
        self.extra = extra


def problem_response(
    status: int,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": f"https://carbonx.example/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    body.update(extra)
    return Response(orjson.dumps(body), status, headers=headers, media_type=PROBLEM_JSON)


def _field(error: Mapping[str, Any]) -> str:
    # ("body", "quantity") -> "quantity"; ("query", "depth") -> "depth"; nested -> a.b.0
    location = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        return "body"  # its location is ("body", character offset): the whole body
    parts = [str(p) for p in location[1:]] or [str(p) for p in location]
    return ".".join(parts)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, problem: Problem) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if problem.auth_challenge else None
        return problem_response(
            problem.status, problem.title, problem.detail, problem.errors, headers, **problem.extra
        )

    @app.exception_handler(InvalidCommand)
    async def _invalid(request: Request, error: InvalidCommand) -> Response:
        return problem_response(
            422, "Invalid command", f"the {error.command} command is invalid", error.errors
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> Response:
        errors = [FieldError(_field(e), str(e.get("msg", "invalid"))) for e in error.errors()]
        return problem_response(422, "Invalid request", "the request has invalid fields", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        title = _TITLES.get(error.status_code, "Error")
        return problem_response(
            error.status_code, title, str(error.detail), headers=dict(error.headers or {})
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal Server Error", "an unexpected error; it was logged")
