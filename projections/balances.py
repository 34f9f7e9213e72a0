"""Balances, holds and the double-entry ledger behind them.

Every movement the engine makes is spelled out in its events (holds taken and released,
both legs of a fill, the fee), and this projection turns each into balanced postings:
for every event and asset the amounts sum to zero, so money and credits can only move,
never appear. An account is (owner, asset, bucket): an enterprise's ``available`` and
``held`` cash (asset ``CNY``, fen) and credits (asset = instrument, tonnes), and the
system's ``exchange/fees``, ``external/deposits`` (cash that came in from banks) and
``registry/issued|surrendered|retired`` per instrument. A balance is the sum of an
account's postings, which is what the tests compare with the engine's own accounts.

Releases (cancel, expiry, reduce) name the order but not the instrument: open sell
orders' instruments are remembered (and stored, for restarts) to post them.
"""

from __future__ import annotations

from typing import Any

from events import accounts as a
from events import exchange as x
from events import registry as r
from infra.sqldb import Cursor, SqlDatabase
from projections.base import Entry, Projection, Table

__all__ = ["CASH", "Balances", "balances_of", "enterprises", "ledger_of"]

CASH = "CNY"
AVAILABLE, HELD = "available", "held"

ACCOUNTS = Table(
    "rm_accounts",
    (
        ("enterprise_id", "TEXT NOT NULL"),
        ("status", "TEXT NOT NULL"),
        ("frozen", "BOOLEAN NOT NULL"),
        ("opened_position", "BIGINT NOT NULL"),
    ),
    key=("enterprise_id",),
)
BALANCES = Table(
    "rm_balances",
    (
        ("owner", "TEXT NOT NULL"),
        ("asset", "TEXT NOT NULL"),
        ("bucket", "TEXT NOT NULL"),
        ("balance", "BIGINT NOT NULL"),
    ),
    key=("owner", "asset", "bucket"),
)
LEDGER = Table(
    "rm_ledger",
    (
        ("owner", "TEXT NOT NULL"),
        ("position", "BIGINT NOT NULL"),
        ("seq", "BIGINT NOT NULL"),
        ("time", "BIGINT NOT NULL"),
        ("event_type", "TEXT NOT NULL"),
        ("asset", "TEXT NOT NULL"),
        ("bucket", "TEXT NOT NULL"),
        ("amount", "BIGINT NOT NULL"),
    ),
    # Keyed by owner first: every read is an owner's postings in position order, so the
    # key serves them and no second index is written (the ledger is ~40% of a live
    # batch's rows: ~5 postings an order).
    key=("owner", "position", "seq"),
)
#: A posting's fields as the API gives them.
POSTING = ("position", "seq", "time", "event_type", "owner", "asset", "bucket", "amount")
SELLS = Table(
    "rm_open_sells",
    (
        ("order_id", "BIGINT NOT NULL"),
        ("instrument", "TEXT NOT NULL"),
        ("remaining", "BIGINT NOT NULL"),
    ),
    key=("order_id",),
)

Account = tuple[str, str, str]  # owner, asset, bucket


class Balances(Projection):
    name = "balances"
    cost = 44
    tables = (ACCOUNTS, BALANCES, LEDGER, SELLS)

    def reset(self) -> None:
        self.accounts: dict[str, list[Any]] = {}  # enterprise -> [status, frozen, opened]
        self.balances: dict[Account, int] = {}
        self.open_sells: dict[int, list[Any]] = {}  # order id -> [instrument, remaining]
        self._dirty_accounts: set[str] = set()
        self._dirty_sells: set[int] = set()
        self._stored_sells: set[int] = set()  # open sells that have a row
        self._postings: list[tuple[Any, ...]] = []
        self._seq_position = self._seq = 0

    def load(self, db: SqlDatabase) -> None:
        for eid, status, frozen, opened in db.query("SELECT * FROM rm_accounts"):
            self.accounts[eid] = [status, bool(frozen), opened]
        for owner, asset, bucket, balance in db.query("SELECT * FROM rm_balances"):
            self.balances[(owner, asset, bucket)] = balance
        for order_id, symbol, remaining in db.query("SELECT * FROM rm_open_sells"):
            self.open_sells[order_id] = [symbol, remaining]
        self._stored_sells = set(self.open_sells)

    def flush(self, cursor: Cursor) -> None:
        self.write_upserts(
            cursor, ACCOUNTS, [(e, *self.accounts[e]) for e in sorted(self._dirty_accounts)]
        )
        # Every balance that moved has a posting in this batch: no dirty set to keep.
        moved = sorted({(p[0], p[5], p[6]) for p in self._postings})  # owner, asset, bucket
        self.write_upserts(cursor, BALANCES, [(*k, self.balances[k]) for k in moved])
        sells, stored = sorted(self._dirty_sells), self._stored_sells
        kept = [i for i in sells if i in self.open_sells]
        gone = [i for i in sells if i not in self.open_sells and i in stored]
        self.write_upserts(cursor, SELLS, [(i, *self.open_sells[i]) for i in kept])
        self.write_deletes(cursor, SELLS, [(i,) for i in gone])
        stored.update(kept)
        stored.difference_update(gone)
        cursor.insert_rows(LEDGER.name, LEDGER.column_names, self._postings)
        self._dirty_accounts.clear()
        self._dirty_sells.clear()
        self._postings = []

    # -- postings

    def _post(self, entry: Entry, asset: str, *lines: tuple[str, str, int]) -> None:
        """Balanced postings of one event in one asset: (owner, bucket, amount) lines."""
        # seq numbers the postings of one entry, whatever the batch boundaries.
        position, time = entry.position, entry.time
        seq = self._seq if position == self._seq_position else 0
        self._seq_position = position
        kind = entry.event.type_name
        balances = self.balances
        append = self._postings.append
        for owner, bucket, amount in lines:
            if amount:
                key = (owner, asset, bucket)
                balances[key] = balances.get(key, 0) + amount
                append((owner, position, seq, time, kind, asset, bucket, amount))
                seq += 1
        self._seq = seq

    def _hold(self, entry: Entry, eid: str, asset: str, amount: int) -> None:
        """Move `amount` from available to held (negative: release it back)."""
        self._post(entry, asset, (eid, AVAILABLE, -amount), (eid, HELD, amount))

    def _account(self, eid: str) -> list[Any]:
        self._dirty_accounts.add(eid)
        account = self.accounts.get(eid)
        if account is None:
            account = self.accounts[eid] = ["active", False, 0]
        return account

    # -- the registry's facts about accounts

    def on_AccountOpened(self, entry: Entry) -> None:
        self._account(entry.event.enterprise_id)[2] = entry.position  # type: ignore[attr-defined]

    def on_EnterpriseStatusChanged(self, entry: Entry) -> None:
        e: a.EnterpriseStatusChanged = entry.event  # type: ignore[assignment]
        self._account(e.enterprise_id)[0] = e.status

    def on_AccountFreezeChanged(self, entry: Entry) -> None:
        e: a.AccountFreezeChanged = entry.event  # type: ignore[assignment]
        self._account(e.enterprise_id)[1] = e.frozen

    # -- cash and credits in and out

    def on_CashDeposited(self, entry: Entry) -> None:
        e: a.CashDeposited = entry.event  # type: ignore[assignment]
        self._post(
            entry, CASH, ("external", "deposits", -e.amount), (e.enterprise_id, AVAILABLE, e.amount)
        )

    def on_CashWithdrawn(self, entry: Entry) -> None:
        e: a.CashWithdrawn = entry.event  # type: ignore[assignment]
        self._post(
            entry, CASH, (e.enterprise_id, AVAILABLE, -e.amount), ("external", "deposits", e.amount)
        )

    def on_CreditsIssued(self, entry: Entry) -> None:
        e: a.CreditsIssued = entry.event  # type: ignore[assignment]
        self._post(
            entry,
            e.instrument,
            ("registry", "issued", -e.quantity),
            (e.enterprise_id, AVAILABLE, e.quantity),
        )

    def on_CreditsTransferred(self, entry: Entry) -> None:
        e: a.CreditsTransferred = entry.event  # type: ignore[assignment]
        self._post(
            entry,
            e.instrument,
            (e.from_enterprise_id, AVAILABLE, -e.quantity),
            (e.to_enterprise_id, AVAILABLE, e.quantity),
        )

    def on_CreditsSurrendered(self, entry: Entry) -> None:
        e: a.CreditsSurrendered = entry.event  # type: ignore[assignment]
        self._post(
            entry,
            e.instrument,
            (e.enterprise_id, AVAILABLE, -e.quantity),
            ("registry", "surrendered", e.quantity),
        )

    def on_CreditsRetired(self, entry: Entry) -> None:
        e: a.CreditsRetired = entry.event  # type: ignore[assignment]
        self._post(
            entry,
            e.instrument,
            (e.enterprise_id, AVAILABLE, -e.quantity),
            ("registry", "retired", e.quantity),
        )

    # -- penalties (charged from available cash; the unpaid rest is a debt, not a posting)

    def on_PenaltyCharged(self, entry: Entry) -> None:
        e: r.PenaltyCharged = entry.event  # type: ignore[assignment]
        self._post(
            entry, CASH, (e.enterprise_id, AVAILABLE, -e.paid), ("registry", "penalties", e.paid)
        )

    def on_PenaltyCollected(self, entry: Entry) -> None:
        e: r.PenaltyCollected = entry.event  # type: ignore[assignment]
        self._post(
            entry,
            CASH,
            (e.enterprise_id, AVAILABLE, -e.amount),
            ("registry", "penalties", e.amount),
        )

    # -- orders and trades

    def on_OrderAccepted(self, entry: Entry) -> None:
        e: x.OrderAccepted = entry.event  # type: ignore[assignment]
        if e.held_cash:
            self._hold(entry, e.enterprise_id, CASH, e.held_cash)
        if e.held_credits:
            self._hold(entry, e.enterprise_id, e.instrument, e.held_credits)
            self.open_sells[e.order_id] = [e.instrument, e.quantity]
            self._dirty_sells.add(e.order_id)

    def on_OrderRepriced(self, entry: Entry) -> None:
        e: x.OrderRepriced = entry.event  # type: ignore[assignment]
        self._hold(entry, e.enterprise_id, CASH, e.held_cash_delta)

    def on_TradeExecuted(self, entry: Entry) -> None:
        t: x.TradeExecuted = entry.event  # type: ignore[assignment]
        notional = t.price * t.quantity
        buyer, seller = t.buyer_id, t.seller_id
        if t.buy_order_id:  # paid from the buy order's hold; the excess goes back
            paid = (buyer, HELD, -(notional + t.buyer_fee + t.buyer_released))
            refund = (buyer, AVAILABLE, t.buyer_released)
        else:  # a block trade is paid from available cash
            paid = (buyer, AVAILABLE, -(notional + t.buyer_fee))
            refund = (buyer, AVAILABLE, 0)
        self._post(
            entry,
            CASH,
            paid,
            refund,
            (seller, AVAILABLE, notional - t.seller_fee),
            ("exchange", "fees", t.buyer_fee + t.seller_fee),
        )
        self._post(
            entry,
            t.instrument,
            (seller, HELD if t.sell_order_id else AVAILABLE, -t.quantity),
            (buyer, AVAILABLE, t.quantity),
        )
        sell = self.open_sells.get(t.sell_order_id)
        if sell is not None:
            sell[1] -= t.quantity
            self._dirty_sells.add(t.sell_order_id)
            if sell[1] <= 0:
                del self.open_sells[t.sell_order_id]

    def _release(self, entry: Entry, ends: bool) -> None:
        e: x.OrderCancelled | x.OrderExpired | x.OrderReduced = entry.event  # type: ignore[assignment]
        if e.released_cash:
            self._hold(entry, e.enterprise_id, CASH, -e.released_cash)
        sell = self.open_sells.get(e.order_id)
        if sell is None:
            return
        if e.released_credits:
            self._hold(entry, e.enterprise_id, sell[0], -e.released_credits)
        self._dirty_sells.add(e.order_id)
        if ends:
            del self.open_sells[e.order_id]
        else:
            sell[1] = e.remaining_quantity

    def on_OrderCancelled(self, entry: Entry) -> None:
        self._release(entry, ends=True)

    def on_OrderExpired(self, entry: Entry) -> None:
        self._release(entry, ends=True)

    def on_OrderReduced(self, entry: Entry) -> None:
        self._release(entry, ends=False)


# ---------------------------------------------------------------------------- queries


def balances_of(db: SqlDatabase, enterprise_id: str) -> dict[str, Any] | None:
    """`{cash: {available, held}, credits: {SYMBOL: {available, held}}}`, or None."""
    if not db.query("SELECT 1 FROM rm_accounts WHERE enterprise_id = %s", (enterprise_id,)):
        return None
    cash = {AVAILABLE: 0, HELD: 0}
    credits: dict[str, dict[str, int]] = {}
    for asset, bucket, balance in db.query(
        "SELECT asset, bucket, balance FROM rm_balances WHERE owner = %s ORDER BY asset",
        (enterprise_id,),
    ):
        target = cash if asset == CASH else credits.setdefault(asset, {AVAILABLE: 0, HELD: 0})
        target[bucket] = balance
    return {"enterprise_id": enterprise_id, "cash": cash, "credits": credits}


def enterprises(db: SqlDatabase) -> list[dict[str, Any]]:
    """Every enterprise with an exchange account: status and freeze."""
    return [
        {"enterprise_id": eid, "status": status, "frozen": bool(frozen), "opened_position": pos}
        for eid, status, frozen, pos in db.query("SELECT * FROM rm_accounts ORDER BY enterprise_id")
    ]


def ledger_of(
    db: SqlDatabase, owner: str, after: int = 0, limit: int = 500
) -> list[dict[str, Any]]:
    """An owner's postings after a journal position, oldest first, whole positions only.

    One position often carries several postings (a fill: the hold released, the refund,
    the credits), and the next page starts after a position: a page that ended inside
    one lost the rest of it. So a full page drops its last position's postings and
    leaves them to the next page, unless that position is all the page holds; then the
    page holds all of that position's postings, more than `limit` if need be.
    """
    columns = ", ".join(POSTING)
    rows = db.query(
        f"SELECT {columns} FROM rm_ledger WHERE owner = %s AND position > %s "
        "ORDER BY position, seq LIMIT %s",
        (owner, after, limit + 1),
    )
    if len(rows) > limit:
        last = rows[limit - 1][0]
        if rows[limit][0] != last:  # the page ends on a position's last posting
            rows = rows[:limit]
        elif rows[0][0] != last:
            rows = [row for row in rows[:limit] if row[0] != last]
        else:
            rows = db.query(
                f"SELECT {columns} FROM rm_ledger WHERE owner = %s AND position = %s ORDER BY seq",
                (owner, last),
            )
    return [dict(zip(POSTING, row, strict=True)) for row in rows]
