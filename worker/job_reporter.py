"""Keeping a running job's row current without making its work wait on the database."""
from __future__ import annotations

import logging
import threading
import time

from shared.db import Database
from shared.jobs import lifecycle
from shared.jobs.announce import Announcer
from shared.jobs.lifecycle import Claim, Progress

logger = logging.getLogger(__name__)

# How stale a cancel request may be when the work asks (a model call asks every half second too).
CANCEL_POLL_SECONDS = 0.5
# Progress reaches the row at most this often; in between, the latest update wins.
PROGRESS_WRITE_INTERVAL_SECONDS = 0.1
# After a failed write, the next try waits this long (a database outage must not spin the thread).
RETRY_SECONDS = 1.0


class JobReporter(threading.Thread):
    """Renews the job's lease, writes its latest progress and watches for a cancel request, in the background.

    The work hands progress over with `report` and reads `cancel_requested` and `lost` from memory, so
    neither a progress update nor a cancel check waits on the database; a model's stream, whose
    progress callbacks run on the thread reading it, is never held up by a commit. Updates that
    come faster than PROGRESS_WRITE_INTERVAL_SECONDS are coalesced: the latest is written. The
    thread dies with the process, so a killed worker's lease lapses.
    """

    def __init__(self, db: Database, claim: Claim, lease_seconds: int, announcer: Announcer) -> None:
        super().__init__(name=f"job-{claim.job_id}", daemon=True)
        self._db, self._claim, self._lease_seconds = db, claim, lease_seconds
        self._announcer = announcer
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: Progress | None = None
        self._stopping = False
        self.cancel_requested = False
        # Set once a renewal finds that another delivery took the job over.
        self.lost = False

    def report(self, progress: Progress) -> None:
        """Have `progress` written to the job soon (replacing any update not written yet)."""
        with self._lock:
            self._pending = progress
        self._wake.set()

    def stop(self) -> None:
        """Stop once a write under way is done; progress not written yet is dropped, as the job's end follows."""
        self._stopping = True
        self._wake.set()
        if self.is_alive():
            self.join(timeout=30)

    def run(self) -> None:
        now = time.monotonic()
        renew_at, poll_at, written_at = now + self._lease_seconds / 3, now + CANCEL_POLL_SECONDS, 0.0
        while True:
            now = time.monotonic()
            due = min(renew_at, poll_at)
            if self._pending is not None:
                due = min(due, written_at + PROGRESS_WRITE_INTERVAL_SECONDS)
            self._wake.wait(max(0.0, due - now))
            self._wake.clear()
            if self._stopping:
                return
            now = time.monotonic()
            write_progress = self._pending is not None and now >= written_at + PROGRESS_WRITE_INTERVAL_SECONDS
            if not (write_progress or now >= renew_at or now >= poll_at):
                continue
            with self._lock:
                progress, self._pending = (self._pending, None) if write_progress else (None, self._pending)
            try:
                if progress is not None or now >= renew_at:
                    with self._db.transaction() as session:
                        lease = lifecycle.renew_lease(session, self._claim, self._lease_seconds, progress)
                    self.lost, self.cancel_requested = not lease.owned, lease.cancel_requested
                    renew_at, written_at = now + self._lease_seconds / 3, now
                    if self.lost:
                        return
                    if progress is not None:
                        # Committed: watchers may now see it, and the row agrees with them.
                        self._announcer.progress(progress)
                else:
                    with self._db.transaction() as session:
                        self.cancel_requested = lifecycle.cancel_requested(session, self._claim.job_id)
                poll_at = now + CANCEL_POLL_SECONDS
            except Exception:  # noqa: BLE001 - a missed write only delays progress or shortens the lease
                logger.warning("could not update the row of job %s", self._claim.job_id, exc_info=True)
                with self._lock:
                    self._pending = self._pending or progress
                renew_at = poll_at = now + RETRY_SECONDS
                written_at = now + RETRY_SECONDS - PROGRESS_WRITE_INTERVAL_SECONDS
