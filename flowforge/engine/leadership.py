"""The leader lease as the scheduler's loop keeps it: renewed between the steps of a long tick.

A tick can take longer than the lease (many runs to start, a slow database). Renewed only
between ticks, the lease would lapse under a busy leader and a standby would take it and act
alongside it until the leader's next renewal; so the loop asks `leading()` before every step, and
the lease is renewed once a third of it has gone by. A leader that finds the lease taken stops at
once (`check` raises `LeadLost`).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LeadLost(Exception):
    """The scheduler lease went to another scheduler during a tick: this one must stop acting."""


class KeptLease:
    """When to renew the leader lease, and whether it is surely still held (by the monotonic clock)."""

    def __init__(self, lead: Callable[[float], bool], ttl: float, clock: Callable[[], float]) -> None:
        self.lead = lead  # takes or renews the lease at `now`; True while held
        self.ttl = ttl
        self.clock = clock
        # The monotonic time until which the lease is surely held (taken before the call that
        # renewed it); None while nobody keeps it (a tick called directly acts freely).
        self.until: float | None = None

    def keep(self) -> None:
        """From now on, act only while the lease is held (the scheduler's loop calls this first)."""
        self.until = 0.0

    def leading(self) -> bool:
        """True while this scheduler may act; renews the lease once a third of it has gone by."""
        if self.until is None:
            return True
        sent = time.monotonic()
        if sent < self.until - self.ttl * 2 / 3:
            return True
        if self.lead(self.clock()):
            self.until = sent + self.ttl
            return True
        self.until = 0.0
        return False

    def check(self) -> None:
        """Raise LeadLost once this scheduler no longer holds the lease."""
        if not self.leading():
            raise LeadLost()
