"""Automatic retention (FLOWFORGE_RETENTION_DAYS): the leading scheduler deletes old ended runs.

The scheduler calls `Retention.step` on each of its housekeeping ticks; a pass deletes one batch
(`Store.prune_runs`, one short transaction) per call, so the ticks go on however much history
there is to delete.
"""

from __future__ import annotations

import logging

from flowforge.store.base import Store

log = logging.getLogger("flowforge.scheduler")

# Retention (FLOWFORGE_RETENTION_DAYS): a pass about every hour, the first this soon after the
# scheduler starts leading; a pass deletes one short batch per tick until no old run is left.
RETENTION_EVERY_SECS = 3600.0
RETENTION_FIRST_SECS = 60.0


class Retention:
    """Deletes the runs that ended more than `keep_secs` ago, a batch at a time (see Store.prune_runs).

    A pass begins `first_after` seconds after the first call, then `every` seconds after the last
    pass ended; each call of `step` during a pass deletes one batch, one short transaction, so that
    the scheduler's ticks go on between batches however much history there is to delete.
    """

    def __init__(self, store: Store, keep_secs: float, every: float, first_after: float) -> None:
        self.store = store
        self.keep_secs = keep_secs
        self.every = every
        self.first_after = first_after
        self._due: float | None = None  # when the next pass begins
        self._cutoff: float | None = None  # the pass under way deletes runs that ended before this
        self._after: tuple[float, str] | None = None
        self._deleted = 0

    def step(self, now: float) -> int:
        """Delete the next batch if a pass is due or under way; the runs it deleted."""
        if self._due is None:
            self._due = now + self.first_after
        if self._cutoff is None:
            if now < self._due:
                return 0
            self._cutoff, self._after, self._deleted = now - self.keep_secs, None, 0
        batch = self.store.prune_runs(self._cutoff, after=self._after)
        self._deleted += batch.runs
        if batch.last is not None:
            self._after = batch.last
            return batch.runs
        if self._deleted:
            log.info("retention: deleted %d runs that ended before %s", self._deleted, self._cutoff)
        self._cutoff, self._due = None, now + self.every
        return batch.runs
