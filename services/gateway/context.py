"""What every route needs, built once per app: the store, the way in, the way back.

Commands reach the engine either through the store's intake log (group-committed by an
:class:`IntakeBatcher`; the caller learns its intake position and waits for the
outcome of exactly that command) or, scaled out, through the Kafka command topic (the
intake position is assigned later by the engine's bridge, so an order is found again by
its enterprise and client order id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from events.base import Event
from infra.store import Store
from projections.market import instruments
from projections.orders import outcomes_of
from services.exchange.config import EngineConfig
from services.exchange.intake import FieldError, InvalidCommand, validate
from services.exchange.kafka_intake import KafkaCommandSender
from services.gateway.auth import TokenCache
from services.gateway.problems import Problem
from services.gateway.submit import IntakeBatcher, OutcomeWatcher, ReusedClientOrderId
from services.ticker import now_us

__all__ = ["Gateway", "gateway"]


@dataclass
class Gateway:
    store: Store
    config: EngineConfig
    tokens: TokenCache
    batcher: IntakeBatcher | None
    watcher: OutcomeWatcher
    sender: KafkaCommandSender | None = None
    #: Seconds a write waits for the engine and the projections before answering 504.
    wait_timeout: float = 10.0
    clock: Callable[[], int] = now_us
    _symbols: set[str] = field(default_factory=set)

    def known_instruments(self) -> set[str]:
        """Listed symbols (cached: a listing is never undone)."""
        if not self._symbols:
            self._symbols.update(m["symbol"] for m in instruments(self.store.sql, 0))
        return self._symbols

    def instrument_known(self, symbol: str) -> bool:
        if symbol in self._symbols:
            return True
        self._symbols.clear()
        return symbol in self.known_instruments()

    async def send(self, command: Event, check_instrument: bool = True) -> int | None:
        """Validate and append `command`; its intake position (None when it went to Kafka)."""
        symbols = None
        symbol = getattr(command, "instrument", None)
        if check_instrument and symbol is not None:
            if symbol not in self._symbols:  # a listing may be new: look once more
                await run_in_threadpool(self.instrument_known, symbol)
            symbols = self._symbols
        errors = validate(command, symbols)
        if errors:
            raise InvalidCommand(command.type_name, errors)
        return await self._deliver([command])

    async def send_group(self, commands: list[Event], field: str = "commands") -> int | None:
        """Validate every command (InvalidCommand names `field.index.name` for each
        problem; then nothing is sent) and append them together, all or none: the
        first intake position (None when they went to Kafka)."""
        named = (getattr(cmd, "instrument", None) for cmd in commands)
        unknown = [s for s in named if isinstance(s, str) and s not in self._symbols]
        if unknown:  # a listing may be new: look once more
            await run_in_threadpool(self.instrument_known, unknown[0])
        errors = [
            FieldError(f"{field}.{index}.{error.field}", error.message)
            for index, cmd in enumerate(commands)
            for error in validate(cmd, self._symbols)
        ]
        if errors:
            raise InvalidCommand(commands[0].type_name, errors)
        return await self._deliver(commands)

    async def _deliver(self, commands: list[Event]) -> int | None:
        """Hand validated `commands` to the command topic (None) or to the intake writer
        (their first intake position), all with the same time."""
        now = self.clock()
        if self.sender is not None:
            await run_in_threadpool(self.sender.submit, [(cmd, now) for cmd in commands])
            return None
        assert self.batcher is not None
        return await self._appended(self.batcher.submit_group(commands, now))

    async def _appended(self, future: Future[int]) -> int:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.wait_timeout)
        except ReusedClientOrderId as reused:
            raise Problem(409, "Conflict", str(reused)) from reused
        except TimeoutError as error:
            raise Problem(
                504,
                "Gateway Timeout",
                f"the store did not take the command within {self.wait_timeout:g} s; "
                "it may still be recorded: retry with the same Idempotency-Key",
            ) from error
        except Exception as error:
            raise Problem(
                503, "Service Unavailable", f"the store refused the command: {error}"
            ) from error

    async def outcome(self, position: int) -> dict[str, Any]:
        """Wait for what became of the command at intake `position` (504 on timeout)."""
        return (await self.outcomes([position]))[0]

    async def outcomes(self, positions: list[int]) -> list[dict[str, Any]]:
        """Wait for what became of the commands at intake `positions`, in their order
        (504 naming the first unanswered position on timeout)."""
        found = await self.watcher.wait_many(positions, self.wait_timeout)
        missing = [p for p in positions if p not in found]
        if missing:
            # The watcher may have missed a wake-up; one direct look before giving up.
            looked = await run_in_threadpool(outcomes_of, self.store.sql, missing)
            found.update(looked)
            unanswered = [p for p in missing if p not in looked]
            if unanswered:
                raise Problem(
                    504,
                    "Gateway Timeout",
                    f"the command was accepted at intake position {unanswered[0]} but the "
                    f"engine has not answered within {self.wait_timeout:g} s; it will still be "
                    "processed: look it up later",
                    intake_position=unanswered[0],
                )
        return [found[p] for p in positions]

    async def send_and_wait(self, command: Event, check_instrument: bool = True) -> dict[str, Any]:
        """Send `command` and wait for its outcome; 202-style dict when it went to Kafka."""
        position = await self.send(command, check_instrument)
        if position is None:
            return {"accepted": True, "via": "kafka"}
        return await self.outcome(position)

    def poll_until(self, probe: Callable[[], Any], timeout: float) -> Any:
        """Call `probe` until it returns something (Kafka mode: no position to wait on)."""
        deadline = time.monotonic() + timeout
        seen = self.store.generation()
        while True:
            found = probe()
            if found is not None or time.monotonic() > deadline:
                return found
            seen = self.store.wait_for_change(seen, 0.05)


async def gateway(request: Request) -> Gateway:
    found: Gateway = request.app.state.gateway
    return found
