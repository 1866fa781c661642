"""How the CLI shows times and durations: in the viewer's local zone (or UTC with `--utc`), zone always named."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime


def fmt_duration(start: float | None, end: float | None, now: float | None = None) -> str:
    """`1.2s`, `3m04s`, `2h05m`; running things count up to now; `-` when not started."""
    if not start:
        return "-"
    secs = max(0.0, (end or now or time.time()) - start)
    if secs < 60:
        return f"{secs:.1f}s"
    if secs < 3600:
        return f"{int(secs // 60)}m{int(secs % 60):02d}s"
    return f"{int(secs // 3600)}h{int(secs % 3600 // 60):02d}m"


def parse_iso(text: str | None) -> float | None:
    """An ISO-8601 time from the API (`...Z` or with an offset) as epoch seconds; None for none."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Clock:
    """Epoch seconds as the viewer reads them: local time by default, UTC with `utc=True`."""

    def __init__(self, utc: bool = False) -> None:
        self.utc = utc

    def at(self, ts: float) -> datetime:
        """The aware datetime of `ts` in the chosen zone."""
        return datetime.fromtimestamp(ts, UTC) if self.utc else datetime.fromtimestamp(ts).astimezone()

    def zone(self, ts: float) -> str:
        """The zone's name at `ts`: `UTC`, `CET`, `CEST`, or an offset like `+0530` when it has none."""
        when = self.at(ts)
        name = when.tzname() or ""
        return name if name and name[0].isalpha() else when.strftime("%z")

    def _text(self, ts: float | None, *, year: bool, zone: bool) -> str:
        if not ts:
            return "-"
        text = f"{self.at(ts):%Y-%m-%d %H:%M:%S}" if year else f"{self.at(ts):%m-%d %H:%M:%S}"
        return f"{text} {self.zone(ts)}" if zone else text

    def full(self, ts: float | None) -> str:
        """`2026-01-02 14:03:05 CET`, or `-`."""
        return self._text(ts, year=True, zone=True)

    def short(self, ts: float | None, zone: bool = False) -> str:
        """`01-02 14:03:05` (the zone added with `zone=True`), or `-`."""
        return self._text(ts, year=False, zone=zone)

    def stamp(self, ts: float) -> str:
        """ISO-8601 with milliseconds and the offset, for a log line: `2026-01-02T14:03:05.123+01:00`."""
        return self.at(ts).isoformat(timespec="milliseconds")

    def column(self, title: str, stamps: Iterable[float | None], year: bool = False) -> tuple[str, list[str]]:
        """A table column of times: the title names the zone (`Created (CET)`) when all share one.

        Across a daylight-saving change the zone differs between rows: then each cell names its own.
        """
        values = list(stamps)
        zones = {self.zone(ts) for ts in values if ts}
        one = len(zones) == 1
        cells = [self._text(ts, year=year, zone=not one) for ts in values]
        return (f"{title} ({zones.pop()})" if one else title), cells
