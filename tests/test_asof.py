"""Point-in-time replay: the state at a journal position or a time equals what the
live engine held at that moment."""

from __future__ import annotations

import orjson
from click.testing import CliRunner
from rawsql import rewrite_and_rechain

from events.codec import decode
from infra.store import open_store
from scripts.workload import START, workload
from services.cli import main
from services.exchange.asof import AsOf, parse_point, report, state_as_of
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.intake import Intake
from services.exchange.runner import EngineRunner
from tests.test_engine_runner import history_with_snapshots

CONFIG = EngineConfig(calendar=ALWAYS)


def test_states_captured_live_equal_the_replayed_ones(store_url: str) -> None:
    commands = workload(700, enterprises=8)
    with open_store(store_url) as store:
        Intake(store).submit(commands)
        runner = EngineRunner(store, CONFIG, batch=37, snapshot_every=200)
        captured: list[tuple[int, int, str, dict]] = []  # type: ignore[type-arg]
        while runner.step():
            captured.append(
                (
                    runner.position,
                    store.journal.head()[0],
                    runner.engine.state_hash(),
                    report(runner.engine),
                )
            )
        assert len(captured) > 15
        for intake_position, journal_position, live_hash, live_report in captured[::4]:
            replayed = state_as_of(store, AsOf(-1, journal_position=journal_position), CONFIG)
            assert replayed.state_hash() == live_hash
            assert report(replayed) == live_report
            # The same moment named by time: every command stamped up to that one's time.
            at = commands[intake_position - 1][1]
            by_time = state_as_of(store, AsOf(-1, time=at), CONFIG)
            assert by_time.state_hash() == live_hash


def test_carbonx_replay_prints_balances_holdings_and_orders_as_of_a_time(
    store_url: str,
) -> None:
    with open_store(store_url) as store:
        Intake(store).submit(workload(300, enterprises=5))
        EngineRunner(store, CONFIG).drain()
    # workload: command i is at START + 100 µs × i; 16 setup commands come first.
    moment = parse_point("2025-11-25T02:00:00.0016+00:00")
    assert moment.time == START + 1_600
    result = CliRunner().invoke(
        main,
        [
            "replay",
            "--db",
            store_url,
            "--calendar",
            "always",
            "--as-of",
            "2025-11-25T10:00:00.0016+08:00",
        ],
    )
    assert result.exit_code == 0, result.output
    state = orjson.loads(result.output)
    # After the 16 setup commands (time START .. START + 1,500): every enterprise funded,
    # credits issued as one serial block each, nothing traded yet.
    assert state["open_orders"] == []
    first = state["accounts"]["E0000"]
    assert first["cash"] == {"available": 10_000_000_000, "held": 0}
    assert first["credits"]["HCC-2025"]["serials_available"] == [[1, 1_000_000]]
    bad = CliRunner().invoke(main, ["replay", "--db", store_url, "--as-of", "yesterday"])
    assert bad.exit_code == 2 and "--as-of" in bad.output


def test_replaying_under_other_rules_fails_instead_of_guessing(store_url: str) -> None:
    import pytest

    with open_store(store_url) as store:
        commands = workload(300, enterprises=5)
        Intake(store).submit(commands)
        runner = EngineRunner(store, CONFIG, snapshot_every=100)
        runner.drain()
        head = store.journal.head()[0]
        other = EngineConfig(calendar=ALWAYS, fee_bps=9)
        with pytest.raises(ValueError, match="rules"):
            state_as_of(store, AsOf(-1, journal_position=head), other)
        with pytest.raises(ValueError, match="no position"):
            state_as_of(store, AsOf(-1, journal_position=head + 1), CONFIG)
        # Commands the engine has not consumed yet are not part of any state.
        late = [(command, time + 10**9) for command, time in workload(50, enterprises=5)]
        Intake(store).submit(late[-50:])
        future = state_as_of(store, AsOf(-1, time=late[-1][1] + 1), CONFIG)
        assert future.state_hash() == runner.engine.state_hash()
    result = CliRunner().invoke(main, ["replay", "--db", store_url, "--as-of", str(head)])
    assert result.exit_code == 2  # the default calendar is cn-ets, the journal's is always
    assert "rules" in result.output or "calendar" in result.output


def test_a_corrupt_snapshot_only_costs_time_the_replay_starts_earlier(store_url: str) -> None:
    last = history_with_snapshots(store_url)
    with open_store(store_url) as store:
        end = AsOf(store.journal.tracking("engine"))
        honest = report(state_as_of(store, end, CONFIG))
        envelope = orjson.loads(store.snapshots.read(last - 1, 1)[0].body)
    envelope["data"]["state"]["accounts"]["E0000"]["cash"] += 1  # its hash left as it was
    rewrite_and_rechain(store_url, "snapshots", last, orjson.dumps(envelope))
    with open_store(store_url) as store:
        assert report(state_as_of(store, end, CONFIG)) == honest


def test_a_time_with_its_plus_lost_in_a_url_is_read_as_its_offset() -> None:
    # "?as_of=2025-11-25T10:00:00+08:00" unencoded: the query parser turns "+" into " ".
    same = {parse_point(text).time for text in (
        "2025-11-25T10:00:00+08:00", "2025-11-25T10:00:00 08:00", "2025-11-25T02:00:00Z",
    )}  # fmt: skip
    assert same == {START}


def test_the_as_of_state_shows_each_enterprises_penalty_debt(store_url: str) -> None:
    """The registry year: E2's 551,992 fen left unpaid at the 2025 deadline is owed from
    the enforcement until `CollectPenalty` takes it from E2's next deposit."""
    from events import registry as r
    from tests.test_registry_year import CONFIG as YEAR_CONFIG
    from tests.test_registry_year import run_year

    with open_store(store_url) as store:
        Intake(store).submit([(command, time) for _, time, command in run_year().log])
        EngineRunner(store, YEAR_CONFIG, batch=40, snapshot_every=30).drain()
        kinds = r.ShortfallRecorded | r.PenaltyCharged | r.PenaltyCollected
        journal = [(row.position, decode(row.payload).event) for page in store.journal.pages()
                   for row in page]  # fmt: skip
        where = {type(e).__name__: p for p, e in journal if isinstance(e, kinds)}
        assert len(where) == 3  # each happens once in the year

        def debts(position: int) -> dict[str, int]:
            engine = state_as_of(store, AsOf(-1, journal_position=position), YEAR_CONFIG)
            found: dict[str, int] = report(engine)["penalty_debts"]
            return found

        owed = {"E1": 0, "E2": 551_992, "S1": 0, "S2": 0}
        assert debts(where["ShortfallRecorded"] - 1) == owed | {"E2": 0}  # before the deadline
        assert debts(where["PenaltyCharged"]) == owed
        assert debts(where["PenaltyCollected"] - 1) == owed  # E2 deposited, not yet collected
        assert debts(where["PenaltyCollected"]) == owed | {"E2": 0}
        assert debts(store.journal.head()[0]) == owed | {"E2": 0}
