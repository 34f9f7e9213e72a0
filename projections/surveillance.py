"""Market statistics a regulator watches: who trades how much, and with whom.

Volume by enterprise gives shares and concentration (Herfindahl–Hirschman index over
traded volume, in the usual 0–10,000 scale); volume per ordered (seller, buyer) pair
gives wash-trade candidates: two enterprises that sold to each other in both
directions move credits without changing who holds the risk, the classic pattern
regulators look at first.
"""

from __future__ import annotations

from typing import Any

from events import exchange as x
from infra.sqldb import Cursor, SqlDatabase
from projections.base import Entry, Projection, Table

__all__ = ["Surveillance", "summary"]

VOLUMES = Table(
    "rm_volumes",
    (
        ("enterprise_id", "TEXT NOT NULL"),
        ("instrument", "TEXT NOT NULL"),
        ("bought", "BIGINT NOT NULL"),
        ("sold", "BIGINT NOT NULL"),
        ("notional", "BIGINT NOT NULL"),
        ("trades", "BIGINT NOT NULL"),
    ),
    key=("enterprise_id", "instrument"),
)
PAIRS = Table(
    "rm_trade_pairs",
    (
        ("seller_id", "TEXT NOT NULL"),
        ("buyer_id", "TEXT NOT NULL"),
        ("instrument", "TEXT NOT NULL"),
        ("trades", "BIGINT NOT NULL"),
        ("quantity", "BIGINT NOT NULL"),
    ),
    key=("seller_id", "buyer_id", "instrument"),
)


class Surveillance(Projection):
    name = "surveillance"
    cost = 13
    tables = (VOLUMES, PAIRS)

    def reset(self) -> None:
        self.volumes: dict[tuple[str, str], list[int]] = {}
        self.pairs: dict[tuple[str, str, str], list[int]] = {}
        self._dirty_volumes: set[tuple[str, str]] = set()
        self._dirty_pairs: set[tuple[str, str, str]] = set()

    def load(self, db: SqlDatabase) -> None:
        for eid, symbol, *numbers in db.query("SELECT * FROM rm_volumes"):
            self.volumes[(eid, symbol)] = list(numbers)
        for seller, buyer, symbol, *numbers in db.query("SELECT * FROM rm_trade_pairs"):
            self.pairs[(seller, buyer, symbol)] = list(numbers)

    def flush(self, cursor: Cursor) -> None:
        self.write_upserts(
            cursor, VOLUMES, [(*k, *self.volumes[k]) for k in sorted(self._dirty_volumes)]
        )
        self.write_upserts(cursor, PAIRS, [(*k, *self.pairs[k]) for k in sorted(self._dirty_pairs)])
        self._dirty_volumes.clear()
        self._dirty_pairs.clear()

    def on_TradeExecuted(self, entry: Entry) -> None:
        t: x.TradeExecuted = entry.event  # type: ignore[assignment]
        # (get, then a new row only when missing: setdefault built a default row per call)
        quantity, symbol = t.quantity, t.instrument
        notional = t.price * quantity
        volumes, dirty = self.volumes, self._dirty_volumes
        for eid, bought, sold in ((t.buyer_id, quantity, 0), (t.seller_id, 0, quantity)):
            key = (eid, symbol)
            row = volumes.get(key)
            if row is None:
                row = volumes[key] = [0, 0, 0, 0]
            row[0] += bought
            row[1] += sold
            row[2] += notional
            row[3] += 1
            dirty.add(key)
        pair = (t.seller_id, t.buyer_id, symbol)
        counts = self.pairs.get(pair)
        if counts is None:
            counts = self.pairs[pair] = [0, 0]
        counts[0] += 1
        counts[1] += quantity
        self._dirty_pairs.add(pair)


def _shares_bps(traded: list[int], total: int) -> list[int]:
    """Each volume's share of `total` in basis points, summing to exactly 10,000 (when
    there is volume): floored, then the bps left over go one each to the largest
    remainders (ties: the earlier row, i.e. the lower enterprise id) — Hamilton's
    largest-remainder method, in integers."""
    if not total:
        return [0] * len(traded)
    shares = [t * 10_000 // total for t in traded]
    left = 10_000 - sum(shares)
    order = sorted(range(len(traded)), key=lambda i: (-(traded[i] * 10_000 % total), i))
    for i in order[:left]:
        shares[i] += 1
    return shares


def summary(db: SqlDatabase, instrument: str | None = None) -> dict[str, Any]:
    """Volume by enterprise with shares, HHI concentration, and wash-trade candidates.

    An enterprise's volume is what it bought plus what it sold. `share_bps` are
    largest-remainder rounded so that they add up to 10,000; `hhi` (0-10,000) is computed
    from the exact volumes and rounded half up, not summed from the rounded shares."""
    where, params = ("WHERE instrument = %s", (instrument,)) if instrument else ("", ())
    rows = db.query(
        f"SELECT enterprise_id, SUM(bought), SUM(sold), SUM(notional), SUM(trades) "
        f"FROM rm_volumes {where} GROUP BY enterprise_id ORDER BY enterprise_id",
        params,
    )
    traded = [int(bought) + int(sold) for _, bought, sold, _, _ in rows]
    total = sum(traded)
    shares = _shares_bps(traded, total)
    # HHI = sum of (share in %)^2 = 10,000 * sum(traded^2) / total^2, from the exact sums
    # once and rounded half up (flooring each term lost up to 1 per trader: 120 for 60
    # equal traders instead of 167, and 0 from 101 equal traders on).
    squares = sum(t * t for t in traded) * 10_000
    hhi = (2 * squares + total * total) // (2 * total * total) if total else 0
    volume = []
    for (eid, bought, sold, notional, trades), share_bps in zip(rows, shares, strict=True):
        volume.append({"enterprise_id": eid, "bought": int(bought), "sold": int(sold),
                       "notional": int(notional), "trades": int(trades),
                       "share_bps": share_bps})  # fmt: skip
    volume.sort(key=lambda v: (-v["share_bps"], v["enterprise_id"]))
    pairs = {
        (s, b): (int(n), int(q))
        for s, b, n, q in db.query(
            f"SELECT seller_id, buyer_id, SUM(trades), SUM(quantity) FROM rm_trade_pairs "
            f"{where} GROUP BY seller_id, buyer_id",
            params,
        )
    }
    wash = []
    for (seller, buyer), (count, quantity) in sorted(pairs.items()):
        back = pairs.get((buyer, seller))
        if back is not None and seller < buyer:
            wash.append({"enterprise_a": seller, "enterprise_b": buyer,
                         "trades": count + back[0], "quantity": quantity + back[1],
                         "a_to_b": quantity, "b_to_a": back[1]})  # fmt: skip
    wash.sort(key=lambda w: (-w["quantity"], w["enterprise_a"], w["enterprise_b"]))
    top = volume[0] if volume else None
    return {
        "volume_by_enterprise": volume,
        "concentration": {
            "hhi": hhi,
            "top_enterprise": top["enterprise_id"] if top else None,
            "top_share_bps": top["share_bps"] if top else 0,
        },
        "wash_candidates": wash,
    }
