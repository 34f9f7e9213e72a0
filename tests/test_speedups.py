"""The C loops (events/_speedups.c) give exactly the Python loops' answers.

Verification trusts whichever :data:`events.chain.check_links` is, every log append
seals with whichever :data:`events.chain.seal_chain` is, and every entry's canonical
bytes come from whichever framer :func:`events.codec.frame` uses, so the C loops are
held to the Python references: over whole logs, every kind of tampering hypothesis can
make of them, arbitrary bodies to seal, every registered event type with any values
of its fields' types and with odd ones, and odd inputs (short payloads, buffers that
are not bytes, non-buffers); a binary built from another source is not used at all.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import chain
from events.accounts import CashDeposited
from events.base import Event, EventType, registered_types
from events.chain import GENESIS, check_links_python, link, seal
from events.codec import frame, frame_reference
from scripts.workload import workload
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine

Check = Callable[[bytes, Sequence[bytes]], "bytes | None"]

needs_c = pytest.mark.skipif(
    not chain.ACCELERATED, reason="events/_speedups.c is not built here: nothing to compare"
)


def _payloads(n: int, previous: str = GENESIS, first: int = 1) -> list[bytes]:
    out = []
    for position in range(first, first + n):
        body = frame(
            CashDeposited(enterprise_id=f"E{position % 7}", amount=position * 37), position
        ).body(position)
        previous = link(previous, body)
        out.append(seal(body, previous))
    return out


LOG = _payloads(40)


def test_make_test_builds_the_c_check() -> None:
    """`make test` installs with a C compiler and OpenSSL's headers and sets
    CARBONX_EXPECT_NATIVE: there, a build that fell back to Python fails instead of
    skipping every comparison below."""
    if os.environ.get("CARBONX_EXPECT_NATIVE") != "1":
        pytest.skip("CARBONX_EXPECT_NATIVE is not set (not a `make test` run)")
    assert chain.ACCELERATED
    assert chain.check_links is not check_links_python


@needs_c
def test_whole_logs_give_the_last_stored_hash() -> None:
    c_check = chain.check_links
    for cut in (0, 1, 2, 17, len(LOG)):
        expected = check_links_python(GENESIS.encode(), LOG[:cut])
        assert c_check(GENESIS.encode(), LOG[:cut]) == expected
    assert c_check(GENESIS.encode(), LOG) == LOG[-1][-66:-2]
    # A stretch that starts mid-log from its seed's stored hash, as a worker's range does.
    seed = LOG[9][-66:-2]
    assert c_check(seed, LOG[10:]) == check_links_python(seed, LOG[10:]) == LOG[-1][-66:-2]
    assert c_check(GENESIS.encode(), LOG[10:]) is None


@needs_c
@settings(max_examples=400, deadline=None)
@given(
    index=st.integers(0, len(LOG) - 1),
    offset=st.integers(0, 10_000),
    byte=st.integers(0, 255),
    cut=st.integers(0, 120),
    how=st.sampled_from(["flip", "truncate", "drop", "swap", "duplicate", "prefix"]),
)
def test_tampering_gets_the_same_answer(
    index: int, offset: int, byte: int, cut: int, how: str
) -> None:
    payloads = list(LOG)
    payload = payloads[index]
    if how == "flip":
        at = offset % len(payload)
        payloads[index] = payload[:at] + bytes([byte]) + payload[at + 1 :]
    elif how == "truncate":
        payloads[index] = payload[: max(len(payload) - cut, 0)]
    elif how == "drop":
        del payloads[index]
    elif how == "swap":
        other = offset % len(payloads)
        payloads[index], payloads[other] = payloads[other], payloads[index]
    elif how == "duplicate":
        payloads.insert(index, payload)
    else:
        payloads[index] = bytes([byte]) * (cut % 80)
    previous = GENESIS.encode()
    assert chain.check_links(previous, payloads) == check_links_python(previous, payloads)


@needs_c
def test_buffers_and_wrong_types() -> None:
    previous = GENESIS.encode()
    expected = check_links_python(previous, LOG)
    # psycopg and sqlite3 hand out bytes, but any buffer is a payload to both.
    assert chain.check_links(previous, [memoryview(p) for p in LOG]) == expected
    assert chain.check_links(bytearray(previous), tuple(bytearray(p) for p in LOG)) == expected
    for check in (chain.check_links, check_links_python):
        with pytest.raises(TypeError):
            check(previous, [*LOG[:3], "a str payload"])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            check(GENESIS, LOG)  # type: ignore[arg-type]
    # A short payload is a break wherever it is, after a good stretch too.
    assert chain.check_links(previous, [*LOG[:5], b"}"]) is None
    assert chain.check_links(previous, [*LOG[:5], LOG[5][:75]]) is None


@needs_c
def test_a_binary_built_from_another_source_is_not_used(tmp_path: Path) -> None:
    """A C file edited without a rebuild leaves the old binary behind: events/chain.py
    notices (the binary carries its source's sha256) and verifies in Python."""
    here = Path(chain.__file__).resolve().parent
    copy = tmp_path / "events"
    copy.mkdir()
    shutil.copy(here / "chain.py", copy / "chain.py")
    for binary in here.glob("_speedups.*.so"):
        shutil.copy(binary, copy / binary.name)
    source = (here / "_speedups.c").read_text()
    path = str(copy / "chain.py")
    probe = (
        "import importlib.util, sys, warnings\n"
        "warnings.simplefilter('always')\n"
        f"spec = importlib.util.spec_from_file_location('probe_chain', {path!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['probe_chain'] = m\n"
        "spec.loader.exec_module(m)\n"
        "print(m.ACCELERATED)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != chain.PURE_ENV}

    def accelerated(extra: dict[str, str] | None = None) -> tuple[str, str]:
        done = subprocess.run(
            [sys.executable, "-c", probe],
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip(), done.stderr

    (copy / "_speedups.c").write_text(source)
    assert accelerated() == ("True", "")
    assert accelerated({chain.PURE_ENV: "1"})[0] == "False"
    (copy / "_speedups.c").write_text(source.replace("if (length <= SUFFIX_LEN)", "if (0)"))
    result, warning = accelerated()
    assert result == "False"
    assert "built from another events/_speedups.c" in warning


def _pending(rng_bytes: list[bytes], names: list[str]) -> list[tuple[str, bytes, bytes]]:
    return [
        (name, b'{"data":' + head + b',"position":', b',"time":1,"x":"' + tail + b'"}')
        for name, head, tail in zip(names, rng_bytes[0::2], rng_bytes[1::2], strict=False)
    ]


@needs_c
@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.binary(max_size=300), max_size=40),
    position=st.integers(-5, 2**62),
    previous=st.sampled_from([GENESIS.encode(), LOG[3][-66:-2], b"", b"x" * 200]),
    bare=st.booleans(),
)
def test_sealing_gives_the_same_payloads(
    parts: list[bytes], position: int, previous: bytes, bare: bool
) -> None:
    """seal_chain (what every log append runs) writes exactly what link and seal would,
    for any bodies: empty tails and bodies that do not end in a brace too."""
    names = [f"Type{i % 3}" for i in range(len(parts))]
    pending = _pending(parts, names)
    if bare:
        pending = [(name, head, b"") for name, head, _ in pending]
    payloads, head = chain.seal_chain(pending, position, previous)
    assert (payloads, head) == chain.seal_chain_python(pending, position, previous)
    if pending and not bare:
        # …and what a verifier accepts, linked to `previous`
        assert check_links_python(previous, payloads) == head


@needs_c
def test_sealing_a_log_verifies_and_matches_link_and_seal() -> None:
    pending = [frame(CashDeposited(enterprise_id="E", amount=n), n) for n in range(1, 30)]
    payloads, head = chain.seal_chain(pending, 0, GENESIS.encode())
    previous = GENESIS
    for position, ((_, start, end), payload) in enumerate(zip(pending, payloads, strict=True), 1):
        assert start + b"%d" % position + end == pending[position - 1].body(position)
        body = pending[position - 1].body(position)
        previous = link(previous, body)
        assert payload == seal(body, previous)
    assert head == previous.encode()
    assert chain.seal_chain([], 5, b"abc") == ([], b"abc")
    with pytest.raises(TypeError):
        chain.seal_chain([("A", "head", b"}")], 0, b"")  # type: ignore[list-item]
    with pytest.raises(TypeError):
        chain.seal_chain([("A", b"{")], 0, b"")  # type: ignore[list-item]
    # Positions are the tables' signed 64-bit integers: one beyond them is refused.
    with pytest.raises(OverflowError):
        chain.seal_chain([("A", b"{", b"}")], 2**63 - 1, b"")


# ------------------------------------------------------------------ framing


class IntFlag(enum.IntEnum):
    A = 1


class Quantity(int):
    """An int subclass: orjson writes it, the reference's type check refuses it."""


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
#: Strings rich in what JSON escapes or could be tempted to: quotes, backslashes, every
#: control character, DEL, the JavaScript line separators, multi-byte UTF-8.
TEXT = st.text(
    st.characters()
    | st.sampled_from([*map(chr, range(0x20)), '"', "\\", "/", "\x7f", "\u2028", "é", "😀"]),
    max_size=12,
)
INT64 = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, -1, 2**63 - 1, -(2**63), 10**18])
#: Values no event should hold, and that the C framer must hand to the reference.
ODD = st.one_of(
    st.none(),  # no field is optional today; the reference still writes null
    st.floats(allow_nan=True),
    st.integers(2**63, 2**65) | st.integers(-(2**65), -(2**63) - 1),
    st.sampled_from([IntFlag.A, Quantity(3), "\ud800", "a\udfffb", b"bytes", object()]),
    st.lists(st.integers(), max_size=3).map(tuple),
    st.tuples(st.integers(), st.floats()),
    st.tuples(st.booleans()),
)


def _events() -> st.SearchStrategy[Event]:
    kinds = sorted(registered_types().values(), key=lambda kind: kind.name)

    def build(kind: EventType) -> st.SearchStrategy[Event]:
        hints = typing.get_type_hints(kind.cls)
        overrides = {
            name: st.dictionaries(st.text(max_size=6), JSONISH, max_size=4)
            if typing.get_origin(hint) is dict
            else JSONISH
            for name, hint in hints.items()
            if "Any" in repr(hint)
        }
        overrides.update({name: TEXT for name, hint in hints.items() if hint is str})
        overrides.update({name: INT64 for name, hint in hints.items() if hint is int})
        return st.builds(kind.cls, **overrides)

    return st.sampled_from(kinds).flatmap(build)


def _same(c_framer: Callable[[], Any], reference: Callable[[], Any]) -> None:
    try:
        expected = reference()
    except Exception as error:  # the reference refuses: so must the C framer, alike
        with pytest.raises(type(error)):
            c_framer()
        return
    assert c_framer() == expected


@needs_c
@settings(max_examples=1500, deadline=None)
@given(
    event=_events(),
    time=st.integers(-(2**63), 2**63 - 1),
    cause=st.none() | st.integers(-(2**63), 2**63 - 1),
)
def test_the_c_framer_writes_the_reference_bytes(
    event: Event, time: int, cause: int | None
) -> None:
    """Every registered event type with values of its fields' types (any unicode, the
    whole 64-bit range, nested integer tuples): byte for byte the Python framer's."""
    _same(lambda: frame(event, time, cause), lambda: frame_reference(event, time, cause))


@needs_c
@settings(max_examples=800, deadline=None)
@given(
    event=_events(),
    data=st.data(),
    time=st.integers(-(2**64), 2**64) | st.just(True),
    cause=st.none() | st.integers(-(2**64), 2**64) | st.just(False),
)
def test_odd_values_go_to_the_reference(
    event: Event, data: st.DataObject, time: int, cause: int | None
) -> None:
    """A float, an int beyond 64 bits, an int subclass, a lone surrogate, bytes, an
    object, a tuple with a float: whatever the reference does with it (refuse it, or
    write it its own way), the C framer does the same."""
    fields = [f.name for f in dataclasses.fields(event)]  # type: ignore[arg-type]
    if fields:
        setattr(event, data.draw(st.sampled_from(fields)), data.draw(ODD))
    _same(lambda: frame(event, time, cause), lambda: frame_reference(event, time, cause))


@needs_c
def test_the_engines_results_frame_alike() -> None:
    """The benchmark workload's results, framed by both (what the journal holds)."""
    engine = Engine(EngineConfig(calendar=ALWAYS))
    count = 0
    for position, (command, at) in enumerate(workload(3_000), start=1):
        for result in engine.apply(position, at, command):
            assert frame(result, engine.time, position) == frame_reference(
                result, engine.time, position
            )
            count += 1
    assert count > 3_000
