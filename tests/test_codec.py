"""The canonical codec: what the log stores is stable, exact and upcastable."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import events
from events.accounts import CashDeposited, CreditsIssued
from events.base import Event, UnknownEventType, UpcastError, event_type
from events.codec import FloatRefused, decode, encode_data, frame
from events.exchange import EngineSnapshot
from events.market import InstrumentListed


def test_canonical_bytes_are_exact_sorted_and_compact() -> None:
    body = frame(CashDeposited(enterprise_id="E7", amount=150_000, reference="wire-1"), 42).body(9)
    assert body == (
        b'{"data":{"amount":150000,"enterprise_id":"E7","reference":"wire-1"},'
        b'"position":9,"time":42,"type":"CashDeposited","v":1}'
    )
    # The same bytes orjson gives for the equivalent dict with sorted keys: canonical.
    assert body == orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)


def test_nested_mappings_are_sorted_too() -> None:
    @event_type("TestNestedPollutants")
    class Nested(Event):
        pollutants: dict[str, str]

    assert encode_data(Nested(pollutants={"so2": "1.5", "cod": "0.2", "nox": "3"})) == (
        b'{"pollutants":{"cod":"0.2","nox":"3","so2":"1.5"}}'
    )


def test_float_amounts_are_refused_with_the_field_named() -> None:
    with pytest.raises(FloatRefused, match=r"CashDeposited\.amount"):
        frame(CashDeposited(enterprise_id="E1", amount=1.5), 0)  # type: ignore[arg-type]

    @event_type("TestNestedFloat")
    class Nested(Event):
        legs: tuple[tuple[int, int], ...]

    with pytest.raises(FloatRefused, match=r"legs\[1\]\[0\]"):
        encode_data(Nested(legs=((1, 2), (0.5, 3))))  # type: ignore[arg-type]

    # Deep inside a large state, past many values that are fine: the exact path.
    state = {
        "accounts": {f"E{i}": {"cash": i, "credits": [[1, i], [i + 5, i + 9]]} for i in range(500)},
        "orders": [[i, "c", True, None, [[1, 2]]] for i in range(500)],
    }
    state["accounts"]["E7"]["credits"][1][1] = 9.0
    snapshot = EngineSnapshot(intake_position=1, journal_position=1, state_hash="0", state=state)
    with pytest.raises(
        FloatRefused, match=r"^EngineSnapshot\.state\.accounts\.E7\.credits\[1\]\[1\] is a float"
    ):
        frame(snapshot, 0)
    state["accounts"]["E7"]["credits"][1][1] = 9
    assert orjson.loads(frame(snapshot, 0).body(1))["data"]["state"] == state


def test_time_must_be_integer_microseconds() -> None:
    with pytest.raises(TypeError):
        frame(CashDeposited(enterprise_id="E1", amount=1), 1.0)  # type: ignore[arg-type]


def test_round_trip_restores_tuples_and_equality() -> None:
    issued = CreditsIssued(
        enterprise_id="E1",
        instrument="HCC-2025",
        quantity=10,
        serial_first=101,
        serial_last=110,
        reason="allocation",
    )
    decoded = decode(frame(issued, 7).body(3))
    assert decoded == events.Decoded(3, 7, issued)


def test_v1_payload_is_read_as_v2_through_the_upcaster() -> None:
    stored_v1 = (
        b'{"data":{"reference_price":6000,"symbol":"HCC-2024","vintage":2024},'
        b'"position":5,"time":0,"type":"InstrumentListed","v":1}'
    )
    decoded = decode(stored_v1)
    assert decoded.event == InstrumentListed(
        symbol="HCC-2024", vintage=2024, reference_price=6000, fee_bps=0
    )
    # And a v2 payload needs no upcasting and keeps its fee.
    current = InstrumentListed(symbol="HCC-2025", vintage=2025, reference_price=5000, fee_bps=3)
    assert decode(frame(current, 0).body(1)).event == current
    assert b'"v":2' in frame(current, 0).body(1)


def test_unknown_types_and_future_versions_fail_loudly() -> None:
    with pytest.raises(UnknownEventType):
        decode(b'{"data":{},"position":1,"time":0,"type":"NoSuchThing","v":1}')
    with pytest.raises(UpcastError, match="newer"):
        decode(
            b'{"data":{"enterprise_id":"E","amount":1},"position":1,"time":0,'
            b'"type":"CashDeposited","v":9}'
        )


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @event_type("CashDeposited")
        class Again(Event):
            amount: int


@given(
    enterprise=st.text(min_size=1, max_size=30),
    amount=st.integers(min_value=-(2**62), max_value=2**62),
    time=st.integers(min_value=0, max_value=2**62),
    position=st.integers(min_value=1, max_value=2**62),
)
def test_any_event_round_trips_and_encodes_deterministically(
    enterprise: str, amount: int, time: int, position: int
) -> None:
    event = CashDeposited(enterprise_id=enterprise, amount=amount)
    body = frame(event, time).body(position)
    assert body == frame(CashDeposited(enterprise_id=enterprise, amount=amount), time).body(
        position
    )
    assert decode(body) == events.Decoded(position, time, event)


def test_framing_refuses_a_float_hidden_in_serial_ranges() -> None:
    from events.exchange import TradeExecuted

    def trade(serials: tuple[tuple[int, int], ...]) -> TradeExecuted:
        return TradeExecuted(
            trade_id=1,
            instrument="HCC-2025",
            price=5_000,
            quantity=10,
            buy_order_id=2,
            sell_order_id=3,
            buyer_id="B",
            seller_id="A",
            aggressor="buy",
            buyer_fee=1,
            seller_fee=1,
            buyer_released=0,
            serials=serials,
        )

    good = trade(((1, 5), (9, 13)))
    body = frame(good, 5, cause=7).body(1)
    assert body == (
        b'{"cause":7,"data":' + encode_data(good) + b',"position":1,"time":5,'
        b'"type":"TradeExecuted","v":1}'
    )
    assert decode(body).event == good and decode(body).cause == 7
    with pytest.raises(FloatRefused, match=r"serials\[0\]\[1\]"):
        frame(trade(((1, 5.0),)), 5)  # type: ignore[arg-type]


def test_fast_constructors_build_exactly_what_the_class_builds() -> None:
    """events.base.constructor: same parameters, defaults and instance as ``cls(...)``,
    for every registered type; the framed bytes are the same too."""
    import dataclasses
    import inspect

    from events.base import constructor, registered_types

    samples: dict[type, object] = {int: 7, str: "x", bool: True, tuple: ((1, 2),), dict: {}}
    for kind in registered_types().values():
        cls = kind.cls
        make = constructor(cls)
        assert constructor(cls) is make  # generated once
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        required = {
            f.name: samples.get(dict(kind.field_types)[f.name])
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        if make is not cls:
            assert list(inspect.signature(make).parameters) == [f.name for f in fields]
        built, expected = make(**required), cls(**required)
        assert type(built) is cls
        assert built == expected
        assert frame(built, 1).body(1) == frame(expected, 1).body(1)
    with pytest.raises(TypeError):
        constructor(CashDeposited)(enterprise_id="E1")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        constructor(CashDeposited)(enterprise_id="E1", amount=1, nonsense=2)  # type: ignore[call-arg]


@given(
    time=st.integers(min_value=-(2**63), max_value=2**63),
    cause=st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63)),
    position=st.integers(min_value=0, max_value=2**63),
)
def test_envelope_numbers_are_written_as_decimal_integers(
    time: int, cause: int | None, position: int
) -> None:
    event = CashDeposited(enterprise_id="E1", amount=5)
    opening = b'{"data":' if cause is None else b'{"cause":%d,"data":' % cause
    expected = (
        opening
        + encode_data(event)
        + b',"position":%d,"time":%d,"type":"CashDeposited","v":%d}'
        % (position, time, CashDeposited.version)
    )
    assert frame(event, time, cause).body(position) == expected


def test_mapping_readers_build_what_the_class_builds_or_decline() -> None:
    """events.base.from_mapping: exactly cls(**data) for a mapping of exactly the
    fields; None (the caller falls back to the class) for anything else."""
    import dataclasses

    from events.base import from_mapping, registered_types

    samples: dict[type, object] = {int: 7, str: "x", bool: True, tuple: ((1, 2),), dict: {}}
    for kind in registered_types().values():
        cls = kind.cls
        read = from_mapping(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        if read is None:
            assert any(f.default_factory is not dataclasses.MISSING for f in fields)
            continue
        data = {f.name: samples.get(dict(kind.field_types)[f.name]) for f in fields}
        built = read(data)
        assert type(built) is cls
        assert built == cls(**data)
        assert read({**data, "unexpected": 1}) is None
        if data:
            first = fields[0].name
            assert read({k: v for k, v in data.items() if k != first}) is None
            assert read({**{k: v for k, v in data.items() if k != first}, "other": 1}) is None


def test_generated_decoders_build_what_to_event_builds_or_refuse_alike() -> None:
    """decode's per-type code: for every registered type, the same Decoded as
    ``to_event`` (tuples frozen, from a body or a sealed payload), and the same error
    for a payload whose fields are not the class's."""
    import dataclasses

    from events.base import registered_types
    from events.chain import seal
    from events.codec import Decoded, to_event

    samples: dict[type, object] = {int: 7, str: "x", bool: True, tuple: [[1, 2]], dict: {}}
    for name, kind in registered_types().items():
        types = dict(kind.field_types)
        data = {f.name: samples.get(types[f.name]) for f in dataclasses.fields(kind.cls)}  # type: ignore[arg-type]

        def body(fields: dict[str, object], *, name: str = name, v: int = kind.version) -> bytes:
            envelope = {"cause": 4, "data": fields, "position": 9, "time": 1, "type": name, "v": v}
            return orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS)

        expected = Decoded(9, 1, to_event(name, kind.version, data), 4)
        assert decode(body(data)) == expected
        assert decode(seal(body(data), "0" * 64)) == expected
        assert type(decode(body(data)).event) is kind.cls
        for field in kind.tuple_fields:
            assert type(getattr(decode(body(data)).event, field)) is tuple
        # Not exactly the fields: an error, or the class's defaults, as the class says.
        for wrong in ({**data, "unexpected": 1}, {k: v for k, v in list(data.items())[1:]}):
            direct = _outcome(lambda: Decoded(9, 1, to_event(name, kind.version, dict(wrong)), 4))  # noqa: B023
            assert _outcome(lambda: decode(body(wrong))) == direct  # noqa: B023


def _outcome(make: Callable[[], events.Decoded]) -> events.Decoded | str:
    try:
        return make()
    except TypeError as refused:
        return str(refused)
