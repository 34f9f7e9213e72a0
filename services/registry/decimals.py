"""Decimal arithmetic in one fixed context, and the canonical text of a decimal.

The process-wide decimal context is mutable global state; relying on it would let any
library that changes it alter results. Every operation here passes :data:`CONTEXT`
explicitly (34 significant digits, IEEE decimal128's precision, half-up rounding).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

__all__ = [
    "CONTEXT",
    "ONE",
    "ZERO",
    "DecimalError",
    "add",
    "div",
    "fmt",
    "from_text",
    "mul",
    "parse",
    "quantize",
    "round_half_up",
    "sub",
]

CONTEXT = Context(prec=34, rounding=ROUND_HALF_UP)
#: Rounding to places needs as many digits as the result has; inputs are bounded (see
#: :func:`parse`), so 100 digits means quantising can never fail on a large value.
_WIDE = Context(prec=100, rounding=ROUND_HALF_UP)
ZERO = Decimal(0)
ONE = Decimal(1)
#: Accepted inputs: below 10^16 with at most 12 decimal places. Far beyond any real
#: activity figure, factor or benchmark; the bound keeps every product and quotient of
#: the domain well inside the contexts' precision.
MAX_INTEGER_DIGITS = 16
MAX_PLACES = 12


class DecimalError(ValueError):
    """A value that is not a finite decimal (or not allowed to be negative)."""


def parse(value: object, *, negative: bool = False) -> Decimal:
    """A decimal from a string or an int; floats, NaN, infinities and junk are refused.

    Floats are refused because they are not exact (0.1 is not one tenth); the gateway
    turns JSON numbers into their text before they get here.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DecimalError("must be a decimal string")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise DecimalError(f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise DecimalError(f"{value!r} is not a finite number")
    exponent = number.as_tuple().exponent
    if number.adjusted() >= MAX_INTEGER_DIGITS:
        raise DecimalError(f"{value!r} is out of range (below 10^{MAX_INTEGER_DIGITS})")
    if (
        isinstance(exponent, int)
        and exponent < -MAX_PLACES
        and number != number.quantize(Decimal(1).scaleb(-MAX_PLACES), context=_WIDE)
    ):
        raise DecimalError(f"{value!r} has more than {MAX_PLACES} decimal places")
    if number < 0 and not negative:
        raise DecimalError("must not be negative")
    return CONTEXT.add(number, ZERO)  # normalises -0 to 0


def from_text(text: str) -> Decimal:
    """A decimal the domain itself wrote (:func:`fmt` text in its state or events).

    Not :func:`parse`: computed figures (an emissions total) may exceed the bounds of
    inputs, and reading back what was already accepted must never fail.
    """
    return Decimal(text)


def add(a: Decimal, b: Decimal) -> Decimal:
    return CONTEXT.add(a, b)


def sub(a: Decimal, b: Decimal) -> Decimal:
    return CONTEXT.subtract(a, b)


def mul(a: Decimal, b: Decimal) -> Decimal:
    return CONTEXT.multiply(a, b)


def div(a: Decimal, b: Decimal) -> Decimal:
    return CONTEXT.divide(a, b)


def quantize(value: Decimal, places: int) -> Decimal:
    """`value` rounded half-up to `places` decimal places."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=_WIDE)


def round_half_up(value: Decimal) -> int:
    """`value` rounded half-up (away from zero on a tie) to an integer."""
    return int(quantize(value, 0))


def fmt(value: Decimal) -> str:
    """The canonical text of a decimal: no exponent, no trailing zeros, ``0`` for zero.

    Equal numbers give equal text (``1.50`` and ``1.5`` are both ``1.5``), which the
    canonical event bytes and the state hash need.
    """
    if value.is_zero():
        return "0"
    return format(value.normalize(CONTEXT), "f")
