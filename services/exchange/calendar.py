"""Trading calendars: which instants are in a session, and which trading day they belong to.

Time is integer microseconds since the Unix epoch (UTC), as carried by commands.
Asia/Shanghai has kept UTC+8 without daylight saving since 1991, so local time is plain
integer arithmetic: no time-zone database, nothing that could differ between machines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

__all__ = [
    "ALWAYS",
    "CN_ETS",
    "Calendar",
    "DaySchedule",
    "SessionCalendar",
    "calendar_named",
    "iso_day",
]

US_PER_MINUTE = 60_000_000
US_PER_DAY = 86_400_000_000
SHANGHAI_OFFSET_US = 8 * 60 * US_PER_MINUTE
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def iso_day(day: int) -> str:
    """The ISO date of a day number (days since 1970-01-01, local)."""
    return date.fromordinal(_EPOCH_ORDINAL + day).isoformat()


class Calendar(Protocol):
    name: str

    def day(self, time: int) -> int:
        """The local day number (days since 1970-01-01) `time` falls in."""

    def continuous_open(self, time: int) -> bool:
        """True when continuous trading is open at `time`."""

    def block_open(self, time: int) -> bool:
        """True when block trades are accepted at `time`."""

    def day_closed(self, time: int) -> bool:
        """True when the trading day of `time` is over (day orders expire, close is set)."""


@dataclass(frozen=True)
class SessionCalendar:
    """A weekly calendar of sessions in a fixed UTC offset, with holidays."""

    name: str
    continuous: tuple[tuple[int, int], ...]  # (start, end) minutes after local midnight
    block: tuple[tuple[int, int], ...]
    close_minute: int  # the day ends here (day orders expire); 1440 = midnight
    weekdays_only: bool = True
    holidays: frozenset[int] = field(default_factory=frozenset)  # day numbers
    offset_us: int = SHANGHAI_OFFSET_US

    def day(self, time: int) -> int:
        return (time + self.offset_us) // US_PER_DAY

    def _trading_day(self, day: int) -> bool:
        if day in self.holidays:
            return False
        # 1970-01-01 was a Thursday: (day + 3) % 7 is 0 on Mondays.
        return not self.weekdays_only or (day + 3) % 7 < 5

    def _minute(self, time: int) -> int:
        return (time + self.offset_us) % US_PER_DAY // US_PER_MINUTE

    def _in(self, time: int, sessions: tuple[tuple[int, int], ...]) -> bool:
        if not self._trading_day(self.day(time)):
            return False
        minute = self._minute(time)
        return any(start <= minute < end for start, end in sessions)

    def continuous_open(self, time: int) -> bool:
        return self._in(time, self.continuous)

    def block_open(self, time: int) -> bool:
        return self._in(time, self.block)

    def day_closed(self, time: int) -> bool:
        return self._minute(time) >= self.close_minute

    def schedule(self, day: int) -> DaySchedule:
        """The absolute session windows of local `day`, computed once per day.

        Checking an instant against a day's schedule is a comparison or two, where
        the general methods above redo the calendar arithmetic every time.
        """
        midnight = day * US_PER_DAY - self.offset_us
        trading = self._trading_day(day)

        def windows(sessions: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
            if not trading:
                return ()
            return tuple(
                (midnight + a * US_PER_MINUTE, midnight + b * US_PER_MINUTE) for a, b in sessions
            )

        return DaySchedule(
            day=day,
            trading=trading,
            continuous=windows(self.continuous),
            block=windows(self.block),
            closes_at=midnight + self.close_minute * US_PER_MINUTE,
            ends_at=midnight + US_PER_DAY,
        )


@dataclass(frozen=True, slots=True)
class DaySchedule:
    """One local day of a calendar in absolute µs: sessions, the close, the day's end."""

    day: int
    trading: bool
    continuous: tuple[tuple[int, int], ...]
    block: tuple[tuple[int, int], ...]
    closes_at: int
    ends_at: int

    # Explicit loops: any() over a generator costs ~3x here, on the engine's hot path.
    def continuous_open(self, time: int) -> bool:
        for start, end in self.continuous:  # noqa: SIM110
            if start <= time < end:
                return True
        return False

    def block_open(self, time: int) -> bool:
        for start, end in self.block:  # noqa: SIM110
            if start <= time < end:
                return True
        return False


#: The Chinese national carbon market's hours (RULES.md): 09:30–11:30 and 13:00–15:00
#: continuous, 13:00–15:00 block trades, Monday to Friday.
CN_ETS = SessionCalendar(
    name="cn-ets",
    continuous=((9 * 60 + 30, 11 * 60 + 30), (13 * 60, 15 * 60)),
    block=((13 * 60, 15 * 60),),
    close_minute=15 * 60,
)

#: Always open (demos, tests, 24/7 voluntary markets); the trading day ends at midnight.
ALWAYS = SessionCalendar(
    name="always",
    continuous=((0, 24 * 60),),
    block=((0, 24 * 60),),
    close_minute=24 * 60,
    weekdays_only=False,
)


def calendar_named(name: str) -> SessionCalendar:
    calendars = {CN_ETS.name: CN_ETS, ALWAYS.name: ALWAYS}
    try:
        return calendars[name]
    except KeyError:
        raise ValueError(f"unknown calendar {name!r}: use one of {sorted(calendars)}") from None
