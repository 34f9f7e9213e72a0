"""Rebuilding read models in several processes at once.

A rebuild is CPU-bound Python (decode, apply, build rows), and projections are
independent: each has its own tables and its own tracking position, committed with its
rows. So a rebuild can hand groups of projections to worker processes, each of which
reads the journal itself and catches its group up exactly as a one-process projector
would (same batches, same transactions), and use every core. A worker killed midway
leaves each of its projections at its last committed position, which any projector
resumes from.

Workers die with the process that started them (Linux: ``PR_SET_PDEATHSIG``): an
orphan still writing while a restarted projector catches up the same projections would
be a second writer. (The projector also refuses a batch whose projection another
projector moved meanwhile; this only keeps that from happening in the first place.)
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import orjson

from infra.children import die_with
from projections.base import Projection

__all__ = ["can_share", "importable", "rebuild_in_workers", "split"]

log = logging.getLogger("carbonx.projector")


def can_share(url: str) -> bool:
    """Whether other processes can open the store at `url` (not an in-memory SQLite)."""
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] != "sqlite":
        return True
    return parts.path not in ("", "/", "/:memory:")


def importable(projection: Projection) -> bool:
    """Whether a worker process can make one of these by importing its class."""
    cls = type(projection)
    return cls.__module__ != "__main__" and "<locals>" not in cls.__qualname__


def split(projections: Sequence[Projection], workers: int) -> list[list[Projection]]:
    """Spread projections over at most `workers` groups of about equal rebuild cost
    (largest first, each to the cheapest group so far)."""
    groups: list[list[Projection]] = [[] for _ in range(max(1, min(workers, len(projections))))]
    costs = [0] * len(groups)
    for projection in sorted(projections, key=lambda p: (-p.cost, p.name)):
        cheapest = costs.index(min(costs))
        groups[cheapest].append(projection)
        costs[cheapest] += projection.cost
    return [group for group in groups if group]


def rebuild_in_workers(
    url: str,
    groups: Sequence[Sequence[Projection]],
    batch: int,
    finished: Callable[[int], None] | None = None,
) -> list[int]:
    """Catch each group up in a process of its own (fresh instances of its projections'
    classes, tables already created); the entries each worker read.

    `finished(i)` is called as soon as the worker of ``groups[i]`` is done, while the
    others may still run: the caller can load that group's tables meanwhile.

    Plain subprocesses running this module (not multiprocessing, whose spawn re-runs the
    caller's main script), their errors on this process's stderr.
    """
    # The arguments go through stdin: a database URL may carry a password.
    jobs = [
        orjson.dumps(
            {
                "url": url,
                "batch": batch,
                "parent": os.getpid(),
                "classes": [f"{type(p).__module__}:{type(p).__qualname__}" for p in group],
            }
        )
        for group in groups
    ]
    command = [sys.executable, "-m", "projections.parallel"]
    workers = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in jobs
    ]
    for worker, job in zip(workers, jobs, strict=True):
        assert worker.stdin is not None
        worker.stdin.write(job)
        worker.stdin.close()
    reads = [0] * len(workers)
    try:
        with selectors.DefaultSelector() as waiting:
            for index, worker in enumerate(workers):
                assert worker.stdout is not None
                waiting.register(worker.stdout, selectors.EVENT_READ, index)
            while waiting.get_map():
                for key, _ in waiting.select():
                    index = key.data
                    worker = workers[index]
                    out = worker.stdout.read() if worker.stdout else b""  # one line, at the end
                    waiting.unregister(key.fileobj)
                    worker.wait()
                    if worker.returncode != 0:
                        raise RuntimeError(
                            f"a rebuild worker failed (exit status {worker.returncode})"
                        )
                    read, cpu, wall = out.decode().split()
                    log.debug("rebuild worker: %s entries, %s s CPU, %s s", read, cpu, wall)
                    reads[index] = int(read)
                    if finished is not None:
                        finished(index)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return reads


def _catch_up(url: str, batch: int, classes: list[type[Projection]]) -> int:
    from infra.store import open_store
    from projections.projector import Projector, ensure_tables

    with open_store(url) as store:
        projector = Projector(store, [cls() for cls in classes], batch=batch, indexes=False)
        read = projector.catch_up()
        # Its tables' secondary indexes too, while the other workers still load theirs.
        ensure_tables(store.sql, [t for p in projector.projections for t in p.tables])
        return read


def _class(path: str) -> type[Projection]:
    module, _, name = path.partition(":")
    found: type[Projection] = getattr(importlib.import_module(module), name)
    return found


def main() -> None:
    job = orjson.loads(sys.stdin.buffer.read())
    die_with(job["parent"])
    # A worker lives for one rebuild and makes millions of short-lived objects without
    # cycles: the collector's passes over a growing heap cost ~10% of its time.
    gc.disable()
    started = time.perf_counter()
    read = _catch_up(job["url"], job["batch"], [_class(c) for c in job["classes"]])
    # entries read, CPU and wall seconds it took
    print(read, f"{time.process_time():.3f}", f"{time.perf_counter() - started:.3f}")


if __name__ == "__main__":
    main()
