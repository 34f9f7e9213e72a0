"""Read models: consumers of the journal, each owning tables a BI tool can query.

Each projection keeps its own tracking position, written in the same transaction as its
rows, and can be rebuilt from zero (:class:`projections.projector.Projector`).
"""

from __future__ import annotations

from projections.balances import Balances
from projections.base import Entry, Projection, Table
from projections.holdings import Holdings
from projections.market import Market
from projections.orders import Orders, Outcomes
from projections.registry import Registry
from projections.surveillance import Surveillance

__all__ = ["Entry", "Projection", "Table", "all_projections"]


def all_projections() -> list[Projection]:
    """A fresh instance of every read model carbonx maintains."""
    return [
        Balances(),
        Holdings(),
        Orders(),
        Outcomes(),
        Market(),
        Surveillance(),
        Registry(),
    ]
