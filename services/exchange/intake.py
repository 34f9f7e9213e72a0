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
from events import registry as r
from events.base import Event, checker, lookup, type_errors
from events.codec import frame
from infra.recorders import Appended
from infra.store import Store
from services.registry import credit_code
from services.registry.emissions import compute_report
from services.registry.evaluation import parse_benchmarks, parse_weights
from services.registry.quotas import parse_allocation
from services.registry.registry import ACTIONS, period_problem

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


def _registry(command: Event, errors: list[FieldError]) -> None:
    """Stateless checks of the registry's commands: the same parsing the engine does,
    so a command that passes here is refused by the engine only for reasons of state."""
    period = getattr(command, "period", None)
    if period is not None:
        problem = period_problem(period)
        if problem is not None:
            errors.append(FieldError("period", problem))
    problems: list[tuple[str, str]] = []
    if isinstance(command, r.RegisterEnterprise):
        _text(errors, "name", command.name, 200)
        _text(errors, "sector", command.sector)
        code_problem = credit_code.problem(command.credit_code)
        if code_problem is not None:
            errors.append(FieldError("credit_code", code_problem))
    elif isinstance(command, r.ChangeEnterpriseStatus):
        if command.action not in ACTIONS:
            errors.append(FieldError("action", f"must be one of {', '.join(ACTIONS)}"))
    elif isinstance(command, r.OpenPeriod):
        if not 0 <= command.deadline <= 2**62:
            errors.append(FieldError("deadline", "must be µs since the epoch, or 0 (default)"))
        if command.instrument:
            _text(errors, "instrument", command.instrument, 32)
    elif isinstance(command, r.SetPeriodDeadline):
        if not 0 < command.deadline <= 2**62:
            errors.append(FieldError("deadline", "must be µs since the epoch"))
    elif isinstance(command, r.SubmitReport):
        _, problems = compute_report(
            command.sources, command.output_value, command.energy_tce, command.pollutants
        )
    elif isinstance(command, r.VerifyReport):
        _text(errors, "report_id", command.report_id, 200)
        _text(errors, "verifier", command.verifier)
        if len(command.note) > 2000:
            errors.append(FieldError("note", "must be at most 2000 characters"))
        if command.report_version < 0:
            errors.append(FieldError("report_version", "must be 0 (latest) or a version"))
    elif isinstance(command, r.SetAllocation):
        if bool(command.enterprise_id) == bool(command.sector):
            errors.append(FieldError("enterprise_id", "name either an enterprise or a sector"))
        elif command.sector:
            _text(errors, "sector", command.sector)
        else:
            _text(errors, "enterprise_id", command.enterprise_id)
        _, problems = parse_allocation(command.method, command.params)
    elif isinstance(command, r.SetEvaluationBenchmarks):
        _text(errors, "sector", command.sector)
        _, problems = parse_benchmarks(command.benchmarks)
    elif isinstance(command, r.EvaluatePeriod):
        _, problems = parse_weights(command.weights)
    errors.extend(FieldError(name, message) for name, message in problems)


_REGISTRY = (
    r.RegisterEnterprise,
    r.ChangeEnterpriseStatus,
    r.OpenPeriod,
    r.SetPeriodDeadline,
    r.SubmitReport,
    r.VerifyReport,
    r.SetAllocation,
    r.SetEvaluationBenchmarks,
    r.SetOffsetInstrument,
    r.ClosePeriod,
    r.EnforcePeriod,
    r.EvaluatePeriod,
    r.CollectPenalty,
)


_order_well_typed = checker(c.PlaceOrder)
_PLAIN_TIME_IN_FORCE = frozenset(("day", "gtc", "ioc", "fok"))


def _plain_limit_order(cmd: c.PlaceOrder, instruments: Container[str] | None) -> bool:
    """True for a well-formed limit order without an expiry: what nearly every order
    is. One expression, where the full checks below cost ~3x as much per order; any
    order it does not clear goes through them and gets the same answer or its errors.
    """
    coid = cmd.client_order_id
    eid = cmd.enterprise_id
    return (
        _order_well_typed(cmd)
        and cmd.order_type == "limit"
        and cmd.time_in_force in _PLAIN_TIME_IN_FORCE
        and cmd.side in SIDES
        and cmd.expire_at == 0
        and 0 < cmd.price <= MAX_PRICE
        and 0 < cmd.quantity <= MAX_QUANTITY
        and 0 < len(coid) <= 64
        and 0 < len(eid) <= 64
        and not (cmd.post_only and cmd.time_in_force in ("ioc", "fok"))
        and not coid.isspace()
        and not eid.isspace()
        and "\x00" not in coid
        and "\x00" not in eid
        and ("\x00" not in cmd.instrument if instruments is None else cmd.instrument in instruments)
    )


def validate(command: Event, instruments: Container[str] | None = None) -> list[FieldError]:
    """Everything wrong with `command` that can be known without the engine's state."""
    if type(command) is c.PlaceOrder and _plain_limit_order(command, instruments):
        return []
    return all_errors(command, instruments)


def _nul_errors(command: Event) -> list[FieldError]:
    """A text field holding NUL: PostgreSQL's text cannot store one, so a command that
    carries it would stop every reader that writes the field to a read model."""
    return [
        FieldError(name, "must not contain the NUL character")
        for name, expected in lookup(command.type_name).field_types
        if expected is str and "\x00" in getattr(command, name)
    ]


def all_errors(command: Event, instruments: Container[str] | None = None) -> list[FieldError]:
    """:func:`validate` without its fast path for plain limit orders: every check, for
    every command (what the fast path must agree with)."""
    mistyped = type_errors(command)
    if mistyped:
        return [FieldError(name, problem) for name, problem in mistyped]
    errors = _nul_errors(command)
    if isinstance(command, c.SurrenderCredits):
        problem = period_problem(command.period)
        if problem is not None:
            errors.append(FieldError("period", problem))
    for name in (
        "enterprise_id",
        "from_enterprise_id",
        "to_enterprise_id",
        "seller_id",
        "buyer_id",
    ):
        if hasattr(command, name) and not isinstance(command, r.SetAllocation):
            _text(errors, name, getattr(command, name))
    if hasattr(command, "amount"):
        _positive(errors, "amount", command.amount)
    if hasattr(command, "quantity"):
        _positive(errors, "quantity", command.quantity, MAX_QUANTITY)
    if isinstance(command, c.PlaceOrder):
        _order(command, errors)
    elif isinstance(command, c.RepriceOrder | c.BlockTrade):
        _positive(errors, "price", command.price, MAX_PRICE)
    elif isinstance(command, _REGISTRY):
        _registry(command, errors)
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
