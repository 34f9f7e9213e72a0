"""The regulator's checks, shared by the CLI and the HTTP API.

`verify_store` walks every log's hash chain and then re-executes the engine over the
intake log, comparing each result with the journal byte for byte; `search_events` is
the audit log search (by type, by enterprise, paged by position).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from infra.store import Store
from services.exchange.config import EngineConfig
from services.exchange.reexecute import reexecute

__all__ = ["PARTY_FIELDS", "search_events", "verify_store"]

Progress = Callable[[str, int], Callable[[int], None] | None]

#: The fields that name an enterprise an event concerns.
PARTY_FIELDS = (
    "enterprise_id",
    "buyer_id",
    "seller_id",
    "from_enterprise_id",
    "to_enterprise_id",
)


def verify_store(
    store: Store,
    config: EngineConfig,
    progress: Progress | None = None,
    reexecute_engine: bool = True,
) -> dict[str, Any]:
    """`{ok, events, head_hash, logs: {name: {...}}, reexecution: {...}, problem?}`.

    Without `reexecute_engine` only the chains are walked (seconds, not minutes, on a
    long history); `reexecution` is then None."""
    logs: dict[str, Any] = {}
    problem = None
    for name, log in store.logs.items():
        total = log.position  # not head(): that unseals the last entry, which may be broken
        chain = log.verify(progress=progress(name, total) if progress else None)
        logs[name] = {
            "ok": chain.ok,
            "events": chain.events,
            "head_position": chain.head_position,
            "head_hash": chain.head_hash,
        }
        if not chain.ok:
            logs[name].update(broken_at=chain.broken_at, reason=chain.reason)
            problem = (
                problem or f"{name} chain broken at position {chain.broken_at}: {chain.reason}"
            )
    reexecution: dict[str, Any] | None = None
    if reexecute_engine:
        consumed = store.journal.tracking("engine")
        result = reexecute(store, config, progress("re-execute", consumed) if progress else None)
        reexecution = {
            "ok": result.ok,
            "commands": result.commands,
            "results": result.results,
            "state_hash": result.state_hash,
        }
        if not result.ok and result.problem is not None:
            reexecution.update(problem=result.problem, snapshot_at=result.snapshot_at)
            problem = problem or f"re-execution: {result.problem}"
        elif not result.ok:
            reexecution.update(
                differs_at=result.differs_at, expected=result.expected, found=result.found
            )
            problem = problem or f"re-execution differs at journal position {result.differs_at}"
    journal = logs["journal"]
    answer: dict[str, Any] = {
        "ok": problem is None,
        "events": journal["events"],
        "head_hash": journal["head_hash"],
        "logs": logs,
        "reexecution": reexecution,
    }
    if problem:
        answer["problem"] = problem
    return answer


def search_events(
    store: Store,
    after: int = 0,
    limit: int = 100,
    enterprise_id: str | None = None,
    type_name: str | None = None,
    log_name: str = "journal",
    scan_limit: int = 200_000,
) -> dict[str, Any]:
    """Entries after `after` matching the filters, oldest first.

    Scans at most `scan_limit` entries per call; `next_after` says where to continue
    (it moves on even when nothing in the scanned stretch matched).
    """
    log = store.log(log_name)
    found: list[dict[str, Any]] = []
    scanned = 0
    position = after
    for rows in log.pages(after, None, 5_000):
        for row in rows:
            position = row.position
            scanned += 1
            if type_name is not None and row.type_name != type_name:
                continue
            envelope = orjson.loads(row.body)
            if enterprise_id is not None:
                data = envelope["data"]
                if not any(data.get(f) == enterprise_id for f in PARTY_FIELDS):
                    continue
            found.append(
                {
                    "position": row.position,
                    "type": envelope["type"],
                    "version": envelope["v"],
                    "time": envelope["time"],
                    "cause": envelope.get("cause"),
                    "data": envelope["data"],
                    "payload": envelope["data"],  # API.md's name; `data` kept for clients
                    "hash": row.hash,
                }
            )
            if len(found) >= limit:
                return {"events": found, "next_after": position}
        if scanned >= scan_limit:
            break
    return {"events": found, "next_after": position}
