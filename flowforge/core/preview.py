"""Schedule preview: the next ticks of a cron schedule, with what daylight-saving changes do to them.

The ticks are the scheduler's own (`schedule.next_fire`); each is annotated when a clock change
moved it, skipped a wall-clock time before it, or makes its wall-clock time happen twice. Also the
warnings a valid schedule still deserves (`schedule_warnings`). Pure: callers pass the instant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from flowforge.core.schedule import _normalise, iso_utc, next_fire

# A preview is for reading: a hundred ticks is already more than a screen.
MAX_PREVIEW = 100
# Wall-clock times named when a clock change removed them ("02:00, 02:20, 02:40"); past that,
# "and more". Between two ticks only removed times can match, so a few looks find them; the
# bound keeps a preview's work fixed (a per-second schedule loses 3600 times in a gap).
MAX_GAP_TIMES = 3
MAX_GAP_LOOKS = 100


@dataclass(frozen=True)
class Tick:
    """One scheduled tick: the instant, its wall-clock time in the DAG's zone, and a DST note."""

    at: str  # ISO-8601 UTC
    local: str  # ISO-8601 with the zone's offset
    zone: str  # the zone's abbreviation then (CET, CEST, EST, ...)
    dst: str | None  # "moved", "skipped", "repeated" or None
    note: str | None


def _exists(wall: datetime, tz: ZoneInfo) -> bool:
    """A naive wall-clock time exists in `tz` (it is not in a spring-forward gap)."""
    there = wall.replace(tzinfo=tz)
    return there.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


def _ambiguous(wall: datetime, tz: ZoneInfo) -> bool:
    """A naive wall-clock time happens twice in `tz` (fall-back hour)."""
    return wall.replace(tzinfo=tz, fold=0).utcoffset() != wall.replace(tzinfo=tz, fold=1).utcoffset()


def _hm(wall: datetime) -> str:
    return wall.strftime("%H:%M:%S" if wall.second else "%H:%M")


def _missing(text: str, after: datetime, before: datetime, tz: ZoneInfo) -> list[datetime]:
    """Wall-clock matches in (after, before) that do not exist in `tz`: at most one past the few named."""
    if before - after > timedelta(hours=3):
        # Two ticks more than a gap apart: look only in the hours before the later one.
        after = before - timedelta(hours=3)
    found: list[datetime] = []
    it = croniter(text, after, second_at_beginning=True)
    for _ in range(MAX_GAP_LOOKS):
        wall = it.get_next(datetime)
        if wall >= before or len(found) > MAX_GAP_TIMES:
            break
        if not _exists(wall, tz):
            found.append(wall)
    return found


def _gap_note(text: str, prev_wall: datetime, wall: datetime, tz: ZoneInfo) -> tuple[str, str] | None:
    missing = _missing(text, prev_wall, wall, tz)
    if not missing:
        return None
    one = len(missing) == 1
    names = ", ".join(_hm(w) for w in missing[:MAX_GAP_TIMES]) + (
        " and more" if len(missing) > MAX_GAP_TIMES else ""
    )
    gone = (
        f"{names} {'does' if one else 'do'} not exist on {missing[0].date().isoformat()} (clocks go forward)"
    )
    if croniter.match(text, wall, second_at_beginning=True):
        return "skipped", f"{gone}: no run for {'it' if one else 'them'}"
    return "moved", f"{gone}: this run takes its place"


def _repeat_note(text: str, timezone: str, at: float, wall: datetime, tz: ZoneInfo) -> str:
    local = datetime.fromtimestamp(at, tz)
    other = wall.replace(tzinfo=tz, fold=1 - local.fold).timestamp()
    # Both occurrences run when the scheduler's own next tick after the other lands on it.
    both = abs(next_fire(text, timezone, other - 0.5) - other) < 0.5
    which = "second" if local.fold else "first"
    tail = "FlowForge runs it both times" if both else f"FlowForge runs only the {which}"
    return f"{_hm(wall)} happens twice on {wall.date().isoformat()} (clocks go back): this is the {which}; {tail}"


def preview(expr: str, timezone: str, after: float, count: int) -> list[Tick]:
    """The first `count` ticks of a valid `expr` strictly after `after`, annotated for DST changes."""
    text = _normalise(expr)
    tz = ZoneInfo(timezone)
    ticks: list[Tick] = []
    prev_wall = datetime.fromtimestamp(after, tz).replace(tzinfo=None)
    at = after
    for _ in range(max(0, min(count, MAX_PREVIEW))):
        at = next_fire(text, timezone, at)
        local = datetime.fromtimestamp(at, tz)
        wall = local.replace(tzinfo=None)
        dst, note = None, None
        gap = _gap_note(text, prev_wall, wall, tz) if wall > prev_wall else None
        if gap:
            dst, note = gap
        elif _ambiguous(wall, tz):
            dst, note = "repeated", _repeat_note(text, timezone, at, wall, tz)
        ticks.append(Tick(iso_utc(at), local.isoformat(), local.tzname() or "", dst, note))
        prev_wall = wall
    return ticks


def preview_of(schedule: str | None, timezone: str, after: float, count: int) -> dict[str, Any]:
    """A schedule's ticks (none without a schedule) and warnings, as the API's preview answer has them."""
    ticks = preview(schedule, timezone, after, count) if schedule else []
    return {
        "schedule": schedule,
        "timezone": timezone,
        "ticks": [asdict(t) for t in ticks],
        "warnings": schedule_warnings(schedule),
    }


def schedule_warnings(expr: str | None) -> list[str]:
    """What a valid schedule probably gets wrong; [] when nothing.

    A 6-field schedule reads seconds first, so `* 5 * * * *` (often a 5-field line with a `*`
    put in front) fires every second of minute 5, sixty runs an hour.
    """
    if not expr:
        return []
    fields = _normalise(expr).split(" ")
    if len(fields) != 6 or fields[0] not in ("*", "*/1"):
        return []
    if fields[1] == "*" and fields[2] == "*":
        return []  # every second, on purpose
    fixed = f"0 {' '.join(fields[1:])}"
    return [
        f"'{' '.join(fields)}' fires every second of each minute it matches (60 runs in a row): "
        f"a 6-field schedule starts with seconds; for once a minute write '{fixed}', "
        f"or the 5-field '{' '.join(fields[1:])}'"
    ]
