"""Named leases (table `leases`): one holder at a time for a role such as the scheduler.

Whoever holds an unexpired lease acts; the others wait and take over when it lapses. The
leases of running task attempts are not these: they live on the task instance (see tasks.py).
"""

from __future__ import annotations

from flowforge.store.db import SqlBase

TAKE_LEASE = "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ? AND (holder = ? OR expires_at < ?)"
# Two schedulers starting at once on a new database both insert: the second changes nothing
# (rowcount 0) instead of failing with a unique violation in the database's log.
INSERT_LEASE = "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING"
RELEASE_LEASE = "UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?"
LEASE_HOLDER = "SELECT holder FROM leases WHERE name = ? AND expires_at >= ?"


class Leases(SqlBase):
    """Taking, keeping, releasing and reading named leases."""

    def hold_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Take or keep the lease `name` for `holder` until now+ttl; False while another holds it unexpired."""
        with self._transaction() as cur:
            if self._exec(cur, TAKE_LEASE, (holder, now + ttl, name, holder, now)).rowcount == 1:
                return True
            return self._exec(cur, INSERT_LEASE, (name, holder, now + ttl)).rowcount == 1

    def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease `name` if `holder` has it, so a standby takes over at once."""
        with self._transaction() as cur:
            self._exec(cur, RELEASE_LEASE, (name, holder))

    def lease_holder(self, name: str, now: float) -> str | None:
        """Who holds the lease `name` unexpired at `now`; None when nobody does (lapsed, released, never taken)."""
        rows = self._all(LEASE_HOLDER, (name, now))
        return str(rows[0][0]) if rows else None
