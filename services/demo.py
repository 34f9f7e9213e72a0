"""Demo data for `carbonx serve --demo`: a small zone to click around in.

Seeded through the intake log like any other input, so the demo's balances are real
engine state with a real journal behind them: an instrument, three enterprises
registered and approved through the registry with cash and credits, and the 2025
compliance period open. Only an empty store is seeded.
"""

from __future__ import annotations

from events import commands as c
from events import registry as r
from events.base import Event
from infra.store import Store
from services.exchange.intake import Intake
from services.gateway.auth import create_token

__all__ = ["DEMO_ENTERPRISES", "DEMO_INSTRUMENT", "demo_tokens", "seed_demo"]

DEMO_INSTRUMENT = "HCC-2025"
DEMO_ENTERPRISES = ("E-DEMO-1", "E-DEMO-2", "E-DEMO-3")
#: Name, sector and a valid unified social credit code (GB 32100 check character).
DEMO_PROFILES = (
    ("Hefei Green Steel Co.", "steel", "91340100MA2NDEM01R"),
    ("Hefei Cement Works", "cement", "91340100MA2NDEM02W"),
    ("Zone Electronics Ltd.", "electronics", "91340100MA2NDEM030"),
)
#: 2025-11-25 10:00 Asia/Shanghai, in µs: demo commands carry a fixed, honest time.
DEMO_TIME = 1_764_036_000_000_000


def seed_demo(store: Store) -> bool:
    """Seed the demo zone into an empty store; False if it already had commands."""
    if store.intake.head()[0] != 0:
        return False
    commands: list[Event] = [
        c.ListInstrument(symbol=DEMO_INSTRUMENT, vintage=2025, reference_price=6_000, fee_bps=5)
    ]
    for index, enterprise in enumerate(DEMO_ENTERPRISES, start=1):
        name, sector, code = DEMO_PROFILES[index - 1]
        commands += [
            # Registered and approved through the registry: approval opens the accounts.
            r.RegisterEnterprise(
                enterprise_id=enterprise, name=name, sector=sector, credit_code=code
            ),
            r.ChangeEnterpriseStatus(enterprise_id=enterprise, action="approve"),
            c.DepositCash(enterprise_id=enterprise, amount=index * 50_000_000, reference="demo"),
            c.IssueCredits(
                enterprise_id=enterprise,
                instrument=DEMO_INSTRUMENT,
                quantity=index * 10_000,
                reason="demo allocation",
            ),
        ]
    commands.append(r.OpenPeriod(period="2025"))
    Intake(store).submit([(command, DEMO_TIME) for command in commands])
    return True


def demo_tokens(store: Store) -> list[tuple[str, str | None, str]]:
    """Fresh tokens for every demo role: (role, enterprise, token). Only hashes are
    stored, so each start of the demo prints new ones."""
    wanted: list[tuple[str, str | None]] = [
        ("operator", None),
        ("regulator", None),
        ("verifier", None),
        *(("trader", e) for e in DEMO_ENTERPRISES),
        ("viewer", DEMO_ENTERPRISES[0]),
    ]
    return [(role, eid, create_token(store.sql, role, eid, "demo")) for role, eid in wanted]
