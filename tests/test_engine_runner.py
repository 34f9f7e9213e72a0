"""The engine on a real store (SQLite and PostgreSQL): exactly once, deterministic,
restartable from snapshots, verifiable by re-execution."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from rawsql import raw_sql, rewrite_and_rechain

from events import commands as c
from events.exchange import EngineSnapshot, TradeExecuted
from infra.store import Store, open_store
from scripts.workload import workload
from services.audit import verify_store
from services.cli import main
from services.exchange.calendar import ALWAYS
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine, hash_state
from services.exchange.intake import Intake, InvalidCommand
from services.exchange.reexecute import reexecute
from services.exchange.runner import ENGINE_READER, EngineRunner
from services.exchange.store_calendar import CalendarMismatch, calendar_for_engine, recorded

CONFIG = EngineConfig(calendar=ALWAYS)
N = 3_000  # trading commands per run (plus setup for 20 enterprises)


def _run(url: str, *, snapshot_every: int = 0, batch: int = 500) -> tuple[list[bytes], str]:
    with open_store(url) as store:
        Intake(store).submit(workload(N, enterprises=20))
        runner = EngineRunner(store, CONFIG, batch=batch, snapshot_every=snapshot_every)
        runner.recover()
        runner.drain()
        payloads = [row.payload for page in store.journal.pages() for row in page]
        return payloads, runner.engine.state_hash()


def test_the_journal_is_byte_identical_across_runs_and_backends(
    store_url: str, tmp_path: Path
) -> None:
    first, first_hash = _run(store_url)
    second, second_hash = _run(f"sqlite:///{tmp_path}/second.db", batch=137)
    assert first == second  # payloads include each entry's hash: the chains are equal
    assert first_hash == second_hash
    trades = [p for p in first if b'"type":"TradeExecuted"' in p]
    assert len(trades) > 500  # the workload really trades


def test_restart_from_snapshot_plus_tail_reproduces_the_uninterrupted_run(
    store_url: str, tmp_path: Path
) -> None:
    clean, clean_hash = _run(f"sqlite:///{tmp_path}/clean.db")
    with open_store(store_url) as store:
        Intake(store).submit(workload(N, enterprises=20))
        runner = EngineRunner(store, CONFIG, batch=250, snapshot_every=1_000)
        runner.recover()
        # Process about half, as a process that then dies would.
        while runner.position < 1_800:
            runner.step()
        runner.wait_for_snapshot()  # stored by a thread of its own (take_snapshot)
        snapshots = [row for page in store.snapshots.pages() for row in page]
        assert snapshots, "a snapshot was taken"
        # A new incarnation: latest snapshot + replay of the tail up to the tracking.
        reborn = EngineRunner(store, CONFIG, batch=250, snapshot_every=1_000)
        assert reborn.recover() == runner.position
        assert reborn.engine.state_hash() == runner.engine.state_hash()
        reborn.drain()
        journal = [row.payload for page in store.journal.pages() for row in page]
    assert journal == clean
    assert reborn.engine.state_hash() == clean_hash


def test_a_stale_engine_cannot_journal_a_batch_twice(store_url: str) -> None:
    with open_store(store_url) as store:
        Intake(store).submit(workload(400, enterprises=5))
        live = EngineRunner(store, CONFIG, batch=100)
        stale = EngineRunner(store, CONFIG, batch=100)
        live.recover()
        stale.recover()
        live.drain()
        # The stale one still believes nothing was consumed: its first append is refused
        # whole by the tracking record, it recovers, and then has nothing left to do.
        assert stale.step() == 0
        assert stale.position == live.position
        assert stale.drain() == 0
        assert stale.engine.state_hash() == live.engine.state_hash()
        assert store.journal.tracking(ENGINE_READER) == store.intake.head()[0]
        assert reexecute(store, CONFIG).ok


def test_snapshot_records_the_state_hash_it_restores_to(store_url: str) -> None:
    with open_store(store_url) as store:
        Intake(store).submit(workload(500, enterprises=5))
        runner = EngineRunner(store, CONFIG, batch=100, snapshot_every=200)
        runner.recover()
        runner.drain()
        from events import decode

        last = decode(store.snapshots.read(store.snapshots.head()[0] - 1, 1)[0].body).event
        assert isinstance(last, EngineSnapshot)
        assert Engine.from_state(last.state, CONFIG).state_hash() == last.state_hash


def _last_snapshot(store: Store) -> tuple[EngineSnapshot, bytes]:
    """The latest snapshot, and its stored canonical body (its seal taken off)."""
    from events import decode
    from events.chain import unseal

    row = store.snapshots.read(store.snapshots.head()[0] - 1, 1)[0]
    snapshot = decode(row.body).event
    assert isinstance(snapshot, EngineSnapshot)
    return snapshot, unseal(bytes(row.payload))[0]


def test_a_forked_snapshot_is_the_state_when_it_was_taken(store_url: str) -> None:
    """The state is copied by a forked child and stored by a thread while the engine
    goes on: what is stored is the state at the call, not the state the engine has
    reached by the time it is stored; the very bytes an in-process copy stores."""
    from events import frame

    with open_store(store_url) as store:
        Intake(store).submit(workload(800, enterprises=6))
        runner = EngineRunner(store, CONFIG, batch=100, snapshot_every=0)
        assert runner.fork_snapshots  # Linux: the default
        runner.recover()
        while runner.position < 400:
            runner.step()
        at, journal_at, time_at = runner.position, runner.journal_position, runner.engine.time
        state = runner.engine.state()
        runner.take_snapshot()
        runner.drain()  # the engine moves on at once; drain waits for the snapshot too
        assert runner.position > at and runner.engine.state_hash() != hash_state(state)
        snapshot, body = _last_snapshot(store)
        assert (snapshot.intake_position, snapshot.journal_position) == (at, journal_at)
        assert snapshot.state_hash == hash_state(state)
        assert Engine.from_state(snapshot.state, CONFIG).state_hash() == hash_state(state)
        # Byte for byte what framing the state itself gives (the pre-fork encoding).
        expected = EngineSnapshot(
            intake_position=at, journal_position=journal_at,
            state_hash=hash_state(state), state=state,
        )  # fmt: skip
        assert body == frame(expected, time_at).body(store.snapshots.position)

        # Copied in this process instead (no fork): the same snapshot, the same bytes.
        here = EngineRunner(store, CONFIG, batch=100, snapshot_every=0, fork_snapshots=False)
        here.recover()
        here.take_snapshot()
        again, again_body = _last_snapshot(store)
        assert again.state_hash == here.engine.state_hash() == runner.engine.state_hash()
        in_process = EngineSnapshot(
            intake_position=here.position, journal_position=here.journal_position,
            state_hash=again.state_hash, state=here.engine.state(),
        )  # fmt: skip
        assert again_body == frame(in_process, here.engine.time).body(store.snapshots.position)


def test_a_snapshot_whose_child_fails_is_skipped_and_the_engine_goes_on(
    store_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from services.exchange import runner as runner_module

    def broken(engine: Engine) -> bytes:
        raise MemoryError("no room to encode the state")

    with open_store(store_url) as store:
        Intake(store).submit(workload(300, enterprises=4))
        runner = EngineRunner(store, CONFIG, batch=100, snapshot_every=0)
        runner.recover()
        runner.step()
        monkeypatch.setattr(runner_module, "_encoded_state", broken)  # in the child too
        runner.take_snapshot()
        runner.wait_for_snapshot()
        assert store.snapshots.position == 0
        assert "no snapshot at intake position" in caplog.text
        assert runner.drain() > 0  # nothing else is affected
        assert store.journal.tracking(ENGINE_READER) == store.intake.position


def test_verify_passes_then_names_the_first_difference_under_other_rules(
    store_url: str,
) -> None:
    with open_store(store_url) as store:
        Intake(store).submit(workload(600, enterprises=10))
        runner = EngineRunner(store, CONFIG)
        runner.recover()
        runner.drain()
        first_trade = next(
            e.position for e in store.journal.events() if isinstance(e.event, TradeExecuted)
        )
    cli = CliRunner()
    ok = cli.invoke(main, ["verify", "--db", store_url, "--calendar", "always", "--quiet"])
    assert ok.exit_code == 0, ok.output
    assert "re-execution: ok" in ok.output

    with open_store(store_url) as store:
        other_fees = reexecute(store, EngineConfig(calendar=ALWAYS, fee_bps=7))
    assert not other_fees.ok
    assert other_fees.differs_at is not None
    # Fees first show in the first buy hold; it can be no later than the first trade.
    assert other_fees.differs_at <= first_trade
    assert other_fees.expected != other_fees.found


def history_with_snapshots(store_url: str) -> int:
    """A history with snapshots; the snapshot log's last position."""
    with open_store(store_url) as store:
        Intake(store).submit(workload(400, enterprises=6))
        runner = EngineRunner(store, CONFIG, batch=100, snapshot_every=150)
        runner.recover()
        runner.drain()
        last: int = store.snapshots.position
    assert last >= 2
    return last


def test_verify_refuses_a_forged_snapshot_even_when_its_chain_is_whole(store_url: str) -> None:
    last = history_with_snapshots(store_url)
    with open_store(store_url) as store:
        honest = store.snapshots.read(last - 1, 1)[0]
        envelope = orjson.loads(honest.body)
        state = envelope["data"]["state"]
        state["accounts"]["E0000"]["cash"] += 5_000_000_000
        envelope["data"]["state_hash"] = hash_state(state)  # consistent with itself
    rewrite_and_rechain(store_url, "snapshots", last, orjson.dumps(envelope))
    cli = CliRunner()
    answer = cli.invoke(main, ["verify", "--db", store_url, "--calendar", "always", "--quiet"])
    assert answer.exit_code == 1, answer.output
    assert "snapshots: ok" in answer.output  # the chain was rewritten whole ...
    assert f"re-execution: DIFFERS: snapshot {last} (after intake position" in answer.output
    with open_store(store_url) as store:  # ... and the API says the same
        found = verify_store(store, CONFIG)
    assert not found["ok"] and found["reexecution"]["snapshot_at"] == last


def test_verify_notices_commands_missing_from_the_intake_logs_end(store_url: str) -> None:
    history_with_snapshots(store_url)
    with open_store(store_url) as store:
        last = store.intake.position
        answering = [e.position for e in store.journal.events() if e.cause == last]
    raw_sql(
        store_url,
        f"DELETE FROM intake_events WHERE rowid = {last};"
        f"DELETE FROM journal_events WHERE rowid >= {answering[0]}",
        f"DELETE FROM intake_events WHERE notification_id = {last};"
        f"DELETE FROM journal_events WHERE notification_id >= {answering[0]}",
    )
    answer = CliRunner().invoke(
        main, ["verify", "--db", store_url, "--calendar", "always", "--quiet"]
    )
    assert answer.exit_code == 1, answer.output
    assert f"recorded consuming the intake log up to position {last}" in answer.output


def test_the_store_records_the_engines_calendar_and_verify_and_replay_default_to_it(
    store_url: str,
) -> None:
    # At 22:00 in Beijing the always-open demo calendar trades and cn-ets refuses
    # (market_closed): a journal made under one does not re-execute under the other.
    evening = [(command, at + 12 * 3_600_000_000) for command, at in workload(300, 5)]
    with open_store(store_url) as store:
        assert recorded(store) is None
        assert calendar_for_engine(store, "always") == "always"  # `serve --demo` does this
        Intake(store).submit(evening)
        runner = EngineRunner(store, CONFIG)
        runner.recover()
        runner.drain()
        assert recorded(store) == "always"
        assert calendar_for_engine(store, None) == "always"  # a plain `carbonx engine`
        with pytest.raises(CalendarMismatch, match="'always' calendar"):
            calendar_for_engine(store, "cn-ets")
    cli = CliRunner()
    ok = cli.invoke(main, ["verify", "--db", store_url, "--quiet"])
    assert ok.exit_code == 0, ok.output
    assert "re-execution: ok" in ok.output
    other = cli.invoke(main, ["verify", "--db", store_url, "--calendar", "cn-ets", "--quiet"])
    assert other.exit_code == 1, other.output
    assert "re-execution: DIFFERS" in other.output
    replayed = cli.invoke(main, ["replay", "--db", store_url, "--as-of", "200"])
    assert replayed.exit_code == 0, replayed.output
    refused = cli.invoke(main, ["engine", "--db", store_url, "--calendar", "cn-ets"])
    assert refused.exit_code == 2
    assert "produced under the 'always' calendar" in refused.output


def test_an_empty_store_takes_the_calendar_its_first_engine_asks_for(store_url: str) -> None:
    with open_store(store_url) as store:
        assert calendar_for_engine(store, None) == "cn-ets"
        assert calendar_for_engine(store, "always") == "always"  # no journal yet: no history
        assert recorded(store) == "always"


def test_invalid_commands_are_refused_before_the_log_and_change_nothing(
    store_url: str,
) -> None:
    with open_store(store_url) as store:
        intake = Intake(store, instruments={"HCC-2025"})
        good = c.DepositCash(enterprise_id="E1", amount=100)
        bad = c.PlaceOrder(
            client_order_id="x",
            enterprise_id="E1",
            instrument="NOPE",
            side="buy",
            order_type="limit",
            quantity=0,
            price=-5,
        )
        with pytest.raises(InvalidCommand) as refused:
            intake.submit([(good, 1), (bad, 2)])
        fields = {error.field for error in refused.value.errors}
        assert fields == {"instrument", "quantity", "price"}
        assert store.intake.head()[0] == 0


def test_the_ticker_brings_wall_clock_time_in_as_commands(store_url: str) -> None:
    import threading

    from events import decode
    from events.commands import Tick
    from services.ticker import Ticker, now_us

    with open_store(store_url) as store:
        stop = threading.Event()
        started = now_us()
        thread = threading.Thread(target=Ticker(store, 0.05).run, args=(stop,))
        thread.start()
        assert store.intake.wait(3, timeout=5)
        stop.set()
        thread.join()
        ticks = [decode(row.body) for row in store.intake.read(0, 100)]
    assert all(isinstance(t.event, Tick) for t in ticks)
    times = [t.time for t in ticks]
    assert times == sorted(times) and times[0] >= started


def test_a_stale_engine_with_other_page_boundaries_journals_nothing_twice(
    store_url: str,
) -> None:
    commands = workload(1_000, enterprises=5)
    with open_store(store_url) as store:
        Intake(store).submit(commands[:300])
        live = EngineRunner(store, CONFIG, batch=100)
        stale = EngineRunner(store, CONFIG, batch=500)
        live.recover()
        stale.recover()
        live.drain()  # tracking 300
        Intake(store).submit(commands[300:])
        # The stale runner's page is 1..500: it ends beyond the tracking position but
        # starts before it. The compare-and-set tracking refuses it; it recovers.
        assert stale.step() > 0
        stale.drain()
        live.drain()  # now it is the stale one: refused, recovers, nothing left
        assert store.journal.tracking(ENGINE_READER) == len(commands)
        result = reexecute(store, CONFIG)
        assert result.ok, result
        assert result.commands == len(commands)
        assert live.engine.state_hash() == stale.engine.state_hash() == result.state_hash


@pytest.mark.parametrize(
    "pipelined", [True, False, None], ids=["pipelined", "stepping", "by-backend"]
)
def test_following_the_log_while_it_grows_journals_what_a_clean_run_does(
    store_url: str, pipelined: bool | None
) -> None:
    """`run` follows the intake while another writer appends to it, either way (by
    default threads on PostgreSQL, one batch at a time on SQLite; both are exercised on
    both): every command decided once, in order, the journal equal to re-executing the
    log, snapshots included."""
    commands = workload(2_000, enterprises=10)
    with open_store(store_url) as store:
        # A backlog first (full pages: pipelined, the journal on its thread), then
        # commands arriving a few at a time (pages journaled in the engine's thread).
        Intake(store).submit(commands[:600])
        runner = EngineRunner(store, CONFIG, batch=150, snapshot_every=700)
        stop = threading.Event()
        thread = threading.Thread(
            target=runner.run, args=(stop,), kwargs={"idle": 0.02, "pipelined": pipelined}
        )
        thread.start()
        try:
            intake = Intake(store)
            for start in range(600, len(commands), 90):  # pages of other boundaries
                intake.submit(commands[start : start + 90])
            deadline = time.monotonic() + 60
            while store.journal.tracking(ENGINE_READER) < len(commands):
                assert time.monotonic() < deadline, "the engine did not catch up"
                time.sleep(0.01)
            # The way asked for (or the backend's) is the way it ran: only the
            # pipelined one journals on a thread of its own.
            threaded = any(t.name.startswith("carbonx-journal") for t in threading.enumerate())
            assert threaded == (pipelined if pipelined is not None else "sqlite" not in store_url)
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()
        result = reexecute(store, CONFIG)
        assert result.ok, result
        assert result.commands == len(commands)
        assert result.state_hash == runner.engine.state_hash()
        assert store.snapshots.head()[0] >= 2  # taken at 700-command steps on the way


def _hold_write_lock(url: str):  # type: ignore[no-untyped-def]
    """A second session that takes the journal's write lock and keeps it."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        return conn
    import psycopg

    conn = psycopg.connect(url)
    conn.execute("LOCK TABLE journal_events IN ACCESS EXCLUSIVE MODE")
    return conn


def test_an_append_that_fails_for_real_is_neither_lost_nor_applied_twice(
    store_url: str,
) -> None:
    separator = "&" if "?" in store_url else "?"
    url = f"{store_url}{separator}lock_timeout=1"
    commands = workload(600, enterprises=5)
    with open_store(url) as store:
        Intake(store).submit(commands)
        runner = EngineRunner(store, CONFIG, batch=200)
        runner.recover()
        runner.step()
        blocker = _hold_write_lock(store_url)
        try:
            with pytest.raises(Exception, match=r"(?i)lock"):
                runner.step()  # the engine moved on in memory, the journal did not
        finally:
            blocker.rollback()
            blocker.close()
        runner.drain()  # recovers from the store first, then carries on
        # The journal equals a clean run position by position, with nothing extra:
        # no command lost, none applied twice.
        result = reexecute(store, CONFIG)
        assert result.ok, result
        assert result.commands == len(commands)
        assert result.state_hash == runner.engine.state_hash()


def test_a_malformed_command_in_the_log_is_rejected_not_fatal(store_url: str) -> None:
    from events import frame
    from events.accounts import CommandRejected

    with open_store(store_url) as store:
        bad = c.SetPositionLimit(enterprise_id="E1", limit="1000")  # type: ignore[arg-type]
        assert Intake(store).instruments is None
        with pytest.raises(InvalidCommand) as refused:
            Intake(store).submit([(bad, 1)])
        assert refused.value.errors[0].field == "limit"
        # Written behind the intake's back, straight into the log:
        store.intake.append(
            [
                frame(c.OpenAccount(enterprise_id="E1"), 1),
                frame(bad, 2),
                frame(c.DepositCash(enterprise_id="E1", amount=5), 3),
            ]
        )
        runner = EngineRunner(store, CONFIG)
        assert runner.drain() == 3
        events = [e.event for e in store.journal.events()]
        assert isinstance(events[1], CommandRejected) and events[1].reason == "malformed"
        assert runner.engine.accounts["E1"].cash == 5


def test_verify_ignores_results_of_commands_after_its_reading(store_url: str) -> None:
    with open_store(store_url) as store:
        Intake(store).submit(workload(400, enterprises=5))
        runner = EngineRunner(store, CONFIG, batch=100)
        runner.drain()
        # As if the engine had committed more while verify was reading: compare only
        # the first 250 commands against a journal that holds all 400's results.
        partial = reexecute(store, CONFIG, upto=250)
        assert partial.ok, partial
        assert partial.commands == 250


def test_a_restart_under_other_rules_refuses_to_continue(store_url: str) -> None:
    from services.exchange.runner import ReplayMismatch

    with open_store(store_url) as store:
        Intake(store).submit(workload(600, enterprises=5))
        runner = EngineRunner(store, CONFIG, batch=100, snapshot_every=250)
        runner.drain()
        other = EngineRunner(store, EngineConfig(calendar=ALWAYS, fee_bps=9), batch=100)
        with pytest.raises(ReplayMismatch, match="rules"):
            other.recover()
        again = EngineRunner(store, CONFIG, batch=100)
        assert again.recover() == 616  # 16 setup commands + 600: snapshot plus the tail
        assert again.engine.state_hash() == runner.engine.state_hash()


def test_an_order_with_an_unknown_side_in_the_log_is_rejected_not_misread(
    store_url: str,
) -> None:
    from events import frame
    from events.exchange import OrderRejected

    with open_store(store_url) as store:
        setup = workload(0, enterprises=1)
        Intake(store).submit(setup)
        odd = c.PlaceOrder(
            client_order_id="x",
            enterprise_id="E0000",
            instrument="HCC-2025",
            side="hold",
            order_type="limit",
            quantity=10,
            price=6_000,
        )
        store.intake.append([frame(odd, setup[-1][1])])  # behind the intake's back
        EngineRunner(store, CONFIG).drain()
        last = list(store.journal.events())[-1].event
        assert isinstance(last, OrderRejected) and last.reason == "invalid_order"


def _follow(runner: EngineRunner, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=runner.run, args=(stop,), kwargs={"idle": 0.01})
    thread.start()
    return thread


def _caught_up(store: Store, position: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while store.journal.tracking(ENGINE_READER) < position:
        assert time.monotonic() < deadline, "the engine did not catch up"
        time.sleep(0.01)


def test_two_following_engines_racing_journal_nothing_twice(store_url: str) -> None:
    """run() journals one batch while it computes the next: two engines following the
    same log (each with a batch in flight most of the time) still journal every command
    exactly once, with snapshots on the way, and end in the state a clean run gives."""
    commands = workload(4_000, enterprises=10)
    with open_store(store_url) as store:
        intake = Intake(store)
        stop = threading.Event()
        runners = [
            EngineRunner(store, CONFIG, batch=batch, snapshot_every=700) for batch in (97, 250)
        ]
        threads = [_follow(runner, stop) for runner in runners]
        try:
            for start in range(0, len(commands), 400):
                intake.submit(commands[start : start + 400])
                time.sleep(0.02)
            _caught_up(store, len(commands))
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        result = reexecute(store, CONFIG)
        assert result.ok, result
        assert result.commands == len(commands)
        assert store.journal.position == result.results
        for runner in runners:
            runner.recover()
            assert runner.engine.state_hash() == result.state_hash


def test_a_following_engine_survives_appends_that_fail_for_real(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """While the journal's write lock is held elsewhere, the batch in flight fails (lock
    timeout) after the next one was computed; the engine recovers from the store and
    carries on, losing and repeating nothing."""
    separator = "&" if "?" in store_url else "?"
    url = f"{store_url}{separator}lock_timeout=1"
    commands = workload(20_000, enterprises=20)
    with open_store(url) as store:
        Intake(store).submit(commands)
        runner = EngineRunner(store, CONFIG, batch=100)
        runner.recover()
        while runner.position < 300:  # mid-run: some of the log is journaled already
            runner.step()
        stop = threading.Event()
        # The lock is taken before the engine follows on, so its first append in flight
        # (with work left behind it, whatever the machine's speed) must time out.
        blocker = _hold_write_lock(store_url)
        thread = _follow(runner, stop)
        try:
            try:
                time.sleep(2.5)  # at least one append times out meanwhile
            finally:
                blocker.rollback()
                blocker.close()
            _caught_up(store, len(commands))
        finally:
            stop.set()
            thread.join()
        assert "engine failed; retrying" in caplog.text
        result = reexecute(store, CONFIG)
        assert result.ok, result
        assert result.commands == len(commands)
        assert result.state_hash == runner.engine.state_hash()
