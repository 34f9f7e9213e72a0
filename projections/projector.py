"""The projector: feeds journal entries to the read models, exactly once.

Each projection has its own tracking row in ``rm_tracking``; a batch's rows and the new
positions commit in one transaction. Projections may stand at different positions (one
was just rebuilt, another was added later): every entry goes only to those that have
not seen it yet, so they converge on the journal's head together.

Batches end on command boundaries (all results of one command, or none), so readers
never see half a command: an order on the book that its own fills already took off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from events.codec import decode
from infra.recorders import Row
from infra.sqldb import Cursor, SqlDatabase, array_literal
from infra.store import PROJECTIONS, PROJECTIONS_CHANNEL, Store
from projections.base import Entry, Projection, Table
from projections.parallel import can_share, importable, rebuild_in_workers, split

__all__ = [
    "MOVED_SQLSTATE",
    "REBUILD_BATCH",
    "TRACKING",
    "ProjectionMoved",
    "Projector",
    "ensure_tables",
    "tracking_positions",
    "wait_for_projections",
]

log = logging.getLogger("carbonx.projector")

Handler = Callable[[Entry], None]

TRACKING = Table(
    "rm_tracking",
    (("projection", "TEXT NOT NULL"), ("position", "BIGINT NOT NULL")),
    key=("projection",),
)
#: Entries per transaction of a rebuild, at least (see :class:`Projector`). 20k -> 60k
#: took 6% less CPU; the journal page it reads is ~30 MB at 50k.
REBUILD_BATCH = 50_000


#: The SQLSTATE of :data:`CHECK_POSITIONS`'s refusal (a class of its own: no standard
#: error means "another projector moved this projection").
MOVED_SQLSTATE = "CX409"
#: PostgreSQL: what :meth:`Projector._check_positions` checks, as a statement that can
#: travel in a batch's pipeline (a SELECT whose rows the projector must read before it
#: goes on cannot): lock the projections' tracking rows, and raise unless each stands
#: where the projector last saw it commit. A projector committing meanwhile is waited
#: for, then seen (each statement of a function sees what committed before it ran).
CHECK_POSITIONS = f"""
CREATE OR REPLACE FUNCTION rm_check_positions(p_names text[], p_seen bigint[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    moved record;
BEGIN
    PERFORM 1 FROM rm_tracking WHERE projection = ANY(p_names) FOR UPDATE;
    SELECT w.name, coalesce(t.position, 0) AS stands, w.seen INTO moved
    FROM unnest(p_names, p_seen) AS w(name, seen)
    LEFT JOIN rm_tracking t ON t.projection = w.name
    WHERE coalesce(t.position, 0) <> w.seen
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '% stands at %, not %: another projector moved it',
            moved.name, moved.stands, moved.seen
            USING ERRCODE = '{MOVED_SQLSTATE}';
    END IF;
END $$
"""


def ensure_tables(db: SqlDatabase, tables: Iterable[Table], indexes: bool = True) -> None:
    """Create the tables that are missing (concurrent callers take turns)."""
    with db.transaction() as cursor:
        if db.dialect == "postgres":
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('carbonx.read_models'))")
        for table in (TRACKING, *tables):
            for statement in table.create(indexes, db.dialect):
                cursor.execute(statement)
        if db.dialect == "postgres":
            cursor.execute(CHECK_POSITIONS)


def stored_columns(db: SqlDatabase, table: str) -> tuple[str, ...]:
    """The columns of `table` as the database has them, in order (empty: no table)."""
    if db.dialect == "postgres":
        sql = (
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position"
        )
    else:
        sql = "SELECT name FROM pragma_table_info(%s) ORDER BY cid"
    return tuple(name for (name,) in db.query(sql, (table,)))


def reshaped(db: SqlDatabase, projections: Iterable[Projection]) -> list[Projection]:
    """The projections with a table whose stored columns are not the ones its definition
    names now (a new version added or renamed a column): their rows cannot be written
    until they are rebuilt."""
    found = []
    for projection in projections:
        for table in projection.tables:
            columns = stored_columns(db, table.name)
            if columns and columns != table.column_names:
                found.append(projection)
                break
    return found


def tracking_positions(db: SqlDatabase) -> dict[str, int]:
    return {name: position for name, position in db.query("SELECT * FROM rm_tracking")}


class ProjectionMoved(RuntimeError):
    """Another projector committed a batch of this projection since this one loaded it:
    this batch is refused (its rows would be a second copy) and the state reloaded."""


class Projector:
    def __init__(
        self,
        store: Store,
        projections: Sequence[Projection],
        batch: int = 5_000,
        indexes: bool = True,
        rebuild_batch: int | None = None,
    ) -> None:
        """`batch`: journal entries per transaction when following the journal.
        `indexes`: create missing secondary indexes now (a rebuild adds them after).
        `rebuild_batch`: entries per transaction of :meth:`rebuild` (default: `batch`,
        at least :data:`REBUILD_BATCH`): nobody waits for a rebuild's batches to show,
        and larger ones write fewer rows (an order, a pair's volume or a holder's range
        that changes again later is written once per batch) and commit less often.
        """
        self.store = store
        self.db = store.sql
        self.projections = list(projections)
        self.batch = batch
        self.rebuild_batch = rebuild_batch or max(batch, REBUILD_BATCH)
        self.positions: dict[str, int] = {}
        self.more = False
        outdated = reshaped(self.db, self.projections)
        if outdated:
            # A new version changed these read models' tables: rebuild them from position
            # 0 (the catch-up does it), rather than fail on every batch until someone
            # runs `carbonx projector --rebuild`.
            log.warning(
                "read models %s have tables of another shape: rebuilding them from the journal",
                ", ".join(p.name for p in outdated),
            )
            self._drop(outdated)
        ensure_tables(self.db, [t for p in self.projections for t in p.tables], indexes)
        self.load()

    # ------------------------------------------------------------------ state

    def load(self, projections: Iterable[Projection] | None = None) -> None:
        """Pick up where each projection's (default: every one's) committed rows and
        position stand."""
        stored = tracking_positions(self.db)
        for projection in self.projections if projections is None else projections:
            projection.reset()
            projection.load(self.db)
            self.positions[projection.name] = stored.get(projection.name, 0)

    @property
    def position(self) -> int:
        """The position every projection has reached."""
        return min(self.positions.values(), default=0)

    # ------------------------------------------------------------------ work

    def step(self) -> int:
        """Project the next batch of journal entries; how many entries were read."""
        after = self.position
        rows = self.store.journal.read(after, self.batch)
        # Whether the read stopped at the page size (more may follow), not at the head.
        self.more = len(rows) == self.batch
        if not rows:
            return 0
        rows = _whole_commands(rows, full=self.more)
        last = rows[-1].position
        touched = [p for p in self.projections if self.positions[p.name] < last]
        postgres = self.db.dialect == "postgres"
        try:
            cause = self._apply(rows, touched)
            # Rows are built before the transaction opens: on SQLite it holds the one
            # write lock that the engine and the other rebuild workers wait for.
            writes = self.db.plan()
            if postgres and touched:
                # First in the transaction, so that a loser is refused before it writes.
                writes.execute(
                    "SELECT rm_check_positions(%s::text[], %s::bigint[])",
                    (
                        array_literal([p.name for p in touched], quoted=True),
                        array_literal([self.positions[p.name] for p in touched], quoted=False),
                    ),
                )
            for projection in touched:
                projection.flush(writes)
            # The positions and the wake-up go in the plan too: on PostgreSQL the plan is
            # sent as one pipeline, and each statement outside it is a round trip.
            self._record(writes, [projection.name for projection in touched], last)
            if postgres:
                # Its payload: the last command whose results this batch completes.
                # Every earlier one's are in too (the journal holds commands' results
                # in intake order), so a gateway with none of its commands that far
                # along need not look (infra.notify.Notifier.hint).
                writes.execute(
                    "SELECT pg_notify(%s, %s)",
                    (PROJECTIONS_CHANNEL, "" if cause is None else str(cause)),
                )
                # The plan checks the positions itself (rm_check_positions, first).
                # The whole transaction in one round trip where it can be (a live
                # batch's were ~8, each a wake-up of this process and of its server
                # backend); a rebuild-sized one goes statement by statement, by COPY.
                pipelined = writes.pipelinable()
                with (
                    _moved_as_refusal(),
                    self.db.pipelined() if pipelined else self.db.transaction() as cursor,
                ):
                    writes.replay(cursor)
            else:
                with self.db.transaction() as cursor:
                    self._check_positions(cursor, touched)
                    writes.replay(cursor)
        except BaseException:
            # The in-memory state ran ahead of what committed: start again from the
            # tables, so that the next attempt re-applies exactly the lost batch.
            self.load()
            raise
        for projection in touched:
            self.positions[projection.name] = last
        self.store.poke(PROJECTIONS)
        return len(rows)

    def _apply(self, rows: list[Row], projections: list[Projection]) -> int | None:
        """Feed each entry to the projections that handle its type and have not seen it;
        the cause (intake position) of the last entry that has one, if any was decoded.

        Routing goes by the stored type name, so each entry is decoded once, for all of
        them, and not at all when none of them cares.
        """
        cause = None
        routes: dict[str, list[tuple[int, Handler]]] = {}
        positions = self.positions
        for row in rows:
            route = routes.get(row.type_name)
            if route is None:
                route = routes[row.type_name] = [
                    (positions[p.name], handler)
                    for p in projections
                    if (handler := p.handler(row.type_name)) is not None
                ]
            if route:
                entry = decode(row.payload)  # its seal ignored: the table is trusted
                position = entry.position
                if entry.cause is not None:
                    cause = entry.cause
                for seen, handle in route:
                    if position > seen:
                        handle(entry)
        return cause

    def _check_positions(self, cursor: Cursor, projections: list[Projection]) -> None:
        """Inside the batch's transaction (and locking the rows on PostgreSQL): each
        projection must still stand where this projector last saw it committed."""
        names = [p.name for p in projections]
        if not names:
            return
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
        cursor.execute(
            f"SELECT projection, position FROM rm_tracking "
            f"WHERE projection IN ({', '.join(['%s'] * len(names))}){lock}",
            names,
        )
        stored = dict(cursor.fetchall())
        for name in names:
            if stored.get(name, 0) != self.positions[name]:
                raise ProjectionMoved(
                    f"{name} stands at {stored.get(name, 0)}, not {self.positions[name]}: "
                    "another projector moved it"
                )

    @staticmethod
    def _record(cursor: Cursor, names: list[str], position: int) -> None:
        """Every projection of the batch now stands at `position`: one statement (a
        round trip per projection was a third of a small batch's time on PostgreSQL)."""
        cursor.upsert_rows(
            "rm_tracking", ("projection", "position"), ("projection",),
            [(name, position) for name in names],
        )  # fmt: skip

    def catch_up(self, upto: int | None = None) -> int:
        """Project until the journal's head (or `upto`); entries read."""
        total = 0
        while upto is None or self.position < upto:
            read = self.step()
            if not read:
                break
            total += read
        return total

    def rebuild(self, names: Iterable[str] | None = None, workers: int | None = None) -> int:
        """Drop the tables of the named projections (all by default) and rebuild them
        from position 0; the others keep their rows. Entries read.

        With more than one worker (default: one per CPU), groups of projections are
        rebuilt in worker processes at once (:mod:`projections.parallel`); this
        projector then loads what they committed.
        """
        wanted = set(names) if names is not None else {p.name for p in self.projections}
        chosen = [p for p in self.projections if p.name in wanted]
        started = time.perf_counter()
        self._drop(chosen)
        tables = [t for p in chosen for t in p.tables]
        ensure_tables(self.db, tables, indexes=False)
        dropped = time.perf_counter()
        if workers is None:
            workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        shareable = can_share(self.store.url) and all(importable(p) for p in chosen)
        groups = split(chosen, workers) if shareable else [chosen]
        if len(groups) > 1:
            # Each group's tables are loaded as soon as its worker is done, while the
            # others still work (loading is a few % of a rebuild, on a free core).
            def finished(index: int) -> None:
                self.load(groups[index])

            read = max(rebuild_in_workers(self.store.url, groups, self.rebuild_batch, finished))
            built = time.perf_counter()
            self.load([p for p in self.projections if p.name not in wanted])
        else:
            read = 0
            built = time.perf_counter()
            self.load()
        loaded = time.perf_counter()
        batch, self.batch = self.batch, self.rebuild_batch
        try:
            read += self.catch_up()
        finally:
            self.batch = batch
        with self.db.transaction() as cursor:
            for table in tables:
                for statement in table.create_indexes():
                    cursor.execute(statement)
        log.debug(
            "rebuild: %.2f s dropping, %.2f s in %d worker(s), %.2f s loading, %.2f s here",
            dropped - started, built - dropped, len(groups) if len(groups) > 1 else 0,
            loaded - built, time.perf_counter() - loaded,
        )  # fmt: skip
        return read

    def _drop(self, projections: list[Projection]) -> None:
        """Drop these projections' tables and positions: they start again from 0."""
        ensure_tables(self.db, [], indexes=False)  # rm_tracking, on a store new to it
        with self.db.fast_drop(), self.db.transaction() as cursor:
            for projection in projections:
                for table in projection.tables:
                    cursor.execute(f"DROP TABLE IF EXISTS {table.name}")
                cursor.execute("DELETE FROM rm_tracking WHERE projection = %s", (projection.name,))

    def run(self, stop: threading.Event, idle: float = 1.0) -> None:
        """Follow the journal until `stop` is set; survives store outages."""
        while not stop.is_set():
            seen = self.store.generation("journal")
            try:
                if self.step() and self.more:
                    continue
            except Exception:
                log.exception("projection batch failed; retrying")
                stop.wait(0.5)
                continue
            # A page short of the batch size was the whole journal as of the read: read
            # again once something was appended since (at once if it already was), not
            # straight away to find nothing.
            self.store.wait_for_change(seen, idle, "journal")


@contextlib.contextmanager
def _moved_as_refusal() -> Iterator[None]:
    """rm_check_positions' refusal (SQLSTATE :data:`MOVED_SQLSTATE`) as ProjectionMoved."""
    try:
        yield
    except Exception as error:
        if getattr(error, "sqlstate", None) == MOVED_SQLSTATE:
            raise ProjectionMoved(str(error).splitlines()[0]) from error
        raise


def _whole_commands(rows: list[Row], full: bool) -> list[Row]:
    """Drop a trailing partial command from a full page (unless that is all there is):
    the rest of its results may be on the next page."""
    if not full:
        return rows

    def cause(row: Row) -> int | None:
        return decode(row.payload).cause

    last_cause = cause(rows[-1])
    if last_cause is None:
        return rows
    cut = len(rows)
    while cut > 0 and cause(rows[cut - 1]) == last_cause:
        cut -= 1
    return rows[:cut] if cut else rows


def wait_for_projections(store: Store, position: int, timeout: float) -> bool:
    """Block until every projection reached journal `position` (read-your-writes)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = store.generation(PROJECTIONS)
        positions = tracking_positions(store.sql)
        if positions and min(positions.values()) >= position:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        store.wait_for_change(seen, min(remaining, 0.05), PROJECTIONS)
