"""The C chain loops (events/_chainlinks.c) give exactly the Python loops' answers.

Verification trusts whichever :data:`events.chain.check_links` is, and every log append
seals with whichever :data:`events.chain.seal_chain` is, so the C loops are held to the
Python references: over whole logs, every kind of tampering hypothesis can make of
them, arbitrary bodies to seal, and odd inputs (short payloads, buffers that are not
bytes, non-buffers); a binary built from another source is not used at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import chain
from events.accounts import CashDeposited
from events.chain import GENESIS, check_links_python, link, seal
from events.codec import frame

Check = Callable[[bytes, Sequence[bytes]], "bytes | None"]

needs_c = pytest.mark.skipif(
    not chain.ACCELERATED, reason="events/_chainlinks.c is not built here: nothing to compare"
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
    for binary in here.glob("_chainlinks.*.so"):
        shutil.copy(binary, copy / binary.name)
    source = (here / "_chainlinks.c").read_text()
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

    (copy / "_chainlinks.c").write_text(source)
    assert accelerated() == ("True", "")
    assert accelerated({chain.PURE_ENV: "1"})[0] == "False"
    (copy / "_chainlinks.c").write_text(source.replace("if (length <= SUFFIX_LEN)", "if (0)"))
    result, warning = accelerated()
    assert result == "False"
    assert "built from another events/_chainlinks.c" in warning


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
