"""Benchmark: the rebuild of every projection alone, on a history kept between runs.

The rebuild step of scripts/bench_replay.py without its verification and as-of steps,
for iterating on the projections: the history is built once (or topped up) in the
store at `--db` and reused by later runs against the same URL. Prints the rebuild rate
against the read+decode floor and the write floor (bench_replay.write_floor),
`--repeat` times; the last line is JSON.

    python scripts/bench_rebuild.py --db sqlite:///./data/bench.db [--n 1000000] [--repeat 2]
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from projections import all_projections
from projections.projector import Projector
from scripts.bench_replay import (
    kept_history,
    kept_history_arguments,
    print_rebuild,
    read_baseline,
    write_floor,
)


def main() -> None:
    parser = kept_history_arguments(__doc__, repeat=2)
    parser.add_argument("--workers", type=int, default=None, help="rebuild worker processes")
    parser.add_argument("--batch", type=int, default=20_000, help="projector batch size")
    args = parser.parse_args()
    with kept_history(args.db, args.n) as (store, total):
        floor = read_baseline(store)
        rates = []
        written = None
        for _ in range(args.repeat):
            projector = Projector(store, all_projections(), batch=args.batch)
            started = time.perf_counter()
            read = projector.rebuild(workers=args.workers)
            rates.append(total / (time.perf_counter() - started))
            assert read == total, (read, total)
            if written is None:
                tables = [t for p in projector.projections for t in p.tables]
                written = write_floor(store, tables, total)
            print_rebuild(rates[-1], floor, written, total)
    assert written is not None
    figures: dict[str, Any] = {
        "events": total,
        "rebuild_events_per_s": round(max(rates)),
        "read_decode_floor_per_s": round(floor),
        "read_model_rows": written.rows,
        "write_floor_bulk_per_s": round(written.bulk_events_per_s),
        "write_floor_database_per_s": round(written.database_events_per_s),
    }
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
