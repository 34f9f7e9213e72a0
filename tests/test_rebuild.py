"""Rebuilding read models in worker processes, and two projectors over one store: the
tables always come out as one projector, entry by entry, makes them."""

from __future__ import annotations

import pytest

from infra.store import open_store
from projections import all_projections
from projections.parallel import split
from projections.projector import ProjectionMoved, Projector, tracking_positions
from tests.test_projections import _checksums, _history


def test_rebuild_in_worker_processes_equals_a_rebuild_in_one(store_url: str) -> None:
    with open_store(store_url) as store:
        _history(store)
        head = store.journal.head()[0]
        live = Projector(store, all_projections(), batch=250)
        live.catch_up()
        expected = _checksums(store)
        for workers, rebuild_batch in ((3, 500), (1, 500), (2, None)):
            projector = Projector(store, all_projections(), 500, rebuild_batch=rebuild_batch)
            assert projector.rebuild(workers=workers) == head
            assert _checksums(store) == expected
            assert set(tracking_positions(store.sql).values()) == {head}
            # The rebuilding projector carries on from what the workers committed.
            assert projector.positions == dict.fromkeys(projector.positions, head)


def test_workers_get_projections_of_about_equal_cost() -> None:
    projections = all_projections()
    groups = split(projections, 2)
    assert sorted(p.name for g in groups for p in g) == sorted(p.name for p in projections)
    costs = [sum(p.cost for p in group) for group in groups]
    assert max(costs) - min(costs) <= max(p.cost for p in projections)
    assert len(split(projections, 99)) == len(projections)
    assert split(projections, 1) == [sorted(projections, key=lambda p: (-p.cost, p.name))]


def test_a_second_projector_cannot_commit_over_the_first(store_url: str) -> None:
    """Two projector processes on one store (say a restart while the old one still
    runs): a batch computed from a position another projector has since moved past is
    refused, and the loser carries on from the tables."""
    with open_store(store_url) as store:
        _history(store)
        clean = Projector(store, all_projections(), batch=300)
        clean.catch_up()
        expected = _checksums(store)
        with store.sql.transaction() as cursor:
            for projection in all_projections():
                for table in projection.tables:
                    cursor.execute(f"DELETE FROM {table.name}")
            cursor.execute("DELETE FROM rm_tracking")
        first = Projector(store, all_projections(), batch=300)
        second = Projector(store, all_projections(), batch=300)
        assert first.step()
        with pytest.raises(ProjectionMoved):
            second.step()
        # The refused batch left nothing behind, and the loser reloaded.
        assert second.positions == first.positions
        refused = 0
        while True:
            read = 0
            for projector in (second, first):
                try:
                    read += projector.step()
                except ProjectionMoved:
                    refused += 1
            if not read:
                break
        assert refused > 3
        assert set(tracking_positions(store.sql).values()) == {store.journal.head()[0]}
        assert _checksums(store) == expected


def test_a_rebuild_sized_batch_of_a_second_projector_is_refused_too(store_url: str) -> None:
    """The same refusal for a batch too large for one pipeline (on PostgreSQL it goes
    statement by statement, with COPY): the position check is still the first thing in
    its transaction, and a loser's batch leaves nothing behind."""
    with open_store(store_url) as store:
        _history(store)
        _history(store)  # twice: more ledger rows than one pipeline takes
        head = store.journal.head()[0]
        clean = Projector(store, all_projections(), batch=300)
        clean.catch_up()
        expected = _checksums(store)
        assert clean.step() == 0
        assert len(store.sql.query("SELECT 1 FROM rm_ledger")) > 10_000  # COPY-sized
        with store.sql.transaction() as cursor:
            for projection in all_projections():
                for table in projection.tables:
                    cursor.execute(f"DELETE FROM {table.name}")
            cursor.execute("DELETE FROM rm_tracking")
        # A page with room to spare: a full one would leave its last command for later.
        first = Projector(store, all_projections(), batch=head + 1)
        second = Projector(store, all_projections(), batch=head + 1)
        assert first.step() == head  # the whole journal, one transaction
        with pytest.raises(ProjectionMoved):
            second.step()
        assert second.positions == first.positions
        assert second.step() == 0
        assert set(tracking_positions(store.sql).values()) == {head}
        assert _checksums(store) == expected
