"""The compiled engine (mypyc) and the pure-Python engine are interchangeable.

Two implementations of one set of rules, as in exchange-core: the same commands must give
the same result events, byte for byte in the codec's canonical form, and the same state
hash, or the journal would depend on how carbonx was installed. The pure engine here is
a fresh copy loaded from the ``.py`` sources (:func:`services.exchange.native.
load_sources`); the compiled one is what this process imported. Streams: the benchmark
workload (with day closes), every scenario of test_engine_scenarios, and the property
tests' random streams. Also checked: ``CARBONX_PURE=1`` really runs the sources, and a
binary older than its source is refused at import instead of running old rules.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import engine_dsl
import pytest
import test_engine_properties as props
import test_engine_scenarios as scenarios
from engine_dsl import Scenario, run
from hypothesis import given

from events import commands as c
from events.base import Event
from events.codec import encode_data
from scripts.workload import START, workload
from services.exchange import native
from services.exchange.calendar import ALWAYS, CN_ETS
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
PURE = native.load_sources()
PureEngine: type[Engine] = PURE["engine"].Engine

compiled_only = pytest.mark.skipif(
    not native.is_compiled(),
    reason=f"the engine is not compiled here ({native.implementation()}): nothing to compare",
)

Command = tuple[int, int, Event]


def trace(engine: Any, commands: list[Command]) -> tuple[list[bytes], str]:
    """Every result event as type name + canonical bytes, and the final state hash."""
    out = [
        event.type_name.encode() + b" " + encode_data(event)
        for position, time, command in commands
        for event in engine.apply(position, time, command)
    ]
    return out, engine.state_hash()


def assert_same(config: EngineConfig, commands: list[Command]) -> None:
    compiled, compiled_hash = trace(Engine(config), commands)
    pure, pure_hash = trace(PureEngine(config), commands)
    for index, (a, b) in enumerate(zip(compiled, pure, strict=False)):
        assert a == b, f"result {index} differs"
    assert len(compiled) == len(pure)
    assert compiled_hash == pure_hash


def workload_commands(n: int) -> list[Command]:
    """The benchmark workload, then the passing of days: closes, expiries, band cancels."""
    commands = [(p, t, cmd) for p, (cmd, t) in enumerate(workload(n), start=1)]
    day = 86_400_000_000
    for later in (day, 3 * day + 1):
        commands.append((len(commands) + 1, START + later, c.Tick()))
    return commands


def test_the_pure_copy_is_the_source() -> None:
    assert PURE["engine"].__file__.endswith("engine.py")
    assert PureEngine is not Engine or not native.is_compiled()
    assert PURE["book"].Order is PureEngine.__init__.__globals__["Order"]


@compiled_only
@pytest.mark.parametrize(
    "config",
    [
        EngineConfig(calendar=ALWAYS),
        EngineConfig(calendar=ALWAYS, fee_bps=3, self_trade="cancel_resting"),
        EngineConfig(calendar=CN_ETS, resale_next_day=False),
    ],
    ids=["default", "fee-override-cancel-resting", "cn-ets"],
)
def test_workload_gives_identical_journals(config: EngineConfig) -> None:
    assert_same(config, workload_commands(20_000))


class Recording:
    """An engine that remembers what it was asked (for replay on the other one)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.engine = Engine(config)
        self.commands: list[Command] = []

    def apply(self, position: int, time: int, command: Event) -> list[Event]:
        self.commands.append((position, time, command))
        return self.engine.apply(position, time, command)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


ALL_SCENARIOS = [
    *scenarios.POLICIES,
    *scenarios.ORDER_TYPES,
    *scenarios.PRIORITY,
    *scenarios.DAYS,
    *scenarios.RISK,
    *scenarios.BLOCKS,
]


@compiled_only
@pytest.mark.parametrize("s", ALL_SCENARIOS, ids=str)
def test_scenarios_give_identical_journals(s: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_dsl, "Engine", Recording)
    engine = run(s.given, s.when).engine
    assert isinstance(engine, Recording)
    assert_same(engine.config, engine.commands)


@compiled_only
@props.SETTINGS
@given(config=props.configs, stream=props.streams)
def test_random_streams_give_identical_journals(config: EngineConfig, stream: list[Any]) -> None:
    commands, _, _ = props.run_stream(config, stream, check=False)
    assert_same(config, commands)


def _run_workload(env: dict[str, str]) -> list[str]:
    """In a fresh interpreter: the implementation, engine's file, and a digest of a run."""
    script = (
        "import hashlib, sys\n"
        "from services.exchange import native\n"
        "from services.exchange import engine\n"
        "from test_engine_native import trace, workload_commands\n"
        "from services.exchange.config import EngineConfig\n"
        "from services.exchange.calendar import ALWAYS\n"
        "events, state = trace(engine.Engine(EngineConfig(calendar=ALWAYS)), "
        "workload_commands(3_000))\n"
        "print(native.implementation())\n"
        "print(engine.__file__)\n"
        "print(hashlib.sha256(b'\\n'.join(events)).hexdigest(), state)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.splitlines()


def _digest(engine: Any) -> str:
    events, state = trace(engine, workload_commands(3_000))
    return hashlib.sha256(b"\n".join(events)).hexdigest() + " " + state


def test_carbonx_pure_runs_the_sources() -> None:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    implementation, path, digest = _run_workload({**env, native.PURE_ENV: "1"})
    assert implementation == "pure Python"
    assert path.endswith("engine.py")
    assert digest == _digest(PureEngine(EngineConfig(calendar=ALWAYS)))


@compiled_only
def test_a_fresh_process_runs_the_compiled_engine_with_the_same_results() -> None:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    implementation, path, digest = _run_workload(env)
    assert implementation == "compiled (mypyc)"
    assert not path.endswith(".py")
    assert digest == _digest(PureEngine(EngineConfig(calendar=ALWAYS)))


def test_stale_reports_changed_sources(tmp_path: Path) -> None:
    for name in native.COMPILED:
        (tmp_path / f"{name}.py").write_text(f"# {name}\n")
    built = native.digests(tmp_path)
    assert native.stale(built, tmp_path) == []
    (tmp_path / "book.py").write_text("# book, edited\n")
    assert native.stale(built, tmp_path) == ["book"]
    assert native.stale({}, tmp_path) == list(native.COMPILED)


@compiled_only
def test_a_binary_older_than_its_source_is_not_run(tmp_path: Path) -> None:
    """Edit engine.py without rebuilding: the old binary must not run the old rules."""
    shutil.copytree(ROOT / "services", tmp_path / "services")
    with (tmp_path / "services" / "exchange" / "engine.py").open("a") as source:
        source.write("\n# edited after the build\n")
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    script = (
        "from services.exchange import native, engine\n"
        "print(native.implementation()); print(engine.__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    implementation, path = done.stdout.splitlines()
    assert implementation == "pure Python"
    assert path == str(tmp_path / "services" / "exchange" / "engine.py")
    assert "StaleNativeWarning" in done.stderr
    assert "engine.py changed since it was compiled" in done.stderr


def test_the_suite_runs_the_compiled_engine_where_the_build_promised_one() -> None:
    """`make test` builds the engine with mypyc and sets CARBONX_EXPECT_NATIVE: a build
    that fell back to pure Python there (no compiler, a failed C build) must fail the
    suite, not skip every comparison above in silence."""
    if os.environ.get("CARBONX_EXPECT_NATIVE") != "1":
        pytest.skip("no compiled engine was promised (run through `make test` to check)")
    assert native.is_compiled(), native.implementation()


# ---------------------------------------------------------------------------- own checks


def _wrong(value: object) -> list[object]:
    """Values of another type than `value`'s, as a command written behind the intake's
    back could carry (exact types: a bool is not an int)."""
    if type(value) is bool:
        return [1, "true"]
    if type(value) is int:
        return ["1", True, None]
    return [1, None, b"x"]


@pytest.mark.parametrize("engine_class", [Engine, PureEngine], ids=["imported", "pure"])
@pytest.mark.parametrize(
    "good",
    [
        c.PlaceOrder(client_order_id="c1", enterprise_id="E1", instrument="HCC-2025",
                     side="buy", order_type="limit", quantity=10, price=6_000,
                     time_in_force="gtd", post_only=True, expire_at=START + 10**9),
        c.CancelOrder(order_id=7, enterprise_id="E1"),
    ],
    ids=["PlaceOrder", "CancelOrder"],
)  # fmt: skip
def test_the_hot_commands_own_type_checks_refuse_every_field_as_the_generic_one_does(
    engine_class: type[Engine], good: Event
) -> None:
    """PlaceOrder and CancelOrder check their own fields in the engine (not through the
    generated checker): every field, whichever it is (a field added later included),
    with a value of another type is refused as ``malformed``, naming the field as
    ``events.base.type_errors`` does, and changes nothing."""
    import dataclasses

    from events.accounts import CommandRejected
    from events.base import type_errors

    engine = engine_class(EngineConfig(calendar=ALWAYS))
    engine.apply(1, START, c.OpenAccount(enterprise_id="E1"))
    before = engine.state_hash()
    for field in dataclasses.fields(good):  # type: ignore[arg-type]
        for value in _wrong(getattr(good, field.name)):
            bad = dataclasses.replace(good, **{field.name: value})  # type: ignore[type-var]
            (out,) = engine.apply(2, START, bad)
            expected = "; ".join(f"{name} {problem}" for name, problem in type_errors(bad))
            assert isinstance(out, CommandRejected), (field.name, value, out)
            assert (out.reason, out.detail) == ("malformed", expected), (field.name, value)
            assert out.detail.startswith(f"{field.name} must be"), out.detail
            assert engine.state_hash() == before


def test_the_positional_event_makers_take_each_field_in_order_with_its_type() -> None:
    """The engine builds its hottest events positionally (events.base.positional), each
    maker typed with the fields' types in field order: the types must be the fields'
    own, in that order (two fields swapped would pass mypy only if they share a type,
    and then the scenarios' expected events catch it), and a maker must build exactly
    the event that keywords build."""
    import dataclasses
    import typing

    from events.base import positional
    from events.exchange import OrderAccepted, OrderCancelled, TradeExecuted

    module = PURE["engine"]
    for name, cls in (
        ("_order_accepted", OrderAccepted),
        ("_trade_executed", TradeExecuted),
        ("_order_cancelled", OrderCancelled),
    ):
        # Final[Callable[[...], cls]], as the module's source spells it
        annotation = eval(module.__annotations__[name], vars(module))
        (maker_type,) = typing.get_args(annotation)
        parameters, made = typing.get_args(maker_type)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        types = typing.get_type_hints(cls)
        assert made is cls
        assert parameters == [types[f.name] for f in fields], name
        values = [object() for _ in fields]  # distinct: a swap would show
        by_keywords = cls(**{f.name: v for f, v in zip(fields, values, strict=True)})
        assert positional(cls)(*values) == by_keywords
        assert [getattr(by_keywords, f.name) for f in fields] == values
