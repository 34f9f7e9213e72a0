"""From an HTTP request to the engine's answer: group commit in, outcome watching out.

:class:`IntakeBatcher` is the gateway's one writer to the intake log. Requests hand it
a command and wait on a future; it appends whatever has queued up in ONE transaction
(group commit), so a thousand concurrent orders cost a handful of transactions, not a
thousand. Each command is validated on its own first: a bad one fails alone.

:class:`OutcomeWatcher` resolves "what became of the command at intake position P":
one background thread wakes on every store change (in-process projector pokes,
PostgreSQL NOTIFY from other processes, or a short poll) and answers every pending
request with a single query. A result counts only once every projection has reached
it, so the caller's next read sees its own write (read-your-writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from concurrent.futures import Future, InvalidStateError
from typing import Any

from events.base import Event
from events.codec import frame
from events.commands import PlaceOrder
from infra.recorders import Claim, Claimed
from infra.sqldb import SqlDatabase, pair_arrays
from infra.store import PROJECTIONS, Store
from projections.orders import answered

__all__ = ["IntakeBatcher", "OutcomeWatcher", "ReusedClientOrderId", "used_client_ids"]

log = logging.getLogger("carbonx.gateway")


#: What the writer thread queues: commands appended together, their time, the future
#: of their first position.
_Item = tuple[list[Event], int, Future[int]]


class IntakeBatcher:
    def __init__(self, store: Store, max_batch: int = 2_000) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        """Start the writer thread (again, after :meth:`close`: an app's lifespan may
        run more than once, e.g. under test clients)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="carbonx-intake", daemon=True)
            self._thread.start()

    def submit_group(self, commands: list[Event], time: int) -> Future[int]:
        """Append validated `commands` together: contiguous positions, one
        transaction, all or none (a reused client order id refuses the whole group).
        The future gives the first position."""
        future: Future[int] = Future()
        self._queue.put((commands, time, future))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            size = len(item[0])
            while size < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
                size += len(more[0])
            self._append(self._refuse_reused_client_ids(batch))

    def _append(self, batch: list[_Item]) -> None:
        """Append `batch` in one transaction that claims its client order ids; a group
        whose id turns out to be taken (by another writer since the read models were
        asked) is refused, and the rest appended again."""
        while batch:
            claims = [key for cmds, _, _ in batch for key in _client_ids(cmds)]
            try:
                appended = self.store.intake.append(
                    (frame(cmd, time) for cmds, time, _ in batch for cmd in cmds),
                    claims=claims,
                )
            except Claimed as claimed:
                taken = set(claimed.pairs)
                kept = []
                for item in batch:
                    reused = next((key for key in _client_ids(item[0]) if key in taken), None)
                    if reused is None:
                        kept.append(item)
                    else:
                        _settle(item[2], exception=ReusedClientOrderId(*reused))
                if len(kept) == len(batch):  # named none of ours: fail, not loop
                    for _, _, future in batch:
                        _settle(future, exception=claimed)
                    return
                batch = kept
                continue
            except Exception as error:  # the store is down: every waiter learns it
                log.exception("intake append failed")
                for _, _, future in batch:
                    _settle(future, exception=error)
                return
            assert appended is not None
            position = appended.first
            for cmds, _, future in batch:
                _settle(future, result=position)
                position += len(cmds)
            return

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)

    def _refuse_reused_client_ids(self, batch: list[_Item]) -> list[_Item]:
        """Refuse the groups that reuse a client order id the read models hold, or one
        of an earlier group of the batch, or their own: one query for the whole batch,
        before the intake's lock is taken. The append's claims decide the rest (ids
        appended but not yet projected, and other writers')."""
        wanted = [key for cmds, _, _ in batch for key in _client_ids(cmds)]
        if not wanted:
            return batch
        try:
            used = used_client_ids(self.store.sql, wanted)
        except Exception:  # the read side is down: the claims still hold
            log.exception("client order id check failed")
            used = set()
        kept = []
        for item in batch:
            keys = _client_ids(item[0])
            seen: set[tuple[str, str]] = set()
            reused = None
            for key in keys:
                if key in used or key in seen:
                    reused = key
                    break
                seen.add(key)
            if reused is not None:
                _settle(item[2], exception=ReusedClientOrderId(*reused))
                continue
            used.update(keys)
            kept.append(item)
        return kept


def _client_ids(commands: list[Event]) -> list[Claim]:
    """The (enterprise, client order id) pairs of the orders among `commands`."""
    return [
        (cmd.enterprise_id, cmd.client_order_id) for cmd in commands if isinstance(cmd, PlaceOrder)
    ]


def used_client_ids(db: SqlDatabase, wanted: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (enterprise, client order id) pairs the read models already hold.

    PostgreSQL gets the pairs as two arrays (a hundred ``(a AND b) OR …`` terms cost it
    ~5-17 ms per batch to plan and recheck), each pair looked up in the index on its
    own: the LATERAL subquery cannot be flattened into a join, so the planner cannot
    hash the pairs against the whole table instead (its choice by default costs, ~2.2
    ms per batch at 10,000 orders and growing with every order, against ~0.15 ms by
    the index). It is planned afresh each time (~0.1 ms): a plan cached while rm_orders
    was nearly empty took the (enterprise_id, status) index, equally cheap then, and
    went on filtering all of an enterprise's orders for each pair (14 ms per batch at
    15,000 orders). SQLite answers the OR chain from its index in ~0.2 ms.
    """
    used: set[tuple[str, str]] = set()
    for start in range(0, len(wanted), 400):
        chunk = wanted[start : start + 400]
        if db.dialect == "postgres":
            rows = db.query(
                "SELECT w.eid, w.coid FROM unnest(%s::text[], %s::text[]) AS w(eid, coid) "
                "CROSS JOIN LATERAL (SELECT 1 FROM rm_orders o WHERE o.enterprise_id = w.eid "
                "AND o.client_order_id = w.coid OFFSET 0) AS found",
                pair_arrays(chunk),
                replan=True,
            )
        else:
            where = " OR ".join(["(enterprise_id = %s AND client_order_id = %s)"] * len(chunk))
            rows = db.query(
                f"SELECT enterprise_id, client_order_id FROM rm_orders WHERE {where}",
                [value for pair in chunk for value in pair],
            )
        used.update((eid, coid) for eid, coid in rows)
    return used


class ReusedClientOrderId(ValueError):
    def __init__(self, enterprise_id: str, client_order_id: str) -> None:
        super().__init__(f"client_order_id {client_order_id!r} was already used by {enterprise_id}")
        self.enterprise_id = enterprise_id
        self.client_order_id = client_order_id


class _Waiter:
    """One request waiting for the outcomes of one or more intake positions: resolved
    once, with all of them, however many positions it covers (a batch of 500 orders
    costs one future and one wake-up of its event loop, not 500)."""

    __slots__ = ("found", "future", "loop", "missing")

    def __init__(self, loop: asyncio.AbstractEventLoop, causes: set[int]) -> None:
        self.loop = loop
        self.future: asyncio.Future[dict[int, dict[str, Any]]] = loop.create_future()
        self.missing = causes
        self.found: dict[int, dict[str, Any]] = {}


class OutcomeWatcher:
    def __init__(self, store: Store, poll: float = 0.05) -> None:
        self.store = store
        self.poll = poll
        self._pending: dict[int, list[_Waiter]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="carbonx-outcomes", daemon=True)
            self._thread.start()

    async def wait(self, cause: int, timeout: float) -> dict[str, Any] | None:
        """The outcome row of intake position `cause` once projections reached it, or
        None after `timeout` seconds."""
        return (await self.wait_many([cause], timeout)).get(cause)

    async def wait_many(self, causes: list[int], timeout: float) -> dict[int, dict[str, Any]]:
        """The outcome rows of intake positions `causes` once projections reached all
        of them; after `timeout` seconds, those that had arrived by then."""
        waiter = _Waiter(asyncio.get_running_loop(), set(causes))
        if not waiter.missing:
            return {}
        with self._lock:
            for cause in waiter.missing:
                self._pending.setdefault(cause, []).append(waiter)
        self._wake.set()
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            with self._lock:
                return dict(waiter.found)
        finally:
            with self._lock:
                for cause in waiter.missing:
                    waiters = self._pending.get(cause, [])
                    waiters[:] = [w for w in waiters if w is not waiter]
                    if not waiters:
                        self._pending.pop(cause, None)

    def _run(self) -> None:
        seen = self.store.generation(PROJECTIONS)
        timed_out = False
        while not self._stop.is_set():
            with self._lock:
                causes = sorted(self._pending)
            if not causes:
                self._wake.wait(self.poll)
                self._wake.clear()
                seen = self.store.generation(PROJECTIONS)
                timed_out = False
                continue
            # Look only if the read models may hold something new for it. A projector's
            # batch tells how far it got (its hint): one that ends before this worker's
            # first waiting command has nothing for it, nor has the state a request just
            # appended finds (about half the wake-ups with two workers, and a lookup at
            # every request's start). Without a hint, or once a poll period passed
            # without a wake-up, look.
            hint = self.store.hint(PROJECTIONS)
            if timed_out or hint is None or hint >= causes[0]:
                try:
                    found = self._lookup(causes)
                except Exception:
                    log.exception("outcome lookup failed")
                    self._stop.wait(self.poll)
                    continue
                if found:
                    self._hand_out(found)
            # Outcomes appear only when the read models move on: appends to the logs
            # (this and other workers' intake, the engine's journal) do not wake it.
            before, seen = seen, self.store.wait_for_change(seen, self.poll, PROJECTIONS)
            timed_out = seen == before

    def _hand_out(self, found: dict[int, dict[str, Any]]) -> None:
        """Give each waiter its rows; wake the loop of every waiter now complete."""
        complete = []
        with self._lock:
            for cause, row in found.items():
                for waiter in self._pending.pop(cause, ()):
                    waiter.found[cause] = row
                    waiter.missing.discard(cause)
                    if not waiter.missing:
                        complete.append(waiter)
        for waiter in complete:
            # A request whose loop has gone (client gone) is skipped.
            with contextlib.suppress(RuntimeError):
                waiter.loop.call_soon_threadsafe(_resolve, waiter.future, waiter.found)

    def _lookup(self, causes: list[int]) -> dict[int, dict[str, Any]]:
        # Every answered order comes with its outcome, so that the requests waiting for
        # them need no query of their own.
        return answered(self.store.sql, causes)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _resolve(future: asyncio.Future[Any], found: dict[int, dict[str, Any]]) -> None:
    if not future.done():
        future.set_result(found)


def _settle(
    future: Future[int], result: int | None = None, exception: BaseException | None = None
) -> None:
    """Complete a request's future, unless its caller gave up on it (a cancelled
    request must not take the one writer thread down with it)."""
    if future.cancelled():
        return
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)  # type: ignore[arg-type]
    except InvalidStateError:
        pass
