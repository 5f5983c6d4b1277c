"""Job state: the state machine, the store interface, and the in-memory backend.

Both backends (``MemoryStore`` here, ``DynamoStore`` in ``dynamostore.py``) implement
``JobStore`` and pass one contract suite (``tests/test_store_contract.py``). The allowed
state transitions live in one table, ``TRANSITIONS``, and every write that changes a
job's state goes through it: a lock plus ``check_transition`` for the dict, a
``ConditionExpression`` derived from the same table for DynamoDB.

Listing: ``list_jobs`` pages through jobs newest first (``createdAt``, then ``jobId``, both
descending), keyed by ``created_key``; the API turns that key into an opaque cursor.

Leases: a job is worked on by whoever *owns* it (one orchestrator process) while its
lease is live. Anyone may claim a queued or running job whose lease has expired, which
is how a job survives the death of the orchestrator that was running it.

This module knows nothing of DynamoDB; ``orchestrator.build`` picks the backend.
"""

from __future__ import annotations

import bisect
import collections
import datetime
import enum
import json
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from logjson import iso_utc

DEFAULT_MEMORY_MAX_JOBS = 10_000
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
MAX_LIST_LIMIT = 100  # jobs per list_jobs page: one BatchGetItem in DynamoDB


class JobState(str, enum.Enum):
    """Where a job is in its life. Values are what the API and the table store."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"


# The one state-transition table. running -> running is a new claim of a job whose
# owner's lease expired (crash recovery); progress updates do not change state. A client may
# cancel a job until it ends.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELED}),
    JobState.RUNNING: frozenset({JobState.RUNNING, JobState.DONE, JobState.FAILED, JobState.CANCELED}),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELED: frozenset(),
}
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})
TERMINAL_STATES = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
CANCELED_ERROR = "canceled by client"
# The states ``list_jobs`` filters on, in the order the API names them. The one list of
# them: the API and its description read it from here.
LISTABLE_STATES: tuple[str, ...] = tuple(s.value for s in JobState)
RUNNING_PROGRESS_CAP = 0.99  # 1.0 is reserved for done


def running_progress(reported: float) -> float:
    """A reported progress as a running job may record it: within [0, 0.99]."""
    return min(max(float(reported), 0.0), RUNNING_PROGRESS_CAP)


def later_stamp(now: float, previous: str | None) -> str:
    """``iso_utc(now)``, or one millisecond after ``previous`` if that is not earlier: a
    job's ``updatedAt`` strictly increases with every change, so a client waiting for a
    change (``?since=``) sees every one, even two in one millisecond."""
    stamp = iso_utc(now)
    if previous is None or stamp > previous:
        return stamp
    return iso_utc(_epoch(previous) + 0.001)


def _epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
def created_key(job: dict[str, Any]) -> str:
    """The key jobs are listed by, newest first: ``<createdAt>#<jobId>``. ``createdAt`` is
    fixed-width ISO 8601 UTC, so comparing keys as text compares times, then ids."""
    return f"{job['createdAt']}#{job['jobId']}"


def check_limit(limit: int) -> None:
    """``list_jobs`` pages hold at least one job (a BatchGetItem at most ``MAX_LIST_LIMIT``)."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}")


def allowed_from(to_state: JobState) -> frozenset[JobState]:
    """The states from which ``to_state`` may be entered."""
    return frozenset(s for s, targets in TRANSITIONS.items() if to_state in targets)


class StoreError(Exception):
    """Base class of the store's errors."""


class JobNotFound(StoreError):
    def __init__(self, job_id: str):
        super().__init__(f"job {job_id} does not exist")
        self.job_id = job_id


class JobExists(StoreError):
    """``current`` is the job that exists (None if the backend could not say)."""

    def __init__(self, job_id: str, current: dict[str, Any] | None = None):
        super().__init__(f"job {job_id} already exists")
        self.job_id, self.current = job_id, current


class IllegalTransition(StoreError):
    def __init__(self, job_id: str, from_state: str, to_state: str):
        super().__init__(f"job {job_id}: illegal transition {from_state} -> {to_state}")
        self.job_id, self.from_state, self.to_state = job_id, from_state, to_state


class LeaseLost(StoreError):
    """The caller no longer owns the job: another orchestrator claimed it, or it finished."""

    def __init__(self, job_id: str, owner: str):
        super().__init__(f"job {job_id}: lease not held by {owner}")
        self.job_id, self.owner = job_id, owner


class StoreUnavailable(StoreError):
    """The backend cannot be reached or is throttling, after bounded retries."""


class StoreFull(StoreError):
    """The in-memory store holds its maximum of active jobs."""


class StoreMisconfigured(StoreError):
    """The backend cannot serve until an operator acts (e.g. its table does not exist).
    Not transient: retrying does not help."""


def check_transition(job_id: str, from_state: str, to_state: JobState) -> None:
    """Raise ``IllegalTransition`` unless the table allows ``from_state -> to_state``."""
    if to_state not in TRANSITIONS[JobState(from_state)]:
        raise IllegalTransition(job_id, str(JobState(from_state).value), to_state.value)


class JobStore(Protocol):
    """What the orchestrator needs from job state. Jobs are plain dicts with the keys
    ``jobId state progress result error createdAt updatedAt input attempts owner
    leaseExpiresAt requestHash`` (``input`` is ``{"prompt", "seed", "style"}``;
    ``leaseExpiresAt`` is epoch milliseconds; ``requestHash`` identifies the request that
    created a job under an idempotency key, else None). Returned dicts are the caller's to
    keep. ``updatedAt`` strictly increases with every visible change (state, progress), and
    only then: renewing a lease is not a change (``later_stamp``)."""

    shared: bool
    """True when other orchestrator processes see the same jobs, so a job handed back here
    is taken by another replica; False when handing back would drop it."""

    def create(self, job_id: str, job_input: dict[str, Any], owner: str, lease_ms: int,
               request_hash: str | None = None) -> dict[str, Any]:
        """Create a ``queued`` job owned by ``owner`` for ``lease_ms``. Raises ``JobExists``
        carrying the job that exists."""

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job, read strongly consistently, or None."""

    def claim(self, job_id: str, owner: str, lease_ms: int) -> dict[str, Any] | None:
        """Move a job to ``running`` under ``owner``'s lease and count an attempt.

        Allowed when the job is active (queued or running) and either ``owner`` already
        owns it or its lease has expired. Returns the claimed job, or None when it is not
        claimable (finished, or live under another owner, or absent)."""

    def heartbeat(self, job_id: str, owner: str, progress: float, lease_ms: int) -> None:
        """Record ``running_progress(progress)`` if it is higher than the stored progress
        (progress never decreases; only a rise changes ``updatedAt``), and extend the lease.
        Raises ``LeaseLost`` unless the job is running under ``owner``."""

    def renew(self, job_id: str, owner: str, lease_ms: int) -> None:
        """Extend the lease only (no visible change). Raises ``LeaseLost`` unless the job is
        running under ``owner``."""

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Move a queued or running job to ``canceled`` (whoever owns it; ``progress`` kept,
        ``error`` = ``CANCELED_ERROR``). Raises ``JobNotFound``, or ``IllegalTransition`` if
        the job already ended."""

    def states(self, job_ids: list[str]) -> dict[str, str]:
        """The state of each of these jobs that exists (eventually consistent: a change may
        show up to a second late). For the lease keeper's watch for remote cancels."""

    def finish(self, job_id: str, owner: str, state: JobState, *, result: dict | None = None,
               error: str | None = None) -> dict[str, Any]:
        """Move a job owned by ``owner`` to ``done`` (progress 1.0, ``result``) or
        ``failed`` (``error``). Raises ``IllegalTransition`` if it already finished and
        ``LeaseLost`` if someone else owns it."""

    def release(self, job_id: str, owner: str) -> None:
        """Hand a job back (its lease expires now) so another orchestrator can take it."""

    def expired(self, limit: int) -> list[str]:
        """Ids of active jobs whose lease has expired, oldest lease first, at most ``limit``."""

    def check(self) -> None:
        """Raise ``StoreMisconfigured`` if the backend cannot serve at all (a missing
        table), ``StoreUnavailable`` if it cannot be reached right now."""

    def list_jobs(self, state: str | None, limit: int, before: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of jobs, newest first (``created_key`` descending): at most ``limit``
        jobs, only those in ``state`` (one of ``LISTABLE_STATES``) unless it is None, and
        only those whose key is below ``before`` (the key a previous page returned) unless
        it is None. Returns the page and, when more jobs follow it, its last job's key
        (else None). A page may hold fewer than ``limit`` jobs while more follow: a job that
        left ``state`` while the page was read is left out."""


def _copy(job: dict[str, Any]) -> dict[str, Any]:
    """A job the caller may change freely (the result is kept as JSON text)."""
    out = dict(job)
    out["input"] = dict(job["input"])
    if out["result"] is not None:
        out["result"] = json.loads(out["result"])
    return out


class MemoryStore:
    """Jobs in a dict, for local runs. Bounded: past ``max_jobs`` the oldest finished
    jobs are forgotten; if every job is still active, ``create`` raises ``StoreFull``."""

    shared = False  # one process's dict: a job handed back here would run nowhere

    def __init__(self, max_jobs: int = DEFAULT_MEMORY_MAX_JOBS, clock: Callable[[], float] = time.time):
        self._jobs: dict[str, dict[str, Any]] = {}
        self._finished: collections.deque[str] = collections.deque()
        self._created: list[str] = []  # created_key of every job held, ascending (list_jobs)
        self._lock = threading.Lock()
        self._max_jobs = max_jobs
        self._clock = clock

    def __len__(self) -> int:
        return len(self._jobs)

    def create(self, job_id: str, job_input: dict[str, Any], owner: str, lease_ms: int,
               request_hash: str | None = None) -> dict[str, Any]:
        now = self._clock()
        job = {
            "jobId": job_id, "state": JobState.QUEUED.value, "progress": 0.0,
            "result": None, "error": None, "createdAt": iso_utc(now), "updatedAt": iso_utc(now),
            "input": dict(job_input), "attempts": 0, "owner": owner,
            "leaseExpiresAt": int(now * 1000) + lease_ms, "requestHash": request_hash,
        }
        with self._lock:
            if job_id in self._jobs:
                raise JobExists(job_id, _copy(self._jobs[job_id]))
            self._make_room()
            self._jobs[job_id] = job
            bisect.insort(self._created, created_key(job))  # at or near the end: creation order
            return _copy(job)

    def _make_room(self) -> None:
        while len(self._jobs) >= self._max_jobs:
            if not self._finished:
                raise StoreFull(f"the in-memory store holds {self._max_jobs} active jobs")
            forgotten = self._jobs.pop(self._finished.popleft(), None)
            if forgotten is not None:
                del self._created[bisect.bisect_left(self._created, created_key(forgotten))]

    def get(self, job_id: str) -> dict[str, Any] | None:
        job = self._jobs.get(job_id)
        return _copy(job) if job is not None else None

    def claim(self, job_id: str, owner: str, lease_ms: int) -> dict[str, Any] | None:
        now = self._clock()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or JobState(job["state"]) not in ACTIVE_STATES:
                return None
            if job["owner"] != owner and job["leaseExpiresAt"] > now * 1000:
                return None
            check_transition(job_id, job["state"], JobState.RUNNING)
            job.update(state=JobState.RUNNING.value, owner=owner, attempts=job["attempts"] + 1,
                       leaseExpiresAt=int(now * 1000) + lease_ms, updatedAt=later_stamp(now, job["updatedAt"]))
            return _copy(job)

    def _owned(self, job_id: str, owner: str) -> dict[str, Any]:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job["owner"] != owner:
            raise LeaseLost(job_id, owner)
        return job

    def heartbeat(self, job_id: str, owner: str, progress: float, lease_ms: int) -> None:
        now = self._clock()
        with self._lock:
            job = self._running(job_id, owner)
            job["leaseExpiresAt"] = int(now * 1000) + lease_ms
            if running_progress(progress) > job["progress"]:
                job.update(progress=running_progress(progress), updatedAt=later_stamp(now, job["updatedAt"]))

    def renew(self, job_id: str, owner: str, lease_ms: int) -> None:
        now = self._clock()
        with self._lock:
            self._running(job_id, owner)["leaseExpiresAt"] = int(now * 1000) + lease_ms

    def _running(self, job_id: str, owner: str) -> dict[str, Any]:
        job = self._owned(job_id, owner)
        if job["state"] != JobState.RUNNING.value:
            raise LeaseLost(job_id, owner)
        return job

    def finish(self, job_id: str, owner: str, state: JobState, *, result: dict | None = None,
               error: str | None = None) -> dict[str, Any]:
        now = self._clock()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            check_transition(job_id, job["state"], state)
            if job["owner"] != owner:
                raise LeaseLost(job_id, owner)
            job.update(state=state.value, updatedAt=later_stamp(now, job["updatedAt"]), leaseExpiresAt=None)
            if state is JobState.DONE:
                job.update(progress=1.0, result=json.dumps(result))  # a private copy, as in DynamoDB
            else:
                job.update(error=error)
            self._finished.append(job_id)
            return _copy(job)

    def cancel(self, job_id: str) -> dict[str, Any]:
        now = self._clock()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            check_transition(job_id, job["state"], JobState.CANCELED)
            job.update(state=JobState.CANCELED.value, error=CANCELED_ERROR, leaseExpiresAt=None,
                       updatedAt=later_stamp(now, job["updatedAt"]))
            self._finished.append(job_id)
            return _copy(job)

    def states(self, job_ids: list[str]) -> dict[str, str]:
        return {job_id: job["state"] for job_id in job_ids if (job := self._jobs.get(job_id)) is not None}

    def release(self, job_id: str, owner: str) -> None:
        with self._lock:
            job = self._owned(job_id, owner)
            if JobState(job["state"]) in ACTIVE_STATES:
                job["leaseExpiresAt"] = 0

    def check(self) -> None:
        """A dict is always there."""

    def expired(self, limit: int) -> list[str]:
        now_ms = self._clock() * 1000
        with self._lock:
            stale = [j for j in self._jobs.values()
                     if j["leaseExpiresAt"] is not None and j["leaseExpiresAt"] <= now_ms]
        stale.sort(key=lambda j: j["leaseExpiresAt"])
        return [j["jobId"] for j in stale[:limit]]

    def list_jobs(self, state: str | None, limit: int, before: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Walks the keys backwards from ``before``: no sort per request; a state filter skips
        the jobs in other states (at most ``MEMORY_MAX_JOBS`` of them). Jobs are copied after
        the lock is let go, as ``get`` does; one that left ``state`` meanwhile is left out."""
        check_limit(limit)
        found: list[dict[str, Any]] = []
        with self._lock:
            end = len(self._created) if before is None else bisect.bisect_left(self._created, before)
            for i in range(end - 1, -1, -1):
                job = self._jobs[self._created[i].partition("#")[2]]  # createdAt holds no "#"
                if state is None or job["state"] == state:
                    found.append(job)
                    if len(found) > limit:
                        break
        page = [_copy(job) for job in found[:limit]]
        after = created_key(page[-1]) if len(found) > limit else None
        return [job for job in page if state is None or job["state"] == state], after
