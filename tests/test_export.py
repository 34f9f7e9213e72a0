"""`carbonx export`: one file per record kind for a period, and a manifest whose counts,
checksums and journal hash match the store; the files follow every serial from its
issuance to its holder; CSV is RFC 4180 and defused for spreadsheets."""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from events import commands as c
from events.base import Event
from infra.sqldb import Reader
from infra.store import Store, open_store
from projections import all_projections
from projections.projector import Projector
from services.cli import main
from services.exchange.intake import Intake
from services.exchange.runner import EngineRunner
from services.export import export_period
from tests.test_registry_year import CONFIG, run_year

SHANGHAI = timezone(timedelta(hours=8))


def _read(body: bytes, form: str) -> list[dict[str, Any]]:
    """A file's rows as a reader of its format sees them (CSV: RFC 4180, so a quoted CR
    or LF stays inside its field)."""
    if form == "json":
        rows: list[dict[str, Any]] = orjson.loads(body)
        return rows
    return list(csv.DictReader(io.StringIO(body.decode(), newline="")))


def _ranges(value: Any) -> list[tuple[int, int]]:
    """A `serials` cell: ``[[first, last], ...]`` (in CSV, as JSON text)."""
    nested = orjson.loads(value) if isinstance(value, str) else value
    return [(int(a), int(b)) for a, b in nested]


def _reconcile(exports: list[Path], form: str) -> dict[tuple[str, str], int]:
    """Follow every serial through the files of several exports (rows seen twice, such as
    an issuance in its year's and in its vintage's export, counted once), checking each
    move against who holds the serial then; the holders at the end must be the holdings
    file's, serial for serial. Returns the tonnes held per (enterprise, instrument)."""
    moves: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    for out in exports:
        for name in ("issuances", "trades", "transfers", "surrenders", "retirements"):
            for row in _read((out / f"{name}.{form}").read_bytes(), form):
                moves[(name, int(row["position"]))] = (name, row)
    owner: dict[tuple[str, int], str] = {}

    def move(
        symbol: str, ranges: list[tuple[int, int]], source: str | None, target: str | None
    ) -> None:
        for first, last in ranges:
            for serial in range(first, last + 1):
                assert owner.get((symbol, serial)) == source, (symbol, serial, source)
                if target is None:
                    del owner[(symbol, serial)]
                else:
                    owner[(symbol, serial)] = target

    for (_, position), (name, row) in sorted(moves.items(), key=lambda m: m[0][1]):
        symbol, quantity = row["instrument"], int(row["quantity"])
        if name == "issuances":
            ranges = [(int(row["serial_first"]), int(row["serial_last"]))]
            move(symbol, ranges, None, row["enterprise_id"])
        elif name == "trades":
            ranges = _ranges(row["serials"])
            move(symbol, ranges, row["seller_id"], row["buyer_id"])
        elif name == "transfers":
            ranges = _ranges(row["serials"])
            move(symbol, ranges, row["from_enterprise_id"], row["to_enterprise_id"])
        else:
            ranges = _ranges(row["serials"])
            move(symbol, ranges, row["enterprise_id"], None)
        assert sum(b - a + 1 for a, b in ranges) == quantity, (name, position)
    held: dict[tuple[str, int], str] = {}
    for row in _read((exports[-1] / f"holdings.{form}").read_bytes(), form):
        for serial in range(int(row["serial_first"]), int(row["serial_last"]) + 1):
            held[(row["instrument"], serial)] = row["enterprise_id"]
    assert owner == held
    tonnes: dict[tuple[str, str], int] = {}
    for (symbol, _), eid in held.items():
        tonnes[(eid, symbol)] = tonnes.get((eid, symbol), 0) + 1
    return tonnes


def test_the_compliance_year_exports_as_csv_and_json(store_url: str, tmp_path: Path) -> None:
    zone = run_year()
    with open_store(store_url) as store:
        Intake(store).submit([(command, time) for _, time, command in zone.log])
        EngineRunner(store, CONFIG).drain()
        head, head_hash = store.journal.head()
    runner = CliRunner()
    for form in ("csv", "json"):
        out = tmp_path / form
        result = runner.invoke(
            main,
            [
                "export",
                "--db",
                store_url,
                "--period",
                "2025",
                "--format",
                form,
                "--out",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
        manifest = orjson.loads((out / "manifest.json").read_bytes())
        assert (manifest["journal_position"], manifest["journal_head_hash"]) == (head, head_hash)
        for name, info in manifest["files"].items():
            body = (out / info["file"]).read_bytes()
            assert hashlib.sha256(body).hexdigest() == info["sha256"], name
            rows = _read(body, form)
            assert len(rows) == info["rows"], name
            if name == "surrenders":
                # S1 surrendered its whole 652 t obligation, E2 30 of its 89 t.
                assert sorted(int(r["quantity"]) for r in rows) == [30, 652]
            if name == "penalties":
                (penalty,) = rows
                assert penalty["enterprise_id"] == "E2" and int(penalty["penalty_fen"]) == 901_992
                # 350,000 paid at the deadline, the 551,992 left collected after it
                assert int(penalty["penalty_unpaid_fen"]) == 0
            if name == "issuances":
                assert {int(r["serial_first"]) for r in rows} >= {1, 34}  # the close's blocks
            if name == "evaluations":
                # The same on either backend: a boolean is a boolean (SQLite stores 0/1),
                # and in JSON the scores are an object, not JSON text inside a string.
                flags = [r["near_zero_carbon"] for r in rows]
                if form == "json":
                    assert all(type(flag) is bool for flag in flags), flags
                else:
                    assert set(flags) <= {"true", "false"}, flags
                if form == "json":
                    assert all(set(r["scores"]) == {"economy", "energy", "pollution", "carbon"}
                               for r in rows)  # fmt: skip
        assert manifest["files"]["evaluations"]["rows"] == 4
        assert manifest["files"]["holdings"]["rows"] > 0
        assert set(manifest["files"]) >= {"trades", "transfers", "holdings", "issuances"}
    # The 2025 period's trading happened in calendar 2026: that year's export has it.
    later = runner.invoke(
        main, ["export", "--db", store_url, "--period", "2026", "--out", str(tmp_path / "y")]
    )
    assert later.exit_code == 0, later.output
    assert orjson.loads((tmp_path / "y" / "manifest.json").read_bytes())["files"]["trades"]["rows"]
    bad = runner.invoke(main, ["export", "--db", store_url, "--period", "year", "--out", "x"])
    assert bad.exit_code != 0 and "four-digit year" in bad.output


def test_the_files_of_every_year_add_up_to_the_holdings(store_url: str, tmp_path: Path) -> None:
    """Issued + bought - sold - surrendered - retired = held, per enterprise and instrument
    and serial for serial, over the exports of the years the compliance year spans."""
    zone = run_year()
    with open_store(store_url) as store:
        Intake(store).submit([(command, time) for _, time, command in zone.log])
        EngineRunner(store, CONFIG).drain()
        Projector(store, all_projections()).catch_up()
        for form in ("csv", "json"):
            outs = []
            for year in ("2025", "2026", "2027"):
                export_period(store, year, form, tmp_path / f"{form}{year}")
                outs.append(tmp_path / f"{form}{year}")
            held = _reconcile(outs, form)
            assert held == {(e, s): n for e, s, n in _engine_holdings(store)}


def _engine_holdings(store: Store) -> list[tuple[str, str, int]]:
    return [
        (eid, symbol, int(n))
        for eid, symbol, n in store.sql.query(
            "SELECT enterprise_id, instrument, SUM(serial_last - serial_first + 1) "
            "FROM rm_holdings GROUP BY enterprise_id, instrument"
        )
    ]


def _at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()) * 1_000_000


HCC = "HCC-2025"
FORMULA = '=HYPERLINK("http://evil","x")'
ODD = 'a, "q"\n2'  # a comma, quotes and a line break


def _market_year() -> list[tuple[Event, int]]:
    """Trades, transfers and retirements around the new year (Asia/Shanghai), with text
    that a careless CSV writer or a spreadsheet gets wrong."""
    start = _at("2025-12-31T23:00:00")
    out: list[tuple[Event, int]] = [
        (c.ListInstrument(symbol=HCC, vintage=2025, reference_price=5_000, fee_bps=0), start)
    ]
    for eid in ("A", "B", "C"):
        out += [
            (c.OpenAccount(enterprise_id=eid), start),
            (c.DepositCash(enterprise_id=eid, amount=10**9), start),
            (c.IssueCredits(enterprise_id=eid, instrument=HCC, quantity=100, reason=ODD), start),
        ]  # fmt: skip
    late = _at("2025-12-31T23:59:00")
    new = _at("2026-01-01T00:00:00")

    def order(coid: str, eid: str, side: str, quantity: int) -> c.PlaceOrder:
        return c.PlaceOrder(client_order_id=coid, enterprise_id=eid, instrument=HCC, side=side,
                            order_type="limit", quantity=quantity, price=5_000,
                            time_in_force="gtc")  # fmt: skip

    out += [
        (order("s1", "A", "sell", 30), late),
        (order("b1", "B", "buy", 10), late + 1),
        (
            c.TransferCredits(
                from_enterprise_id="B",
                to_enterprise_id="C",
                instrument=HCC,
                quantity=15,
                reason="-intra group",
            ),
            late + 2,
        ),
        (order("b2", "C", "buy", 20), new),
        (
            c.TransferCredits(
                from_enterprise_id="C",
                to_enterprise_id="A",
                instrument=HCC,
                quantity=40,
                reason="@loan",
            ),
            new + 1,
        ),
        (
            c.RetireCredits(
                enterprise_id="A", instrument=HCC, quantity=3, beneficiary=FORMULA, reason="a\rb"
            ),
            new + 2,
        ),
        (
            c.RetireCredits(
                enterprise_id="B", instrument=HCC, quantity=2, beneficiary="+1", reason="-12"
            ),
            new + 3,
        ),
    ]
    return out


def test_transfers_and_trade_serials_are_exported_and_reconcile(
    store_url: str, tmp_path: Path
) -> None:
    with open_store(store_url) as store:
        Intake(store).submit(_market_year())
        EngineRunner(store, CONFIG).drain()
        Projector(store, all_projections()).catch_up()
        for form in ("csv", "json"):
            outs = [tmp_path / f"{form}{year}" for year in ("2025", "2026")]
            manifests = [export_period(store, out.name[-4:], form, out) for out in outs]
            assert [m["files"]["transfers"]["rows"] for m in manifests] == [1, 1]
            assert [m["files"]["trades"]["rows"] for m in manifests] == [1, 1]
            (transfer,) = _read((outs[0] / f"transfers.{form}").read_bytes(), form)
            assert (transfer["from_enterprise_id"], transfer["to_enterprise_id"]) == ("B", "C")
            assert int(transfer["quantity"]) == 15
            (trade,) = _read((outs[0] / f"trades.{form}").read_bytes(), form)
            assert _ranges(trade["serials"]) == [(1, 10)]  # A's lowest serials, to B
            held = _reconcile(outs, form)
            assert held == {(e, s): n for e, s, n in _engine_holdings(store)}
            assert held[("A", HCC)] == 100 - 30 + 40 - 3


def test_csv_quotes_every_line_break_and_defuses_formulas(store_url: str, tmp_path: Path) -> None:
    """A bare CR in a field split the record for every CSV reader (the manifest counted 2
    retirements, a reader saw 3); a cell starting with `=` ran as a formula."""
    with open_store(store_url) as store:
        Intake(store).submit(_market_year())
        EngineRunner(store, CONFIG).drain()
        Projector(store, all_projections()).catch_up()
        csv_m = export_period(store, "2026", "csv", tmp_path / "csv")
        json_m = export_period(store, "2026", "json", tmp_path / "json")
        export_period(store, "2025", "csv", tmp_path / "csv2025")
    for name, info in csv_m["files"].items():
        body = (tmp_path / "csv" / info["file"]).read_bytes()
        assert len(_read(body, "csv")) == info["rows"] == json_m["files"][name]["rows"], name
        # RFC 4180: every record ends in CRLF, and no CR or LF stands outside quotes.
        assert body.endswith(b"\r\n"), name
        records = list(csv.reader(io.StringIO(body.decode(), newline="")))
        assert len(records) == info["rows"] + 1, name
    retired = _read((tmp_path / "csv" / "retirements.csv").read_bytes(), "csv")
    assert [(r["beneficiary"], r["reason"]) for r in retired] == [
        ("'" + FORMULA, "a\rb"),
        ("'+1", "-12"),  # a plain number is no formula: as it is
    ]
    (transfer,) = _read((tmp_path / "csv" / "transfers.csv").read_bytes(), "csv")
    assert transfer["reason"] == "'@loan"
    issued = _read((tmp_path / "csv2025" / "issuances.csv").read_bytes(), "csv")
    assert [r["reason"] for r in issued] == [ODD] * 3
    # JSON is exact.
    retired_json = _read((tmp_path / "json" / "retirements.json").read_bytes(), "json")
    assert [(r["beneficiary"], r["reason"]) for r in retired_json] == [
        (FORMULA, "a\rb"),
        ("+1", "-12"),
    ]


@contextmanager
def _projector_commits_after_trades(store: Store) -> Iterator[None]:
    """While the export reads, the live projector commits its next batch right after the
    trades were read: what `carbonx serve` does concurrently, made deterministic. The
    projector runs in its own thread (and connection), as it does in `serve`."""
    sql: Any = store.sql

    def project_now() -> None:
        worker = threading.Thread(target=lambda: Projector(store, all_projections()).catch_up())
        worker.start()
        worker.join()

    def hooked(query: Any) -> Any:
        def run(sql_text: str, params: Any = ()) -> Any:
            rows = query(sql_text, params)
            if "FROM rm_trades" in sql_text:
                project_now()
            return rows

        return run

    plain_query, plain_snapshot = sql.query, sql.snapshot

    @contextmanager
    def snapshot() -> Iterator[Reader]:
        with plain_snapshot() as reader:
            reader.query = hooked(reader.query)
            yield reader

    sql.query, sql.snapshot = hooked(plain_query), snapshot
    try:
        yield
    finally:
        del sql.query, sql.snapshot


def test_the_manifest_matches_the_files_while_the_projector_commits(
    store_url: str, tmp_path: Path
) -> None:
    events = _market_year()
    with open_store(store_url) as store:
        Intake(store).submit(events[:10])  # the accounts and their issuances
        EngineRunner(store, CONFIG).drain()
        Projector(store, all_projections()).catch_up()
        # The orders are journalled; the projector has not caught up with them yet.
        Intake(store).submit(events[10:12])
        EngineRunner(store, CONFIG).drain()
        with _projector_commits_after_trades(store):
            manifest = export_period(store, "2025", "json", tmp_path)
        projected = Projector(store, all_projections()).position
    assert projected > manifest["journal_position"]  # the projector did commit meanwhile
    # The trade is past the manifest's position: no file may show it.
    assert manifest["files"]["trades"]["rows"] == 0
    holdings = _read((tmp_path / "holdings.json").read_bytes(), "json")
    assert {r["enterprise_id"] for r in holdings if r["serial_first"] <= 10} == {"A"}
