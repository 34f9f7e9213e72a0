"""What every read model is: a consumer of the journal that owns some tables.

A projection keeps the state it needs in memory, applies journal entries to it one at
a time (:meth:`Projection.apply`), and writes what changed (:meth:`Projection.flush`)
inside the transaction that also records how far it got. That transaction is the whole
exactly-once story: rows and position commit together or not at all, so a projection
killed mid-batch resumes from its last committed position with no gap and no duplicate.

Tables are declared, not hand-created, so that a rebuild can drop and recreate exactly
what a projection owns, and the same declaration serves SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from events.codec import Decoded
from infra.sqldb import Cursor, SqlDatabase

__all__ = ["Entry", "Projection", "Table"]


#: One journal entry as projections see it: ``position``, ``time`` (µs since the epoch,
#: from the command that caused it), ``cause`` (that command's intake position, or None)
#: and ``event``. The codec's own decoded tuple, so that a rebuild makes one object per
#: entry, not two.
Entry = Decoded


@dataclass(frozen=True)
class Table:
    """A read-model table: columns as (name, SQL type), its key, and extra indexes."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = field(default=())

    @functools.cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def create(self, indexes: bool = True, dialect: str = "postgres") -> list[str]:
        """`dialect` "sqlite": a keyed table is clustered on its key (``WITHOUT ROWID``),
        so a row is written to one B-tree, not to a rowid table and a key index: the
        projector's commits, under the store's one write lock, are mostly such writes."""
        columns = [f"{name} {kind}" for name, kind in self.columns]
        clustered = ""
        if self.key:
            columns.append(f"PRIMARY KEY ({', '.join(self.key)})")
            clustered = " WITHOUT ROWID" if dialect == "sqlite" else ""
        statements = [f"CREATE TABLE IF NOT EXISTS {self.name} ({', '.join(columns)}){clustered}"]
        return statements + (self.create_indexes() if indexes else [])

    def create_indexes(self) -> list[str]:
        """The secondary indexes (a rebuild creates them after the bulk load: faster)."""
        return [
            f"CREATE INDEX IF NOT EXISTS {self.name}_{'_'.join(index)}_idx "
            f"ON {self.name} ({', '.join(index)})"
            for index in self.indexes
        ]


class Projection:
    """Base class: dispatch by event class to ``on_<EventName>`` methods.

    Subclasses declare ``name`` and ``tables``, keep their in-memory state in
    :meth:`reset`, rebuild it from their tables in :meth:`load` (after a restart), and
    write their pending changes in :meth:`flush`.
    """

    name: ClassVar[str]
    tables: ClassVar[tuple[Table, ...]]
    #: Relative rebuild cost (measured), to spread projections evenly over workers.
    cost: ClassVar[int] = 10

    def __init__(self) -> None:
        self._dispatch: dict[str, Callable[[Entry], None] | None] = {}
        self.reset()

    def handler(self, type_name: str) -> Callable[[Entry], None] | None:
        """The method that applies entries of `type_name`; None if this projection
        ignores them (the projector then does not even decode them for it). A subclass
        with its own :meth:`apply` sees every entry."""
        try:
            return self._dispatch[type_name]
        except KeyError:
            found: Callable[[Entry], None] | None
            if type(self).apply is not Projection.apply:
                found = self.apply
            else:
                found = getattr(self, f"on_{type_name}", None)
            self._dispatch[type_name] = found
            return found

    def apply(self, entry: Entry) -> None:
        handler = self.handler(entry.event.type_name)
        if handler is not None:
            handler(entry)

    def reset(self) -> None:
        """Forget all in-memory state (before a rebuild from position 0)."""

    def load(self, db: SqlDatabase) -> None:
        """Rebuild the in-memory state from this projection's tables."""

    def flush(self, cursor: Cursor) -> None:
        """Write every pending change. `cursor` is a write plan (:class:`infra.sqldb.WritePlan`)
        that the projector replays inside the batch's transaction: write, never read."""

    # -- helpers for subclasses

    @staticmethod
    def write_upserts(cursor: Cursor, table: Table, rows: Iterable[Sequence[Any]]) -> None:
        batch = rows if isinstance(rows, list) else list(rows)
        if batch:
            cursor.upsert_rows(table.name, table.column_names, table.key, batch)

    @staticmethod
    def write_deletes(cursor: Cursor, table: Table, keys: Iterable[Sequence[Any]]) -> None:
        batch = keys if isinstance(keys, list) else list(keys)
        if batch:
            cursor.delete_rows(table.name, table.key, batch)
