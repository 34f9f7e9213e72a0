"""`carbonx export`: one file per record kind for a period, and a manifest whose counts,
checksums and journal hash match the store."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import orjson
from click.testing import CliRunner

from infra.store import open_store
from services.cli import main
from services.exchange.intake import Intake
from services.exchange.runner import EngineRunner
from tests.test_registry_year import CONFIG, run_year


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
            if form == "json":
                rows = orjson.loads(body)
            else:
                rows = list(csv.DictReader(body.decode().splitlines()))
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
        assert manifest["files"]["evaluations"]["rows"] == 4
        assert manifest["files"]["holdings"]["rows"] > 0
    # The 2025 period's trading happened in calendar 2026: that year's export has it.
    later = runner.invoke(
        main, ["export", "--db", store_url, "--period", "2026", "--out", str(tmp_path / "y")]
    )
    assert later.exit_code == 0, later.output
    assert orjson.loads((tmp_path / "y" / "manifest.json").read_bytes())["files"]["trades"]["rows"]
    bad = runner.invoke(main, ["export", "--db", store_url, "--period", "year", "--out", "x"])
    assert bad.exit_code != 0 and "four-digit year" in bad.output
