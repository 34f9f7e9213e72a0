"""The intake side: stateless validation of commands, and appending them to the log.

Only checks that need no state happen here (shape, ranges, tick and lot, known
instrument); everything that depends on balances, holds, sessions or bands is the
engine's to decide, in log order. A command that fails here is never appended, so bad
input changes nothing.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import NamedTuple

from events import commands as c
from events.base import Event, type_errors
from events.codec import frame
from infra.recorders import Appended
from infra.store import Store

__all__ = ["FieldError", "Intake", "InvalidCommand", "validate"]

SIDES = ("buy", "sell")
ORDER_TYPES = ("limit", "market")
TIME_IN_FORCE = ("day", "gtc", "gtd", "ioc", "fok")
MAX_AMOUNT = 10**15  # fen: far above any real balance, far below int64
MAX_PRICE = 10**8  # fen per tonne (CNY 1,000,000/t): price x quantity stays in int64
MAX_QUANTITY = 10**10  # tonnes


class FieldError(NamedTuple):
    field: str
    message: str


class InvalidCommand(ValueError):
    """A command failed validation; `errors` names each field and the reason."""

    def __init__(self, command: str, errors: list[FieldError]) -> None:
        self.command = command
        self.errors = errors
        super().__init__(
            f"invalid {command}: " + "; ".join(f"{e.field}: {e.message}" for e in errors)
        )


def _is_int(value: object) -> bool:
    return type(value) is int


def _positive(errors: list[FieldError], name: str, value: object, limit: int = MAX_AMOUNT) -> None:
    if not _is_int(value):
        errors.append(FieldError(name, "must be an integer"))
    elif not 0 < value <= limit:  # type: ignore[operator]
        errors.append(FieldError(name, f"must be between 1 and {limit}"))


def _text(errors: list[FieldError], name: str, value: object, limit: int = 64) -> None:
    if not isinstance(value, str) or not value.strip():
        errors.append(FieldError(name, "must be a non-empty string"))
    elif len(value) > limit:
        errors.append(FieldError(name, f"must be at most {limit} characters"))


def _order(cmd: c.PlaceOrder, errors: list[FieldError]) -> None:
    _text(errors, "client_order_id", cmd.client_order_id)
    if cmd.side not in SIDES:
        errors.append(FieldError("side", f"must be one of {', '.join(SIDES)}"))
    if cmd.order_type not in ORDER_TYPES:
        errors.append(FieldError("type", f"must be one of {', '.join(ORDER_TYPES)}"))
    if cmd.time_in_force not in TIME_IN_FORCE:
        errors.append(FieldError("time_in_force", f"must be one of {', '.join(TIME_IN_FORCE)}"))
    if cmd.order_type == "limit":
        _positive(errors, "price", cmd.price, MAX_PRICE)
    elif cmd.order_type == "market":
        if cmd.price != 0:
            errors.append(FieldError("price", "must be absent for a market order"))
        if cmd.time_in_force in ("gtc", "gtd"):
            errors.append(FieldError("time_in_force", "a market order cannot rest"))
        if cmd.post_only:
            errors.append(FieldError("post_only", "only a limit order can be post-only"))
    if cmd.post_only and cmd.time_in_force in ("ioc", "fok"):
        errors.append(FieldError("post_only", "cannot be combined with ioc or fok"))
    if cmd.time_in_force == "gtd":
        if not _is_int(cmd.expire_at) or cmd.expire_at <= 0:
            errors.append(FieldError("expire_at", "required for gtd"))
    elif cmd.expire_at:
        errors.append(FieldError("expire_at", "only for gtd orders"))


def validate(command: Event, instruments: Container[str] | None = None) -> list[FieldError]:
    """Everything wrong with `command` that can be known without the engine's state."""
    mistyped = type_errors(command)
    if mistyped:
        return [FieldError(name, problem) for name, problem in mistyped]
    errors: list[FieldError] = []
    for name in (
        "enterprise_id",
        "from_enterprise_id",
        "to_enterprise_id",
        "seller_id",
        "buyer_id",
    ):
        if hasattr(command, name):
            _text(errors, name, getattr(command, name))
    if hasattr(command, "amount"):
        _positive(errors, "amount", command.amount)
    if hasattr(command, "quantity"):
        _positive(errors, "quantity", command.quantity, MAX_QUANTITY)
    if isinstance(command, c.PlaceOrder):
        _order(command, errors)
    elif isinstance(command, c.RepriceOrder | c.BlockTrade):
        _positive(errors, "price", command.price, MAX_PRICE)
    elif isinstance(command, c.ListInstrument):
        _text(errors, "symbol", command.symbol, 32)
        _positive(errors, "reference_price", command.reference_price, MAX_PRICE)
        if not _is_int(command.fee_bps) or not 0 <= command.fee_bps < 10_000:
            errors.append(FieldError("fee_bps", "must be an integer from 0 to 9999"))
    symbol = getattr(command, "instrument", None)
    if symbol is not None and instruments is not None and symbol not in instruments:
        errors.append(FieldError("instrument", f"unknown instrument {symbol!r}"))
    return errors


class Intake:
    """Appends validated commands to the intake log; any number may run at once."""

    def __init__(self, store: Store, instruments: Container[str] | None = None) -> None:
        self.store = store
        self.instruments = instruments

    def submit(self, commands: Sequence[tuple[Event, int]]) -> Appended:
        """Validate every (command, time) and append them all, in order, or none."""
        for command, _ in commands:
            errors = validate(command, self.instruments)
            if errors:
                raise InvalidCommand(command.type_name, errors)
        appended = self.store.intake.append([frame(cmd, time) for cmd, time in commands])
        if appended is None:
            raise ValueError("nothing to submit")
        return appended
