"""Cron schedules: validation and the next/previous tick, always in the DAG's timezone.

`now` is never read here; callers pass the instant they care about (Unix epoch seconds).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from flowforge.core.errors import shown

SHORTCUTS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
FORMS = (
    "5 fields (minute hour day-of-month month day-of-week), "
    "6 fields with seconds first (second minute hour day-of-month month day-of-week), "
    f"or one of {', '.join(SHORTCUTS)}"
)
# The scheduler evaluates a schedule each time it fires: a cron line has no use for more.
MAX_SCHEDULE_CHARS = 1000
# croniter's own extensions that make a schedule move: `R` picks a new random time each time it
# is read (a daily `0 R * * *` ran 23 times a day), `H` needs a hash key FlowForge does not give.
_MOVING = {"R": "R (random)", "H": "H (hashed)"}


def _normalise(expr: str) -> str:
    """Collapse whitespace and lower-case shortcuts, so `@Daily ` and `@daily` are one schedule."""
    expr = " ".join(expr.split())
    return expr.lower() if expr.startswith("@") else expr


class Ticks:
    """One schedule, parsed once: its ticks from any instant on, in its timezone.

    Parsing a cron line costs more than finding its next tick, so the scheduler keeps one of
    these per scheduled DAG. Not for sharing between threads: each evaluation moves one iterator.
    """

    def __init__(self, expr: str, timezone: str) -> None:
        self._tz = ZoneInfo(timezone)
        # A sixth field is seconds, and it comes first (croniter's default is last): see the README's DAG file.
        self._it = croniter(_normalise(expr), datetime.fromtimestamp(0, self._tz), second_at_beginning=True)

    def _from(self, start: float) -> croniter:
        """The iterator, set at `start`: one evaluation of the schedule."""
        # A tz-aware start makes croniter work in local wall-clock time, which is what a
        # "02:30 every day" schedule means, including across DST changes.
        self._it.set_current(datetime.fromtimestamp(start, self._tz), force=True)
        return self._it

    def next_after(self, after: float) -> float:
        """The first tick strictly after `after` (epoch seconds)."""
        return float(self._from(after).get_next(float))

    def latest_at(self, at: float) -> float:
        """The latest tick at or before `at` (epoch seconds)."""
        # croniter's get_prev is strictly before, so `at` itself is checked by stepping forward once.
        before = float(self._from(at).get_prev(float))
        candidate = self.next_after(before)
        return candidate if candidate <= at else before

    def due(self, after: float, now: float, *, catchup: bool, limit: int) -> list[float]:
        """The ticks in (after, now] that need a run, oldest first, at most `limit` (see `due_ticks`)."""
        if limit <= 0:
            return []
        if not catchup:
            latest = self.latest_at(now)
            return [latest] if latest > after else []
        ticks: list[float] = []
        it = self._from(after)
        while len(ticks) < limit:
            tick = float(it.get_next(float))
            if tick > now:
                break
            ticks.append(tick)
        return ticks


def _moving_part(fields: list[str]) -> str | None:
    """The R or H (with its range or step) in a cron expression's fields, or None."""
    for f in fields:
        for part in f.split(","):
            head = part.split("/", 1)[0].upper()
            for letter, what in _MOVING.items():
                if head == letter or head.startswith(letter + "("):
                    return what
    return None


def validate_schedule(expr: str, timezone: str = "UTC") -> str | None:
    """None when `expr` is a schedule FlowForge accepts, else a plain sentence saying why not."""
    if not isinstance(expr, str) or not expr.strip():
        return f"a schedule must be a cron expression: {FORMS}"
    if len(expr) > MAX_SCHEDULE_CHARS:
        return f"the schedule is {len(expr):,} characters long; a schedule has at most {MAX_SCHEDULE_CHARS:,}"
    text = _normalise(expr)
    if text.startswith("@"):
        if text not in SHORTCUTS:
            return f"unknown schedule shortcut '{shown(expr.strip())}'; use {', '.join(SHORTCUTS)} or a cron expression"
    else:
        fields = text.split(" ")
        if len(fields) not in (5, 6):
            # croniter would read a 7th field as a year; a DAG file's schedule has 5 or 6 fields.
            n = len(fields)
            return f"'{shown(text)}' has {n} field{'s' if n != 1 else ''}; a schedule must have {FORMS}"
        moving = _moving_part(fields)
        if moving:
            return (
                f"'{shown(text)}' uses {moving}, which FlowForge does not support: a schedule fires at "
                "fixed times; write the minute and hour you want (e.g. '17 3 * * *')"
            )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. a directory such as "Europe"
        return f"unknown timezone '{shown(timezone)}'"
    try:
        # 2001-01-01: a fixed start keeps validation pure and repeatable.
        Ticks(text, timezone).next_after(978307200.0)
    except CroniterBadDateError:
        return f"'{shown(text)}' never matches a real date (for example 30 February)"
    except (CroniterError, ValueError, KeyError, IndexError) as e:
        # croniter's own wording ("[61 * * * *] is not acceptable, out of range") names the bad part.
        return f"'{shown(text)}' is not a valid cron expression: {shown(str(e), 200)}; a schedule must have {FORMS}"
    return None


def next_fire(expr: str, timezone: str, after: float) -> float:
    """The first tick of `expr` strictly after `after` (epoch seconds), judged in `timezone`."""
    return Ticks(expr, timezone).next_after(after)


def previous_fire(expr: str, timezone: str, at: float) -> float:
    """The latest tick of `expr` at or before `at` (epoch seconds), judged in `timezone`."""
    return Ticks(expr, timezone).latest_at(at)


def due_ticks(
    expr: str, timezone: str, after: float, now: float, *, catchup: bool, limit: int
) -> list[float]:
    """The ticks in (after, now] that need a run, oldest first, at most `limit` of them.

    With catch-up every missed tick is due; without it only the latest one is (a scheduler
    that was down for a day makes one run, not twenty-four).
    """
    return Ticks(expr, timezone).due(after, now, catchup=catchup, limit=limit)


def ticks_between(expr: str, timezone: str, start: float, end: float, limit: int) -> list[float]:
    """Every tick in [start, end], oldest first; ValueError when there are more than `limit`."""
    ticks: list[float] = []
    it = Ticks(expr, timezone)._from(start - 1e-3)  # so that a tick exactly at `start` counts
    while True:
        tick = float(it.get_next(float))
        if tick > end:
            return ticks
        if len(ticks) == limit:
            raise ValueError(f"the range holds more than {limit} ticks; choose a shorter one")
        ticks.append(tick)


def iso_utc(ts: float) -> str:
    """Epoch seconds as ISO-8601 UTC (`2024-05-01T12:00:00Z`)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_instant(text: str, timezone: str) -> float:
    """An ISO-8601 date or date-time as epoch seconds; without an offset it is read in `timezone`.

    Raises ValueError with a plain sentence for anything else.
    """
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"'{text}' is not an ISO-8601 date or date-time (e.g. 2026-01-31 or 2026-01-31T06:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.timestamp()
