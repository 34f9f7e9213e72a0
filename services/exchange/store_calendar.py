"""The trading calendar a store's journal is produced under, recorded in the store.

The calendar is part of the rules: the same intake log run under another calendar gives
another journal (an order at 00:30 is accepted by the always-open demo calendar and
refused as ``market_closed`` by cn-ets). Re-execution (`carbonx verify`) and
point-in-time replay (`carbonx replay`) must therefore run under the calendar the
journal was produced with, and an operator should not have to remember it: the first
engine to run on a store records its calendar there, readers default to it, and an
engine asked to continue a journal under another calendar is refused rather than
quietly mixing two sets of rules in one history.
"""

from __future__ import annotations

from infra.sqldb import Cursor
from infra.store import Store

__all__ = [
    "DEFAULT_CALENDAR",
    "CalendarMismatch",
    "calendar_for_engine",
    "calendar_to_read",
    "recorded",
]

#: The calendar of a store that has none recorded (RULES.md's trading sessions).
DEFAULT_CALENDAR = "cn-ets"

_CREATE = "CREATE TABLE IF NOT EXISTS carbonx_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)"


class CalendarMismatch(ValueError):
    """An engine would continue a journal under another calendar than it was produced with."""


def _recorded_in(cursor: Cursor) -> str | None:
    cursor.execute(_CREATE)
    cursor.execute("SELECT value FROM carbonx_settings WHERE name = %s", ("calendar",))
    row = cursor.fetchone()
    return None if row is None else str(row[0])


def recorded(store: Store) -> str | None:
    """The calendar recorded in `store`, or None (no engine has run on it yet)."""
    with store.sql.transaction() as cursor:
        return _recorded_in(cursor)


def calendar_to_read(store: Store, asked: str | None) -> str:
    """The calendar to verify or replay `store` under: `asked` when given (checking a
    journal under other rules is a legitimate question), else the recorded one."""
    return asked or recorded(store) or DEFAULT_CALENDAR


def calendar_for_engine(store: Store, asked: str | None) -> str:
    """The calendar for an engine about to run on `store`, recorded there.

    Without `asked`, the recorded calendar (or the default on a new store). With it,
    `asked` is recorded if the store has none yet or its journal is still empty;
    otherwise it must be the recorded one (:class:`CalendarMismatch`).
    """
    with store.sql.transaction() as cursor:
        current = _recorded_in(cursor)
        chosen = asked or current or DEFAULT_CALENDAR
        if current is not None and chosen != current and store.journal.position > 0:
            raise CalendarMismatch(
                f"this store's journal was produced under the {current!r} calendar; an "
                f"engine under {chosen!r} would continue it under other rules (use "
                f"--calendar {current}, or a new store)"
            )
        if chosen != current:
            cursor.execute(
                "INSERT INTO carbonx_settings (name, value) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                ("calendar", chosen),
            )
    return chosen
