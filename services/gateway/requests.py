"""Request bodies parsed by orjson: the counterpart of :mod:`services.gateway.responses`.

FastAPI reads a JSON body through Starlette's ``Request.json``, which is the standard
library's parser; a batch of 500 orders spends a noticeable part of its request there.
The routers of this app use :class:`OrjsonRoute`, whose requests parse with orjson and
fall back to the standard library for anything orjson refuses (an integer beyond 64
bits, ``NaN``, a lone surrogate): such a body then gets exactly the answer it got
before, a field-level 422 from validation or FastAPI's own JSON error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

__all__ = ["OrjsonRequest", "OrjsonRoute"]


class OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                self._json = json.loads(body)
        return self._json


class OrjsonRoute(APIRoute):
    """An API route whose handler sees an :class:`OrjsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(OrjsonRequest(request.scope, request.receive))

        return handle
