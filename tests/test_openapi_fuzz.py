"""Schemathesis over /openapi.json against the live app: generated requests (valid and
invalid) for every operation, as a regulator and as a trader. No answer may be a 5xx,
and every answer must match the documented schema, status codes and content types."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.live import Live, live_system

# Not checked: "schema-valid data is accepted". A schema cannot say that an instrument
# must be listed or an enterprise registered; such requests rightly get 422 or 404.


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "carbonx.db"
    with live_system(f"sqlite:///{path}", wait_timeout=2.0) as system:
        # Something to look at: a resting order and a trade.
        system.order("trader1", "E-DEMO-1", side="sell", quantity=50, price=6_000)
        system.order("trader2", "E-DEMO-2", side="buy", quantity=10, price=6_000)
        yield system


FUZZ = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


def _fuzz(live: Live, role: str) -> int:
    """Every operation but the endless stream; how many were exercised."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", live.client.app)
    headers = live.headers(role)
    exercised = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/v1/stream":
            continue

        @FUZZ
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            if case.headers:
                case.headers.pop("Idempotency-Key", None)
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        check()
        exercised += 1
    return exercised


@pytest.mark.timeout(600)
def test_as_a_regulator(live: Live) -> None:
    assert _fuzz(live, "regulator") >= 25


@pytest.mark.timeout(600)
def test_as_a_trader(live: Live) -> None:
    assert _fuzz(live, "trader1") >= 25
