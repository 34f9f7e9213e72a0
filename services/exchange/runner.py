"""The engine process: intake log in, journal out, exactly once.

The runner reads a page of commands from the intake log, lets the engine decide each,
and appends all their result events together with the intake position of the last
command in ONE transaction (the tracking record). A crash anywhere therefore leaves
either the whole batch and its tracking position, or neither; on restart the runner
resumes after the tracking position. A stale runner (or a second one) that tries to
append a batch whose commands were already consumed is refused by the tracking table
and resynchronises instead of writing twice.

While it follows a backlog (:meth:`EngineRunner.run`) on PostgreSQL, the append of
one batch runs on a writer thread while the next batch is computed: at most one batch is
in flight, it names the tracking position it follows, and the next is submitted only
after it landed, so the guarantees above are unchanged; a failed append makes the
runner recover from the store before it goes on (the batch computed meanwhile is
dropped). On SQLite it steps one batch at a time: there the reads and appends are
the process's own CPU work, and threads only contend for the GIL.

Every `snapshot_every` commands it also stores the engine's state with its state hash
(in its own log, after the journal batch it reflects), so a restart loads the latest
snapshot and replays only the tail of the intake log, checking that the tail's results
equal what the journal already holds.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import orjson

from events.base import Event, from_mapping, lookup
from events.codec import Pending, decode, frame, refuse_floats, to_event
from events.exchange import EngineSnapshot
from infra import heap
from infra.recorders import Appended, Row, TrackingConflict
from infra.store import Store, Tracking
from infra.supervise import supervise
from services.exchange import native
from services.exchange.config import EngineConfig
from services.exchange.engine import Engine, canonical_state, state_digest

__all__ = ["BATCH", "ENGINE_READER", "EngineRunner", "ReplayMismatch"]

log = logging.getLogger("carbonx.engine")

#: The tracking name under which the engine records the intake position it consumed.
ENGINE_READER = "engine"
#: Commands per journal transaction, at most, by backend: a batch is what has arrived,
#: so under a light load batches stay small and this bounds only a backlog. On
#: PostgreSQL larger batches cost less per command (fewer reads, commits and COPYs):
#: end to end, engine apart, 5,000 gave 46-49k orders/s and 14 µs of server CPU an
#: order, 20,000 gave 51-57k and 11-12 µs. On SQLite it made no difference (~63k either
#: way), and a batch's transaction holds the file's one write lock that the gateway's
#: intake appends and the projector wait for: 5,000 keeps that wait short.
BATCH = {"postgresql": 20_000, "sqlite": 5_000}
#: Commands on a page from which (or a full page) the pipelined runner reads ahead and
#: journals on its writer thread: a backlog. A smaller page is journaled in the engine's
#: own thread. Under HTTP load (pages of an order batch or two), PostgreSQL: 4,370-4,500
#: orders/s at ~40 µs of engine-process CPU each, against 3,650-4,420 at ~48-57 with
#: every page on the threads; a backlog runs as before (end to end ~47-59k against
#: ~53-56k, within the noise).
_PIPELINE_FROM = 1_000


class ReplayMismatch(RuntimeError):
    """Re-running the engine over the intake log gave results the journal does not hold."""


class _Batch(NamedTuple):
    """A page of commands decided by the engine, waiting to be journaled."""

    follows: int  # the intake position journaled before it (compare-and-set)
    first: int
    last: int
    pending: list[Pending]


_Reader = Callable[[dict[str, Any]], Event | None]
#: Per command type name: (current version, fast reader or None).
_readers: dict[str, tuple[int, _Reader | None]] = {}


def _reader(name: str) -> tuple[int, _Reader | None]:
    kind = lookup(name)
    # Tuple fields come back from JSON as lists: to_event freezes them.
    reader = None if kind.tuple_fields else from_mapping(kind.cls)
    found = _readers[name] = (kind.version, reader)
    return found


def _command(row: Row) -> tuple[int, int, Event]:
    """(position, time, command) of an intake row.

    The stored payload is the canonical body with its hash as one more trailing member
    (:mod:`events.chain`), so it is still one JSON object: it is parsed as it is, without
    first cutting the seal off into a copy. The chain itself is verified elsewhere. A
    current-version command is built by :func:`events.base.from_mapping`; anything else
    (older versions, tuple fields, unexpected keys) by :func:`events.codec.to_event`.
    """
    envelope = orjson.loads(row.payload)
    name = envelope["type"]
    data = envelope["data"]
    version, reader = _readers.get(name) or _reader(name)
    event = reader(data) if reader is not None and envelope["v"] == version else None
    if event is None:
        event = to_event(name, envelope["v"], data)
    return envelope["position"], envelope["time"], event


@dataclass
class RunnerStats:
    commands: int = 0
    results: int = 0
    batches: int = 0


class EngineRunner:
    def __init__(
        self,
        store: Store,
        config: EngineConfig | None = None,
        *,
        batch: int | None = None,
        snapshot_every: int = 50_000,
        fork_snapshots: bool | None = None,
    ) -> None:
        """`fork_snapshots`: copy the state for a snapshot in a forked child (see
        :meth:`take_snapshot`); by default where the platform can fork."""
        self.store = store
        self.config = config or EngineConfig()
        self.batch = batch or BATCH.get(store.backend, BATCH["postgresql"])
        self.snapshot_every = snapshot_every
        self.fork_snapshots = hasattr(os, "fork") if fork_snapshots is None else fork_snapshots
        self._snapshotting: threading.Thread | None = None
        self.engine = Engine(self.config)
        self.position = 0  # last intake position applied to self.engine
        self.journal_position = 0  # journal head as of self.position
        self.stats = RunnerStats()
        self._since_snapshot = 0
        self._dirty = True  # the engine must be recovered before the next step

    # ------------------------------------------------------------------ recovery

    def recover(self) -> int:
        """Rebuild the engine from the latest usable snapshot and the intake tail.

        The tail's results are re-executed and compared with what the journal holds
        (byte for byte); a difference raises :class:`ReplayMismatch`, because an engine
        that disagrees with its own journal must not write another result.
        """
        self.wait_for_snapshot()  # a snapshot still being stored is the latest
        # A frozen (gc.freeze) engine left behind would never be collected.
        gc.unfreeze()
        tracked = self.store.journal.tracking(ENGINE_READER)
        self.engine = Engine(self.config)
        self.position = self.journal_position = 0
        snapshot = self._latest_snapshot()
        if snapshot is not None and snapshot.intake_position <= tracked:
            try:
                engine = Engine.from_state(snapshot.state, self.config)
            except ValueError as error:
                log.warning("snapshot not used (%s); replaying from the start", error)
            else:
                if engine.state_hash() == snapshot.state_hash:
                    self.engine = engine
                    self.position = snapshot.intake_position
                    self.journal_position = snapshot.journal_position
                else:
                    log.error(
                        "snapshot at intake %s does not hash to its recorded state hash; "
                        "replaying from the start",
                        snapshot.intake_position,
                    )
        if tracked > self.position:
            self._replay_tail(tracked)
        self._since_snapshot = 0
        self._dirty = False
        return self.position

    def _latest_snapshot(self) -> EngineSnapshot | None:
        head, _ = self.store.snapshots.head()
        if head == 0:
            return None
        rows = self.store.snapshots.read(head - 1, 1)
        event = decode(rows[0].body).event
        assert isinstance(event, EngineSnapshot)
        return event

    def _replay_tail(self, upto: int) -> None:
        """Re-apply intake (position, upto], checking each result against the journal."""
        journal = (
            row
            for page in self.store.journal.pages(self.journal_position, None, 10_000)
            for row in page
        )
        position = self.journal_position
        for rows in self.store.intake.pages(self.position, upto, self.batch):
            for row in rows:
                entry = decode(row.body)
                for result in self.engine.apply(entry.position, entry.time, entry.event):
                    position += 1
                    expected = frame(result, self.engine.time, entry.position).body(position)
                    stored = next(journal, None)
                    if stored is None or stored.body != expected:
                        raise ReplayMismatch(
                            f"replaying intake {entry.position} gives journal position "
                            f"{position} as {expected.decode()!r}, the journal holds "
                            f"{None if stored is None else stored.body.decode()!r}; "
                            "were the rules (calendar, fees, bands) changed?"
                        )
                self.position = entry.position
        self.journal_position = position

    # ------------------------------------------------------------------ running

    def step(self) -> int:
        """Process one page of new commands; how many were consumed (0: none waiting).

        If the append fails for any reason, the engine (already moved on in memory) is
        marked for recovery before another step, so nothing is ever applied twice.
        """
        if self._dirty:
            self.recover()
        batch = self._compute()
        if batch is None:
            return 0
        try:
            appended = self._journal(batch)
        except TrackingConflict:
            # Another incarnation journaled (some of) these commands first: rebuild from
            # what it wrote and carry on after it.
            log.warning("intake %s..%s already consumed; recovering", batch.first, batch.last)
            self.recover()
            return self.step()
        self._landed(batch, appended)
        if self._snapshot_due():
            self.take_snapshot()
        return batch.last - batch.follows

    def _compute(self, rows: list[Row] | None = None) -> _Batch | None:
        """Apply the next page of commands to the engine (`rows`, if already read from
        this position on); their framed results.

        The engine is then ahead of the store (marked dirty) until the batch lands.
        """
        if not rows:
            rows = self.store.intake.read(self.position, self.batch)
        if not rows:
            return None
        self._dirty = True  # from the first command on, even if one of them raises
        apply = self.engine.apply
        engine = self.engine
        pending: list[Pending] = []
        add = pending.append
        for row in rows:
            position, time, command = _command(row)
            results = apply(position, time, command)
            time = engine.time
            for result in results:
                add(frame(result, time, position))
        batch = _Batch(self.position, rows[0].position, rows[-1].position, pending)
        self.position = batch.last
        return batch

    def _journal(self, batch: _Batch) -> Appended | None:
        """Append a batch's results with its tracking position, in one transaction."""
        return self.store.journal.append(
            batch.pending, Tracking(ENGINE_READER, batch.last), follows=batch.follows
        )

    def _landed(self, batch: _Batch, appended: Appended | None) -> None:
        """Book a journaled batch; the engine stays dirty while it is ahead of it."""
        self._dirty = self.position != batch.last
        if appended is not None:
            self.journal_position = appended.last
        commands = batch.last - batch.follows
        self.stats.commands += commands
        self.stats.results += len(batch.pending)
        self.stats.batches += 1
        self._since_snapshot += commands

    def _snapshot_due(self) -> bool:
        return bool(self.snapshot_every) and self._since_snapshot >= self.snapshot_every

    def take_snapshot(self) -> None:
        """Store the engine's state as it is now (after the journaled commands only).

        Where the platform can fork, a child process copies and encodes the state from
        its copy-on-write image of this one, and a thread of this process stores it:
        the engine stops for the fork only, not for the copy, its encoding and its
        append (`bench_engine`: 6.6 ms against 214 ms with 13,422 orders resting, 8.7
        against 434 with 26,290), so no order in flight waits a snapshot out. The child
        does nothing else: no lock another thread may hold, no database connection, no
        hashing (OpenSSL); it writes the bytes to a pipe and exits. Otherwise the state
        is copied here.

        One snapshot at a time: a new one first waits for the last to be stored.
        """
        self.wait_for_snapshot()
        self._since_snapshot = 0
        where = (self.position, self.journal_position, self.engine.time)
        if self.fork_snapshots:
            try:
                pid, pipe = _fork_state(self.engine)
            except OSError:
                log.exception("could not fork for a snapshot; copying the state here")
            else:
                storing = threading.Thread(
                    target=self._store_forked,
                    args=(pid, pipe, *where),
                    name="carbonx-snapshot",
                    daemon=True,
                )
                try:
                    storing.start()
                except RuntimeError:  # no thread to be had: let the child go
                    os.close(pipe)  # its write fails, and it exits
                    os.waitpid(pid, 0)
                    log.exception("no thread to store a snapshot; copying the state here")
                else:
                    self._snapshotting = storing
                    return
        self._store_snapshot(_encoded_state(self.engine), *where)

    def wait_for_snapshot(self) -> None:
        """Wait until a snapshot being stored (see :meth:`take_snapshot`) is."""
        if self._snapshotting is not None:
            self._snapshotting.join()
            self._snapshotting = None

    def _store_forked(
        self, pid: int, pipe: int, intake_position: int, journal_position: int, time: int
    ) -> None:
        try:
            with os.fdopen(pipe, "rb") as reader:
                state = reader.read()
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            if code != 0 or not state:
                log.error(
                    "no snapshot at intake position %s: the process copying the state "
                    "exited with %s",
                    intake_position,
                    code,
                )
                return
            self._store_snapshot(state, intake_position, journal_position, time)
        except Exception:
            log.exception("no snapshot at intake position %s", intake_position)

    def _store_snapshot(
        self, state: bytes, intake_position: int, journal_position: int, time: int
    ) -> None:
        """Append a snapshot of `state`, the canonical bytes of an engine state."""
        snapshot = EngineSnapshot(
            intake_position=intake_position,
            journal_position=journal_position,
            state_hash=state_digest(state),
            # Its bytes as they are (see EngineSnapshot.state): not decoded to be encoded.
            state=cast("dict[str, Any]", orjson.Fragment(state)),
        )
        self.store.snapshots.append([frame(snapshot, time)])

    def run(
        self,
        stop: threading.Event,
        idle: float = 0.5,
        tune_gc: bool = False,
        pipelined: bool | None = None,
    ) -> None:
        """Follow the intake log until `stop` is set, surviving store outages.

        Any error (database unreachable, lock timeout) is logged and retried with
        backoff; the engine is recovered from the store before it goes on. With
        `tune_gc` (the process's main work is this engine), the collector is tuned for
        a large long-lived state: ~7% more commands/s, and no full collection over the
        whole book (~75 ms at 250k objects) stalling every order in flight.

        `pipelined`: read the next page and journal the last batch on threads while a
        batch is computed, when commands queue up (default: on a database server, where
        they wait on the network and the server without holding the GIL; a page smaller
        than a backlog's is journaled in this thread). On SQLite, the default
        steps one batch at a time instead: reads and appends are this process's own
        CPU work there, and the threads only contend for the GIL. Measured with the
        intake written by another process meanwhile (100k commands, engine as its own
        process): SQLite 59-62k orders/s at 15.1-15.5 µs of engine CPU each, against
        50-55k and 17.3-18.8 µs pipelined; PostgreSQL 44-46k pipelined against 34-35k
        one batch at a time.
        """
        if pipelined is None:
            pipelined = self.store.backend != "sqlite"
        try:
            if pipelined:
                self._run_pipelined(stop, idle, tune_gc)
            else:
                self._run_stepping(stop, idle, tune_gc)
        finally:
            self.wait_for_snapshot()

    def _recover_following(self, tune_gc: bool) -> None:
        """Recover before following the log (again), and say so."""
        self.recover()
        log.info(
            "engine recovered at intake position %s (engine: %s)",
            self.position,
            native.implementation(),
        )
        if tune_gc:
            heap.settle()

    def _run_stepping(self, stop: threading.Event, idle: float, tune_gc: bool) -> None:
        """:meth:`run` one batch at a time: read, compute, journal, then the next."""

        def follow_once() -> None:
            if self._dirty:
                self._recover_following(tune_gc)
            seen = self.store.generation("intake")
            if self.step() < self.batch:
                # A partial page (or none) was the whole log as of the read: read again
                # only once something was appended since (at once if it already was).
                self.store.wait_for_change(seen, idle, "intake")

        def after_failure() -> None:
            self._dirty = True  # follow_once recovers before it steps again

        supervise(stop, follow_once, after_failure, name="engine", log=log, fatal=(ReplayMismatch,))

    def _run_pipelined(self, stop: threading.Event, idle: float, tune_gc: bool) -> None:
        """:meth:`run` with the next page read and the last batch journaled on threads."""
        writer = ThreadPoolExecutor(1, thread_name_prefix="carbonx-journal")
        flight: list[tuple[_Batch, Future[Appended | None]]] = []  # at most one
        # The next intake page is read while this one is computed: a read waits on the
        # database (PostgreSQL: ~19% of the engine thread's time at full load), and it
        # does so without the GIL. The log is append-only, so a page read ahead is what
        # a read now would return, or a prefix of it; it is used only by an engine that
        # stands where the page starts.
        reader = ThreadPoolExecutor(1, thread_name_prefix="carbonx-intake")
        ahead: list[tuple[int, Future[list[Row]]]] = []  # at most one

        def prefetched() -> list[Row] | None:
            """The page read ahead from the engine's position, if that is where it is."""
            if not ahead:
                return None
            after, page = ahead.pop()
            if after != self.position:
                return None
            try:
                return page.result()
            except Exception:  # the read failed: read again, in the engine's thread
                return None

        def land() -> None:
            """Wait for the batch in flight to be journaled (its failure raises here)."""
            if flight:
                batch, done = flight.pop()
                self._landed(batch, done.result())

        def follow_once() -> None:
            if self._dirty and not flight:
                self._recover_following(tune_gc)
            seen = self.store.generation("intake")
            # A snapshot is the state after journaled commands only: when one is due,
            # nothing more is computed until the batch in flight has landed.
            due = self._snapshot_due()
            batch = None
            backlog = False
            if not due:
                rows = prefetched() or self.store.intake.read(self.position, self.batch)
                if rows:
                    # A page this large means commands are queuing: read on and journal
                    # while computing. A smaller one is what arrived since the last
                    # page (an HTTP request's orders): the threads would only add their
                    # wake-ups and GIL hand-offs to its latency.
                    backlog = len(rows) >= min(self.batch, _PIPELINE_FROM)
                    if backlog:
                        last = rows[-1].position
                        ahead.append(
                            (last, reader.submit(self.store.intake.read, last, self.batch))
                        )
                    batch = self._compute(rows)
            try:
                land()  # the previous batch, journaled while this one was computed
                if batch is not None and not backlog:
                    self._landed(batch, self._journal(batch))
            except TrackingConflict:
                log.warning("intake already consumed by another engine; recovering")
                self._dirty = True
                return
            if due:
                self.take_snapshot()
                return
            if batch is None or not backlog:
                # No page, or a page smaller than a backlog's: that was the whole log as
                # of the read, so read again only once something was appended since (at
                # once if it already was): the read straight after each HTTP request's
                # orders came back empty, a round trip and a wake-up of the server for
                # nothing.
                self.store.wait_for_change(seen, idle, "intake")
                return
            flight.append((batch, writer.submit(self._journal, batch)))

        def after_failure() -> None:
            # Let an append still in flight finish first, so that recovery reads the store
            # after it; whatever was computed after it is dropped and recomputed.
            with contextlib.suppress(Exception):
                land()
            self._dirty = True  # follow_once recovers before it steps again

        try:
            supervise(
                stop, follow_once, after_failure, name="engine", log=log, fatal=(ReplayMismatch,)
            )
        finally:
            try:
                land()
            except Exception:
                log.exception("the last batch was not journaled; a restart recomputes it")
                self._dirty = True
            writer.shutdown()
            reader.shutdown()

    def drain(self) -> int:
        """Process everything appended so far (tests, CLI tools), snapshots stored;
        commands consumed."""
        total = 0
        while (n := self.step()) > 0:
            total += n
        self.wait_for_snapshot()
        return total


def _encoded_state(engine: Engine) -> bytes:
    """The canonical bytes of the engine's state (floats refused, as framing would)."""
    state = engine.state()
    refuse_floats(state, "EngineSnapshot.state")
    return canonical_state(state)


def _fork_state(engine: Engine) -> tuple[int, int]:
    """Fork a child that writes :func:`_encoded_state` of `engine` (as it stands at the
    fork) to a pipe and exits; (its pid, the pipe's reading end)."""
    reader, writer = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(reader)
        os.close(writer)
        raise
    if pid == 0:  # the child: write the state, and exit without any clean-up
        code = 1
        try:
            # No collection either: a finalizer run here (a garbage connection's, say)
            # could act on what the child shares with its parent.
            gc.disable()
            os.close(reader)
            view = memoryview(_encoded_state(engine))
            while view:
                view = view[os.write(writer, view) :]
            code = 0
        finally:
            os._exit(code)
    os.close(writer)
    return pid, reader
