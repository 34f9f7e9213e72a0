"""The web dashboard in a real browser: headless Chromium (Debian's) driven by Playwright,
against a real HTTP server (uvicorn on loopback) in front of a live store, engine and
projector. A trader places and cancels an order from the page; a regulator verifies the
journal and looks at the state as of a journal position; a trader in New York reads its
fills (after more than a page of newer orders), its orders with their instruments, its
compliance in tonnes and CNY and the daily candles named by the market's (Shanghai) day.
None may cause a console error or an uncaught page error.

Chromium missing is a failure, never a skip. A screenshot of the trader's page goes to
``$CARBONX_ARTIFACTS/dashboard.png`` (default ``test-artifacts/``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright

from tests.live import START, Live, http_server, live_system

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 10_000
SYMBOL = "HCC-2025"
E1 = "E-DEMO-1"
E2 = "E-DEMO-2"
#: µs in a day: the live system's clock starts 2025-11-25 10:00 Asia/Shanghai
DAY_US = 86_400_000_000


@dataclass
class Dashboard:
    live: Live
    page: Page
    base_url: str
    #: console messages of type "error" and uncaught page errors, as they happened
    problems: list[str] = field(default_factory=list)

    def sign_in(self, who: str) -> None:
        self.page.goto(self.base_url + "/")
        self.page.fill("#token-input", self.live.tokens[who])
        self.page.click("#sign-in")
        self.page.wait_for_selector("#whoami:not(:empty)")

    def value(self, testid: str) -> int:
        """The integer in a balance cell's data-value, once the cell is there."""
        cell = self.page.locator(f'[data-testid="{testid}"]')
        expect(cell).to_have_attribute("data-value", _DIGITS)
        text = cell.get_attribute("data-value")
        assert text is not None
        return int(text)


_DIGITS = re.compile(r"^\d+$")


@contextmanager
def _dashboard(tmp_path: Path, timezone_id: str | None = None) -> Iterator[Dashboard]:
    # Called from the test body (not a fixture) so that a missing browser is a FAILED test.
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install chromium"
    with (
        live_system(f"sqlite:///{tmp_path}/carbonx.db") as live,
        http_server(live) as base_url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1440, "height": 1000}, timezone_id=timezone_id
            )
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            board = Dashboard(live, page, base_url)

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    where = message.location.get("url", "")
                    board.problems.append(f"console error: {message.text} ({where})")

            page.on("console", on_console)
            page.on("pageerror", lambda error: board.problems.append(f"page error: {error}"))
            yield board
            context.close()
        finally:
            browser.close()


def _screenshot(page: Page, name: str) -> Path:
    folder = Path(os.environ.get("CARBONX_ARTIFACTS", "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar belongs at the top
    page.screenshot(path=str(path), full_page=True)
    return path


def test_a_trader_places_and_cancels_an_order_from_the_page(tmp_path: Path) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    with _dashboard(tmp_path) as board:
        page = board.page
        board.sign_in("trader1")
        expect(page.locator("#whoami")).to_have_text(f"trader · {E1}")
        expect(page.locator("#order-entry")).to_be_visible()
        expect(page.locator("#book-asks-empty")).to_be_visible()
        available = board.value(f"credits-available-{SYMBOL}")
        assert board.value(f"credits-held-{SYMBOL}") == 0
        cash = board.value("cash-available")

        # Sell 120 t at 60.00 CNY (6,000 fen) from the form.
        page.select_option("#order-side", "sell")
        page.select_option("#order-type", "limit")
        page.fill("#order-quantity", "120")
        page.fill("#order-price", "60.00")
        page.select_option("#order-tif", "gtc")
        page.click("#order-submit")

        result = page.locator("#order-result [data-order-id]")
        expect(result).to_have_attribute("data-status", "open")
        expect(page.locator('#order-result [data-testid="order-status"]')).to_have_text("open")
        order_id = result.get_attribute("data-order-id")
        assert order_id and order_id.isdigit(), order_id

        level = page.locator('#book-asks tr[data-price="6000"]')
        expect(level).to_have_attribute("data-quantity", "120")
        expect(level).to_contain_text("60.00")
        expect(page.locator("#book-asks-empty")).to_be_hidden()
        row = page.locator(f'#open-orders tr[data-order-id="{order_id}"]')
        expect(row).to_have_attribute("data-status", "open")
        expect(row).to_contain_text("sell")
        expect(row).to_contain_text("60.00")
        expect(page.locator(f'[data-testid="credits-held-{SYMBOL}"]')).to_have_attribute(
            "data-value", "120"
        )
        expect(page.locator(f'[data-testid="credits-available-{SYMBOL}"]')).to_have_attribute(
            "data-value", str(available - 120)
        )
        assert board.value("cash-available") == cash  # a sell holds credits, not cash
        # What the page shows is what the server holds.
        server = board.live.client.get(
            f"/v1/orders/{order_id}", headers=board.live.headers("trader1")
        )
        assert server.json()["status"] == "open", server.text

        # Cancel it from its open-orders row.
        row.locator("button.cancel").click()
        expect(row).to_have_count(0)
        expect(page.locator("#book-asks tr[data-price]")).to_have_count(0)
        expect(page.locator("#book-asks-empty")).to_be_visible()
        expect(page.locator(f'[data-testid="credits-held-{SYMBOL}"]')).to_have_attribute(
            "data-value", "0"
        )
        expect(page.locator(f'[data-testid="credits-available-{SYMBOL}"]')).to_have_attribute(
            "data-value", str(available)
        )
        expect(page.locator(f'#orders tr[data-order-id="{order_id}"]')).to_have_attribute(
            "data-status", "cancelled"
        )
        server = board.live.client.get(
            f"/v1/orders/{order_id}", headers=board.live.headers("trader1")
        )
        assert server.json()["status"] == "cancelled", server.text

        # The panels that load on their own (compliance, evaluation) have settled too.
        expect(page.locator("#compliance")).not_to_be_empty()
        expect(page.locator("#evaluation")).not_to_be_empty()
        _screenshot(page, "dashboard.png")
    assert board.problems == []  # over the whole run, closing the page included


def test_a_regulator_verifies_the_journal_and_reads_state_as_of_a_position(
    tmp_path: Path,
) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    with _dashboard(tmp_path) as board:
        live, page = board.live, board.page
        before = live.store.journal.head()[0]
        placed = live.order("trader1", E1, side="sell", quantity=75, price=6_100)
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["order_id"]
        head = live.store.journal.head()[0]
        assert head > 0

        board.sign_in("regulator")
        expect(page.locator("#whoami")).to_have_text("regulator")
        expect(page.locator(f'#enterprises tr[data-enterprise-id="{E1}"]')).to_be_visible()
        expect(page.locator('#audit-events tr[data-position="1"]')).to_be_visible()

        page.click("#verify-button")
        expect(page.locator('#verify-result [data-ok="true"]')).to_contain_text("Chain intact")

        page.fill("#asof-input", str(head))
        page.click("#asof-button")
        accounts = page.locator('[data-testid="asof-accounts"]')
        expect(accounts.locator("tr[data-enterprise-id]")).to_have_count(3)
        holding = page.locator(f'[data-testid="asof-holdings"] tr[data-enterprise-id="{E1}"]')
        expect(holding).to_contain_text(SYMBOL)
        expect(holding.locator("td").nth(3)).to_have_text("75")  # held by the resting sell
        orders = page.locator('[data-testid="asof-open-orders"] tbody tr')
        expect(orders).to_have_count(1)
        expect(orders.first).to_have_attribute("data-order-id", str(order_id))
        expect(orders.first).to_contain_text("61.00")

        # Before the order: nothing open.
        page.fill("#asof-input", str(before))
        page.click("#asof-button")
        expect(page.locator('[data-testid="asof-open-orders"]')).to_have_count(0)
        expect(page.locator("#asof-result")).to_contain_text("Open orders")
        expect(page.locator("#asof-result")).to_contain_text(f"position {before}")

        # A moment picked without a zone is the market's time, Asia/Shanghai, whatever
        # the browser's zone (this browser runs in UTC).
        picker = page.locator("#asof-datetime")
        picker.fill("2025-11-25T10:00:00")
        picker.dispatch_event("change")
        expect(page.locator("#asof-input")).to_have_value("2025-11-25T10:00:00+08:00")
        page.click("#asof-button")
        expect(page.locator("#asof-result")).to_contain_text("Open orders")
        expect(page.locator('.field-error[data-field="as_of"]')).to_be_empty()

        # An input that is not a moment: its error, and no earlier answer left below it.
        page.fill("#asof-input", "garbage")
        page.click("#asof-button")
        expect(page.locator('.field-error[data-field="as_of"]')).not_to_be_empty()
        expect(page.locator("#asof-result")).to_be_empty()
    assert board.problems == []  # over the whole run, closing the page included


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_a_trader_in_new_york_reads_fills_orders_compliance_and_daily_candles(
    tmp_path: Path,
) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    with _dashboard(tmp_path, timezone_id="America/New_York") as board:
        live, page = board.live, board.page
        regulator = live.headers("regulator")
        # A trade on 2025-11-25 (Shanghai): E-DEMO-1 sells 10 t at market into a bid.
        assert live.order("trader2", E2, side="buy", quantity=10, price=6_000).status_code == 201
        sold = _ok(live.order("trader1", E1, side="sell", type="market", quantity=10,
                              time_in_force="ioc"), 201)  # fmt: skip
        assert sold["status"] == "filled" and sold["price"] != 6_000, sold  # the band collar
        (fill,) = sold["fills"]
        market_id, trade_id = sold["order_id"], fill["trade_id"]
        resting = _ok(live.order("trader1", E1, side="sell", quantity=5, price=6_500), 201)
        # E-DEMO-1 falls short in the demo's period 2025: 1,000.5 t verified against a 900 t
        # quota; enforced early (force), it owes a penalty.
        _ok(live.client.post(f"/v1/enterprises/{E1}/reports", headers=live.headers("trader1"),
            json={"period": "2025", "output_value": "100", "energy_tce": "10",
                  "pollutants": {"so2": 0.01},
                  "sources": [{"kind": "process", "name": "kiln", "activity": "1000.5",
                               "unit": "t", "factor": "1", "factor_reason": "stack test"}]}),
            201)  # fmt: skip
        verify = {"accepted": True, "note": "ok"}
        _ok(live.client.post(f"/v1/reports/R-2025-{E1}/verification",
                             headers=live.headers("verifier"), json=verify))  # fmt: skip
        _ok(live.client.put(f"/v1/periods/2025/allocations/{E1}", headers=regulator, json={
            "method": "grandfathering",
            "params": {"base_emissions_t": ["900"], "decline_factor": "1"}}))  # fmt: skip
        _ok(live.client.post("/v1/periods/2025/close", headers=regulator))
        _ok(live.client.post("/v1/periods/2025/enforce", headers=regulator, json={"force": True}))
        # Graded too: a period without an evaluation would be a 404 (a console error).
        _ok(live.client.put("/v1/sectors/steel/benchmarks", headers=regulator, json={
            "benchmarks": {"output_value": "100", "energy_intensity": "0.3",
                           "carbon_intensity": "5", "pollutants": {"so2": "0.0005"}}}))  # fmt: skip
        _ok(live.client.post("/v1/periods/2025/evaluate", headers=regulator, json={}))
        periods = _ok(live.client.get(f"/v1/enterprises/{E1}/compliance", headers=regulator))
        (h1,) = [p for p in periods["periods"] if p["period"] == "2025"]
        assert (h1["verified_emissions_kg"], h1["quota_kg"]) == ("1000500", "900000"), h1
        assert h1["status"] == "shortfall" and h1["penalty_fen"] > 0, h1

        board.sign_in("trader1")
        # The tape tells the time in Shanghai (the trade: 2025-11-25 10:00:01 there),
        # not New York's 21:00:01 of the day before.
        tape_row = page.locator(f'#tape tr[data-trade-id="{trade_id}"]')
        expect(tape_row.locator("td").first).to_have_text("10:00:01")
        # Every order list and the fills say which instrument; a market order shows
        # "market" and its average fill price, not the band collar it was sent at.
        open_row = page.locator(f'#open-orders tr[data-order-id="{resting["order_id"]}"]')
        expect(open_row.locator("td").nth(1)).to_have_text(SYMBOL)
        market_row = page.locator(f'#orders tr[data-order-id="{market_id}"]')
        expect(market_row.locator("td").nth(2)).to_have_text(SYMBOL)
        expect(market_row.locator('td[data-market="true"]')).to_have_text("market avg 60.00")
        fill_row = page.locator(f'#fills tr[data-trade-id="{trade_id}"]')
        expect(fill_row.locator("td").nth(2)).to_have_text(SYMBOL)
        expect(fill_row).to_contain_text("taker")
        # Compliance in tonnes and CNY, with its status in view.
        row = page.locator('#compliance tr[data-period="2025"]')
        expect(row.locator('[data-testid="compliance-verified"]')).to_have_text("1,000.5")
        expect(row.locator('[data-testid="compliance-quota"]')).to_have_text("900")
        penalty = h1["penalty_fen"]
        expect(row.locator('[data-testid="compliance-penalty"]')).to_have_text(
            f"{penalty // 100:,}.{penalty % 100:02d}"
        )
        status = row.locator('[data-testid="compliance-status"]')
        expect(status).to_have_text("shortfall")
        card = page.locator("#compliance").bounding_box()
        assert card is not None
        for shown in (status, row.locator('[data-testid="compliance-penalty"]')):
            cell = shown.bounding_box()  # the last column too: none is cut off
            assert cell and cell["x"] + cell["width"] <= card["x"] + card["width"], (card, cell)

        # An input the evaluation could not form (no previous period to grow from) is a
        # dash, not the word "undefined".
        expect(page.locator('[data-testid="evaluation-total"]')).to_be_visible()
        expect(page.locator("#evaluation")).to_contain_text("— (none)")
        expect(page.locator("#evaluation")).not_to_contain_text("undefined")

        # The next day (its first command closes 2025-11-25): 205 refused orders, more
        # than the orders list's page of 200, all newer than the trade.
        clock = iter(range(START + DAY_US, START + 2 * DAY_US, 1_000))
        app: Any = live.client.app
        app.state.gateway.clock = lambda: next(clock)
        batch = [{"client_order_id": f"far-{n}", "enterprise_id": E1, "instrument": SYMBOL,
                  "side": "buy", "type": "limit", "quantity": 1, "price": 1}
                 for n in range(205)]  # fmt: skip
        answer = live.client.post("/v1/orders/batch", headers=live.headers("trader1"),
                                  json={"orders": batch})  # fmt: skip
        assert answer.status_code < 300, answer.text
        page_of_orders = _ok(live.client.get(f"/v1/orders?enterprise_id={E1}", headers=regulator))
        assert market_id not in {o["order_id"] for o in page_of_orders["orders"]}
        assert {o["status"] for o in page_of_orders["orders"][:205]} == {"rejected"}

        page.reload()
        expect(page.locator("#whoami")).to_have_text(f"trader · {E1}")
        expect(page.locator("#orders tr[data-order-id]").first).to_have_attribute(
            "data-status", "rejected"
        )
        expect(fill_row.locator("td").nth(2)).to_have_text(SYMBOL)
        expect(fill_row.locator("td").nth(1)).to_have_text(str(market_id))
        # The day's candle is the 25th's in Shanghai, whatever the browser's zone.
        page.click('#interval-switch button[data-interval="1d"]')
        expect(page.locator("#candles")).to_have_attribute("data-count", "1")
        expect(page.locator("#candles text.axis")).to_have_text("2025-11-25")
        expect(page.locator("#candles g title")).to_contain_text("2025-11-25")
        _screenshot(page, "dashboard-trader-ny.png")
    assert board.problems == []  # over the whole run, closing the page included
