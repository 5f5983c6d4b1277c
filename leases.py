"""The leases of the jobs running here: one keeper renews them all, and a run that loses
its lease lets go of its worker at once.

A job's lease (``owner`` and ``leaseExpiresAt`` in the store) is the only sign of life
other replicas see: once it has expired, any reaper may claim the job and run it again.
So every job in flight here has its lease renewed at least every third of the lease,
whatever its run is doing: streaming progress (a progress write is a renewal), waiting on
a silent worker, backing off between calls, retrying its finish write. One ``LeaseKeeper``
per process does it: ``renew_due`` (run by a background loop every ``tick``) renews each
``Run`` whose last write is older than ``renew_after`` (a third of the lease).

Each run also knows its lease locally: ``expires`` is when the last successful write was
sent, plus the lease. A renewal that fails (store unreachable) is tried again on the next
tick (after one such failure a pass writes nothing more: an unreachable store would hold the
keeper for seconds per write, and every run's expiry must still be watched); if the lease
runs out first, or the store says another replica owns the job
(``LeaseLost``), the run is abandoned with ``lease_lost`` set: its worker call is aborted
and it must not finish the job, because another replica may be running it now. A stopping
orchestrator abandons its runs the same way (``abandon_all``), without ``lease_lost``.

``lease_problems`` holds the start-up rules that keep a live job from looking dead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from logjson import log
from store import CANCELED_ERROR, JobNotFound, JobState, JobStore, LeaseLost, StoreUnavailable

# Renewals fall due every third of the lease; what is left (2 s at this minimum) must cover a
# renewal write that meets a slow store (the DynamoDB client's connect timeout is 2 s).
MIN_LEASE_SECONDS = 3.0
MAX_TICK_SECONDS = 1.0


def lease_problems(lease_seconds: float, worker_timeout_seconds: float, progress_write_interval_ms: int) -> list[str]:
    """What is wrong with a lease configuration (empty if nothing), one sentence per rule,
    each naming its variables (README "Leases: the rules checked at start")."""
    problems = []
    if lease_seconds < MIN_LEASE_SECONDS:
        problems.append(f"JOB_LEASE_SECONDS must be at least {MIN_LEASE_SECONDS:g}, got {lease_seconds:g}: "
                        "renewals fall due every third of the lease and need the rest to reach the store")
    if worker_timeout_seconds >= lease_seconds:
        problems.append(f"WORKER_TIMEOUT_SECONDS ({worker_timeout_seconds:g}) must be less than JOB_LEASE_SECONDS "
                        f"({lease_seconds:g}): a silent worker must be noticed within one lease")
    if progress_write_interval_ms >= lease_seconds * 1000 / 3:
        problems.append(f"PROGRESS_WRITE_INTERVAL_MS ({progress_write_interval_ms}) must be less than a third of "
                        f"JOB_LEASE_SECONDS ({lease_seconds:g} s): progress writes are lease renewals")
    return problems


class Abortable(Protocol):
    def abort(self) -> None: ...


class Run:
    """One job in flight here: its locally known lease, its best recorded progress, and
    the worker call to abort when the run is abandoned. ``writing`` serialises this run's store
    writes (the keeper skips a run whose own write is under way: that write renews it)."""

    def __init__(self, job_id: str, progress: float, sent_at: float, lease_seconds: float):
        self.job_id, self.progress, self.lease_seconds = job_id, progress, lease_seconds
        self.last_write, self.expires = sent_at, sent_at + lease_seconds
        self.abandoned: str | None = None  # why, once abandoned
        self.lease_lost = False  # abandoned because another replica may own the job now
        self.canceled = False  # abandoned because a client canceled the job
        self.write_failed = False  # the last write failed: progress waits until a renewal gets through
        self.writing = threading.Lock()
        self._lock = threading.Lock()
        self._abandoned = threading.Event()
        self._call: Abortable | None = None

    def wrote(self, sent_at: float, progress: float) -> None:
        """A write sent at ``sent_at`` succeeded: the lease runs from then."""
        self.last_write, self.expires = sent_at, sent_at + self.lease_seconds
        self.progress = max(self.progress, progress)
        self.write_failed = False

    def attach(self, call: Abortable) -> None:
        """The worker call now under way (aborted at once if the run is already abandoned)."""
        with self._lock:
            self._call = call
            if self.abandoned is not None:
                call.abort()

    def detach(self) -> None:
        with self._lock:
            self._call = None

    def abandon(self, reason: str, lease_lost: bool, canceled: bool = False) -> None:
        """Stop the run (the first reason wins) and abort its worker call."""
        with self._lock:
            if self.abandoned is not None:
                return
            self.abandoned, self.lease_lost, self.canceled = reason, lease_lost, canceled
            self._abandoned.set()
            if self._call is not None:
                self._call.abort()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the run was abandoned meanwhile (that ends the wait)."""
        return self._abandoned.wait(seconds)


class RenewalsFailed(Exception):
    """Some due renewals could not be written this pass (they are tried again next tick)."""


class LeaseKeeper:
    """Holds this process's runs and renews their leases (see the module docstring)."""

    def __init__(self, store: JobStore, owner: str, lease_seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        self.store, self.owner, self.lease_seconds = store, owner, lease_seconds
        self.lease_ms = int(lease_seconds * 1000)
        self.renew_after = lease_seconds / 3
        self.tick = max(0.01, min(lease_seconds / 10, MAX_TICK_SECONDS))
        self._clock = clock
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._closed: str | None = None  # abandon_all's reason: later runs start abandoned

    def hold(self, job_id: str, progress: float, sent_at: float) -> Run:
        """Start keeping the lease of a job claimed by a write sent at ``sent_at``."""
        run = Run(job_id, progress, sent_at, self.lease_seconds)
        with self._lock:
            self._runs[job_id] = run
            closed = self._closed
        if closed is not None:  # claimed as the orchestrator stopped: end it at once
            run.abandon(closed, lease_lost=False)
        return run

    def drop(self, run: Run) -> None:
        with self._lock:
            if self._runs.get(run.job_id) is run:
                del self._runs[run.job_id]

    def runs(self) -> list[Run]:
        with self._lock:
            return list(self._runs.values())

    def now(self) -> float:
        return self._clock()

    def heartbeat(self, run: Run, progress: float) -> None:
        """Record progress (which renews the lease). Raises ``LeaseLost`` (the run is then
        abandoned) or ``StoreUnavailable``."""
        with run.writing:
            self._write(run, progress)

    def cancel(self, job_id: str) -> bool:
        """Stop the run of a job canceled here, if it runs here; True if it did."""
        with self._lock:
            run = self._runs.get(job_id)
        if run is None:
            return False
        run.abandon(CANCELED_ERROR, lease_lost=False, canceled=True)
        return True

    def keep(self) -> None:
        """One pass of the keeper: stop the runs of jobs canceled through another replica,
        then renew what is due."""
        self.stop_canceled()
        self.renew_due()

    def stop_canceled(self) -> None:
        """With a store other replicas share, a client may cancel a job there: one batch
        read of the states of the jobs running here (``store.states``) finds those."""
        if not self.store.shared:
            return  # every cancel goes through this process, which stops the run itself
        running = [run.job_id for run in self.runs() if run.abandoned is None]
        if running:
            for job_id, state in self.store.states(running).items():
                if state == JobState.CANCELED.value:
                    self.cancel(job_id)

    def finish(self, run: Run, state: JobState, **fields: Any) -> dict[str, Any]:
        """The run's finish write (no renewal can interleave with it)."""
        with run.writing:
            return self.store.finish(run.job_id, self.owner, state, **fields)

    def _write(self, run: Run, progress: float | None) -> None:
        """A progress write (``progress``) or a renewal (None); both extend the lease."""
        sent = self._clock()
        try:
            if progress is None:
                self.store.renew(run.job_id, self.owner, self.lease_ms)
            else:
                self.store.heartbeat(run.job_id, self.owner, progress, self.lease_ms)
        except (LeaseLost, JobNotFound):
            self._lose(run, "another orchestrator owns the job now")
            raise
        except Exception:
            run.write_failed = True
            raise
        run.wrote(sent, run.progress if progress is None else progress)

    def renew_due(self) -> None:
        """Renew every run whose last write is older than ``renew_after``. Runs whose
        renewal failed, or was not tried, are tried next pass (``RenewalsFailed`` says
        which), unless their lease ran out: those are abandoned as lost."""
        failed: list[tuple[str, Exception]] = []
        store_down: Exception | None = None
        for run in self.runs():
            if run.abandoned is not None or self._clock() - run.last_write < self.renew_after:
                continue
            if store_down is not None:  # not tried: the store just failed a renewal
                failed.append((run.job_id, store_down))
                self._expire(run)
                continue
            if not run.writing.acquire(blocking=False):  # its own heartbeat renews, a finish ends it,
                self._expire(run)  # but a write stuck past the lease must not keep the run going
                continue
            try:
                self._write(run, None)
            except (LeaseLost, JobNotFound):
                pass  # abandoned and logged by _write
            except Exception as exc:  # StoreUnavailable or anything else
                failed.append((run.job_id, exc))
                store_down = exc if isinstance(exc, StoreUnavailable) else None
                self._expire(run)
            finally:
                run.writing.release()
        if failed:
            ids = ", ".join(job_id for job_id, _ in failed)
            raise RenewalsFailed(f"{len(failed)} lease renewal(s) failed ({ids}): {failed[-1][1]}") from failed[-1][1]

    def abandon_all(self, reason: str) -> None:
        """Stop every run here and any held later (shutdown): their worker calls are aborted."""
        with self._lock:
            self._closed = reason
        for run in self.runs():
            run.abandon(reason, lease_lost=False)

    def _expire(self, run: Run) -> None:
        """Abandon ``run`` if its lease ran out here: another replica may have claimed it."""
        if self._clock() >= run.expires:
            self._lose(run, "its lease expired before it could be renewed")

    def _lose(self, run: Run, reason: str) -> None:
        if run.abandoned is None:
            log.warning("lease lost; stopping the run", jobId=run.job_id, reason=reason)
        run.abandon(reason, lease_lost=True)
