"""Benchmark: chain verification of the journal alone, on a history kept between runs.

The verification step of scripts/bench_replay.py without its rebuild and as-of steps,
for iterating on the verifier: the history is built once (or topped up) in the store
at `--db` and reused by later runs against the same URL. Prints the verification rate
against raw SHA-256 over the same bytes, `--repeat` times; the last line is JSON.

    python scripts/bench_verify.py --db sqlite:///./data/bench.db [--n 1000000] [--repeat 3]
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from scripts.bench_replay import kept_history, kept_history_arguments, sha_baseline


def main() -> None:
    args = kept_history_arguments(__doc__, repeat=3).parse_args()
    with kept_history(args.db, args.n) as (store, total):
        sha = sha_baseline(store)
        rates = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            report = store.journal.verify()
            rates.append(report.events / (time.perf_counter() - started))
            assert report.ok and report.events == total, report
            print(f"chain verification: {rates[-1]:,.0f} events/s "
                  f"(raw sha256 chain {sha:,.0f}/s, ratio {rates[-1] / sha:.2f})")  # fmt: skip
    figures: dict[str, Any] = {
        "events": total,
        "verify_events_per_s": round(max(rates)),
        "sha256_floor_per_s": round(sha),
    }
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
