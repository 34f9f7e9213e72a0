"""The audit export: one file per record kind for a period, and a manifest.

A period "P" selects two things: market activity in the calendar year of P (Asia/
Shanghai) — trades, retirements, and issuances (plus every issuance of credits of
vintage P, such as the period close's surplus blocks) — and the compliance period P
itself — surrenders against it, obligations, compliance, penalties, evaluations. Holdings are as
of the journal position in the manifest. The manifest carries each file's row count and
SHA-256, and the journal's head position and hash: an auditor can check the files
against a `carbonx verify` of the same store.

Every file is read in one read-only snapshot transaction together with the read models'
tracking positions, so a projector committing meanwhile cannot put rows in a file that
the manifest's position does not cover. Serial custody can be followed end to end:
issuances, trades and transfers carry their serial ranges, surrenders and retirements
theirs, so over all periods' files issued + bought + received - sold - given -
surrendered - retired is each enterprise's holding.

CSV is RFC 4180 (CRLF line ends; a field with a comma, quote, CR or LF is quoted). A
text cell that a spreadsheet would read as a formula (it starts with ``=``, ``+``,
``-``, ``@``, a tab or a CR, and is not a plain number) gets a ``'`` prefixed, as OWASP
recommends against CSV injection. JSON is written exactly as stored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from events.chain import GENESIS
from infra.store import Store

__all__ = ["EXPORTS", "export_period"]

SHANGHAI = timezone(timedelta(hours=8))

#: file name -> (SQL, whether it takes the year's time range or the period).
EXPORTS: dict[str, tuple[str, str]] = {
    "trades": (
        "SELECT trade_id, position, time, instrument, price, quantity, aggressor, buyer_id, "
        "seller_id, buyer_fee, seller_fee, serials FROM rm_trades WHERE time >= %s AND time < %s "
        "ORDER BY position",
        "year",
    ),
    "transfers": (
        "SELECT position, time, from_enterprise_id, to_enterprise_id, instrument, quantity, "
        "serials, reason FROM rm_transfers WHERE time >= %s AND time < %s ORDER BY position",
        "year",
    ),
    "issuances": (
        "SELECT i.position, i.time, i.enterprise_id, i.instrument, i.quantity, i.serial_first, "
        "i.serial_last, i.reason FROM rm_issuances i LEFT JOIN rm_instruments m "
        "ON m.symbol = i.instrument WHERE (i.time >= %s AND i.time < %s) OR m.vintage = %s "
        "ORDER BY i.position",
        "vintage",
    ),
    "retirements": (
        "SELECT position, time, enterprise_id, instrument, quantity, serials, beneficiary, "
        "reason FROM rm_cancellations WHERE kind = 'retirement' AND time >= %s AND time < %s "
        "ORDER BY position",
        "year",
    ),
    "surrenders": (
        "SELECT position, time, enterprise_id, instrument, quantity, serials, period "
        "FROM rm_cancellations WHERE kind = 'surrender' AND period = %s ORDER BY position",
        "period",
    ),
    "compliance": (
        "SELECT enterprise_id, period, verified_emissions_kg, method, quota_kg, quota_inputs, "
        "balance_t, issued_t, obligation_t, surrendered_t, outstanding_t, shortfall_t, status "
        "FROM rm_compliance WHERE period = %s ORDER BY enterprise_id",
        "period",
    ),
    "obligations": (
        "SELECT enterprise_id, period, obligation_t, surrendered_t, outstanding_t, shortfall_t, "
        "status FROM rm_compliance WHERE period = %s AND obligation_t > 0 ORDER BY enterprise_id",
        "period",
    ),
    "penalties": (
        "SELECT enterprise_id, period, shortfall_t, penalty_fen, penalty_unpaid_fen "
        "FROM rm_compliance WHERE period = %s AND penalty_fen > 0 ORDER BY enterprise_id",
        "period",
    ),
    "evaluations": (
        "SELECT enterprise_id, period, sector, scores, weights, total, grade, near_zero_carbon, "
        "inputs, position FROM rm_evaluations WHERE period = %s ORDER BY enterprise_id",
        "period",
    ),
    "holdings": (
        "SELECT enterprise_id, instrument, serial_first, serial_last FROM rm_holdings "
        "ORDER BY instrument, serial_first",
        "none",
    ),
}


def _year_range(period: str) -> tuple[int, int]:
    year = int(period[:4])
    start = datetime(year, 1, 1, tzinfo=SHANGHAI)
    end = datetime(year + 1, 1, 1, tzinfo=SHANGHAI)
    return int(start.timestamp()) * 1_000_000, int(end.timestamp()) * 1_000_000


def _columns(sql: str) -> list[str]:
    selected = sql.split("SELECT ", 1)[1].split(" FROM ", 1)[0]
    return [name.strip().rpartition(".")[2] for name in selected.split(",")]


#: What a spreadsheet takes for the start of a formula (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: A plain number, which no spreadsheet evaluates as a formula: left as it is.
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _cell(value: Any) -> Any:
    """A CSV cell: text that could be read as a formula gets a ``'`` in front."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


#: Columns stored as JSON text (nested in a JSON export, as text in CSV) and as
#: booleans (SQLite gives 0/1, PostgreSQL true/false: the files must not depend on it).
_JSON_TEXT = frozenset(("serials", "scores", "weights", "inputs", "quota_inputs"))
_BOOLEAN = frozenset(("near_zero_carbon",))


def _typed(columns: Sequence[str], rows: list[tuple[Any, ...]], form: str) -> list[list[Any]]:
    """Rows with booleans as booleans (CSV: ``true``/``false``) and, in JSON, the JSON
    text columns as the structures they hold: the same files from either backend."""
    nested = [i for i, name in enumerate(columns) if name in _JSON_TEXT] if form == "json" else []
    flags = [i for i, name in enumerate(columns) if name in _BOOLEAN]
    typed = []
    for row in rows:
        values = list(row)
        for i in flags:
            flag = bool(values[i])
            values[i] = flag if form == "json" else ("true" if flag else "false")
        for i in nested:
            if values[i] is not None:
                values[i] = orjson.loads(values[i])
        typed.append(values)
    return typed


def _render(columns: Sequence[str], rows: list[tuple[Any, ...]], form: str) -> bytes:
    rows = [tuple(row) for row in _typed(columns, rows, form)]
    if form == "json":
        return orjson.dumps(
            [dict(zip(columns, row, strict=True)) for row in rows], option=orjson.OPT_INDENT_2
        )
    text = io.StringIO(newline="")
    # RFC 4180: CRLF ends a record, and the csv module quotes a field that holds a
    # character of the line terminator, so both a bare CR and a bare LF are quoted (with
    # "\n" alone a CR went out bare and a reader split the record there).
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([tuple(map(_cell, row)) for row in rows])
    return text.getvalue().encode()


def export_period(store: Store, period: str, form: str, out: Path) -> dict[str, Any]:
    """Write every export of `period` as `form` (csv or json) under `out`; the manifest."""
    if len(period) < 4 or not period[:4].isdigit():
        raise ValueError("period must start with a four-digit year, e.g. 2025")
    if form not in ("csv", "json"):
        raise ValueError("format must be csv or json")
    out.mkdir(parents=True, exist_ok=True)
    first, last = _year_range(period)
    params_of: dict[str, tuple[Any, ...]] = {
        "year": (first, last),
        "vintage": (first, last, int(period[:4])),
        "period": (period,),
        "none": (),
    }
    # One snapshot for the tracking positions and every file: a projector batch that
    # commits meanwhile is in all of them or in none.
    with store.sql.snapshot() as reader:
        # The read models' position, not the journal's head (which may have moved on).
        positions = [position for _, position in reader.query("SELECT * FROM rm_tracking")]
        head = min(positions) if positions else 0
        found = {
            name: reader.query(sql, params_of[scope]) for name, (sql, scope) in EXPORTS.items()
        }
    # The journal only grows: the hash at `head` is the same after the snapshot.
    rows_at = store.journal.read(head - 1, 1) if head else []
    head_hash = rows_at[0].hash if rows_at else GENESIS
    files: dict[str, Any] = {}
    for name, (sql, _) in EXPORTS.items():
        rows = found[name]
        body = _render(_columns(sql), rows, form)
        path = out / f"{name}.{form}"
        path.write_bytes(body)
        files[name] = {
            "file": path.name,
            "rows": len(rows),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    manifest = {
        "period": period,
        "format": form,
        "calendar_year_from_us": first,
        "calendar_year_to_us": last,
        "journal_position": head,
        "journal_head_hash": head_hash,
        "files": files,
    }
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest
