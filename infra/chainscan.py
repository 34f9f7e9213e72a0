"""Verifying a long log's hash chain in parallel: plan ranges, run workers, merge verdicts.

Each range is checked by :mod:`infra.chain_worker` in a process of its own (see there
why a range can be checked alone). The merge walks the verdicts in position order and
stops at the first range that is broken or ends the chain early, so the report is the
one a single walk from the start would give: the same first broken position, reason,
count and last good head. Ranges after a break are not waited for.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from events.chain import GENESIS, ChainReport

__all__ = ["WORKER", "WORKER_PAGE", "default_workers", "merge", "plan", "verify_in_workers"]

#: The worker script, run by path so that it does not import the ``events`` package.
WORKER = Path(__file__).resolve().parent / "chain_worker.py"
#: Rows a worker reads at a time: a page small enough to still be in the CPU cache when
#: it is hashed (and freed without returning memory to the system), which measured
#: ~5% less CPU than pages of 50,000.
WORKER_PAGE = 2_000


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan(head: int, parts: int) -> list[tuple[int, int]]:
    """Positions 1..`head` cut into at most `parts` consecutive (first, last) ranges."""
    if head <= 0:
        return []
    size = -(-head // max(parts, 1))
    return [(first, min(first + size - 1, head)) for first in range(1, head + 1, size)]


def merge(ranges: Sequence[tuple[int, int]], verdicts: Sequence[dict[str, Any]]) -> ChainReport:
    """One report from the verdicts of consecutive ranges (see the module docstring).

    `verdicts` may stop after the first range that is broken or short: what follows is
    never looked at.
    """
    events = 0
    head_position, head_hash = 0, GENESIS
    for (_, last), verdict in zip(ranges, verdicts, strict=False):
        events += verdict["events"]
        head_position, head_hash = verdict["head_position"], verdict["head_hash"]
        if verdict["broken_at"] is not None:
            return ChainReport(
                False, events, head_position, head_hash, verdict["broken_at"], verdict["reason"]
            )
        if head_position != last:  # nothing stored after it: the chain ends here
            break
    return ChainReport(True, events, head_position, head_hash)


def verify_in_workers(
    job: dict[str, Any],
    ranges: Sequence[tuple[int, int]],
    progress: Callable[[int], None] | None = None,
    python_flags: Sequence[str] = ("-S",),
) -> ChainReport:
    """Check each of `ranges` in a worker process and merge the verdicts.

    `job` says where the log is (see :func:`infra.chain_worker.run`); the parent only
    relays progress and collects verdicts. ``-S`` (no site packages) keeps an SQLite
    worker's start-up to the standard library; a PostgreSQL worker needs psycopg.
    """
    workers: list[subprocess.Popen[bytes]] = []
    verdicts: list[dict[str, Any] | None] = [None] * len(ranges)
    selector = selectors.DefaultSelector()
    try:
        for index, (first, last) in enumerate(ranges):
            worker = subprocess.Popen(
                [sys.executable, *python_flags, str(WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            workers.append(worker)
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write(json.dumps({**job, "first": first, "last": last}).encode())
            worker.stdin.close()
            selector.register(worker.stdout, selectors.EVENT_READ, index)
        buffers = [b""] * len(ranges)
        while selector.get_map() and not _settled(ranges, verdicts):
            for key, _ in selector.select():
                index = key.data
                chunk = os.read(key.fd, 65_536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    if verdicts[index] is None:
                        raise RuntimeError(_failure(workers[index], ranges[index]))
                    continue
                *lines, buffers[index] = (buffers[index] + chunk).split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    if "progress" in message:
                        if progress is not None:
                            progress(message["progress"])
                    else:
                        verdicts[index] = message
    finally:
        selector.close()
        for worker in workers:
            if worker.poll() is None:
                worker.kill()  # a range after a break: its verdict no longer matters
            worker.wait()
            for stream in (worker.stdout, worker.stderr):
                if stream is not None:
                    stream.close()
    settled = []
    for verdict in verdicts:
        if verdict is None:
            break
        settled.append(verdict)
    return merge(ranges, settled)


def _settled(ranges: Sequence[tuple[int, int]], verdicts: Sequence[dict[str, Any] | None]) -> bool:
    """True once the verdicts known so far decide the report: every range up to and
    including a broken (or short) one, or all of them."""
    for (_, last), verdict in zip(ranges, verdicts, strict=True):
        if verdict is None:
            return False
        if verdict["broken_at"] is not None or verdict["head_position"] != last:
            return True
    return True


def _failure(worker: subprocess.Popen[bytes], where: tuple[int, int]) -> str:
    worker.wait()
    error = worker.stderr.read().decode(errors="replace") if worker.stderr else ""
    return f"chain worker for positions {where[0]}..{where[1]} failed:\n{error}"
