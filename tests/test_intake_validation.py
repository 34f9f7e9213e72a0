"""Stateless order validation at the intake: the fast path for plain limit orders must
answer exactly as the full checks do, for good orders and bad ones alike.

A disagreement either lets a bad order into the log (the engine would then meet a value
it was promised it would never see) or refuses a good one.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from events import commands as c
from events import registry as r
from services.exchange.intake import MAX_PRICE, MAX_QUANTITY, FieldError, all_errors, validate

INSTRUMENTS = frozenset({"HCC-2025"})

texts = st.sampled_from(
    ["", " ", "\t\u3000", "E-1", "c-7", "x" * 64, "x" * 65, " padded ", "c\x00", "\x00"]
)
ints = st.sampled_from(
    [-1, 0, 1, 6_000, MAX_PRICE, MAX_PRICE + 1, MAX_QUANTITY, MAX_QUANTITY + 1, 10**20]
)
# Wrong types too: a bool is not an int, an int is not a str.
anything = st.one_of(texts, ints, st.booleans(), st.none())
orders = st.builds(
    c.PlaceOrder,
    client_order_id=st.one_of(texts, texts, anything),
    enterprise_id=st.one_of(texts, texts, anything),
    instrument=st.sampled_from(["HCC-2025", "OTHER", "", "HCC\x00"]),
    side=st.sampled_from(["buy", "sell", "hold", ""]),
    order_type=st.sampled_from(["limit", "limit", "market", "stop"]),
    quantity=st.one_of(ints, ints, anything),
    price=st.one_of(ints, ints, anything),
    time_in_force=st.sampled_from(["day", "gtc", "gtd", "ioc", "fok", "week"]),
    post_only=st.one_of(st.booleans(), st.booleans(), anything),
    expire_at=st.one_of(st.sampled_from([0, 0, 1, -5]), anything),
)


@settings(max_examples=1_500, deadline=None)
@given(orders, st.sampled_from([INSTRUMENTS, None]))
def test_the_fast_path_agrees_with_every_check(
    order: c.PlaceOrder, instruments: frozenset[str] | None
) -> None:
    assert validate(order, instruments) == all_errors(order, instruments)


def test_a_plain_limit_order_passes_and_near_misses_are_named() -> None:
    good = c.PlaceOrder(
        client_order_id="c-1", enterprise_id="E-1", instrument="HCC-2025", side="buy",
        order_type="limit", quantity=10, price=6_000, time_in_force="gtc",
    )  # fmt: skip
    assert validate(good, INSTRUMENTS) == []
    blank = c.PlaceOrder(**{**_fields(good), "client_order_id": "   "})
    assert validate(blank, INSTRUMENTS) == [
        FieldError("client_order_id", "must be a non-empty string")
    ]
    unknown = c.PlaceOrder(**{**_fields(good), "instrument": "OTHER"})
    assert validate(unknown, INSTRUMENTS) == [
        FieldError("instrument", "unknown instrument 'OTHER'")
    ]
    flag_as_price = c.PlaceOrder(**{**_fields(good), "price": True})
    assert validate(flag_as_price, INSTRUMENTS) == [FieldError("price", "must be int")]
    # PostgreSQL's text cannot hold NUL: the read models could not store the order.
    nul = c.PlaceOrder(**{**_fields(good), "client_order_id": "c-\x001"})
    assert validate(nul, INSTRUMENTS) == [
        FieldError("client_order_id", "must not contain the NUL character")
    ]
    # Without a list of instruments to find it in, the instrument is checked too.
    nul_symbol = c.PlaceOrder(**{**_fields(good), "instrument": "HCC\x00"})
    assert validate(nul_symbol, None) == [
        FieldError("instrument", "must not contain the NUL character")
    ]


def test_no_command_carries_a_nul_character_in_its_text() -> None:
    # A free-text field as well as an id: any str field of any command.
    status = r.ChangeEnterpriseStatus(enterprise_id="E-1", action="suspend",
                                      reason="late\x00 report")  # fmt: skip
    assert validate(status) == [FieldError("reason", "must not contain the NUL character")]


def _fields(order: c.PlaceOrder) -> dict[str, object]:
    return {name: getattr(order, name) for name in order.__dataclass_fields__}  # type: ignore[attr-defined]
