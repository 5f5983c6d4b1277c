"""Waiting for a job to change, for ``GET /status?wait=``, ``Prefer: wait=`` and the events
stream: one mechanism for all three.

A waiter reads the job; if it is not done and has not changed since the client's
``updatedAt``, it sleeps until this process writes the job (``ObservedStore`` wraps the
store and wakes the job's waiters after each write made here: a job run by this process
wakes them at once) or, when other replicas share the store and may be the ones writing,
until ``poll_seconds`` have passed; then it reads the job again. So a waiting client costs
one store read when it starts, one per change made here and at most one a second
otherwise, never a read per millisecond.

Waiting holds a connection's thread, so ``JobWatch.admit`` bounds how many requests wait at
once; past that, the caller sheds with 503 and ``Retry-After``. A waiter gives up its slot of
the CPU gate while it sleeps (``cpugate.released``): waiting costs no CPU and holds up nobody.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cpugate
from store import TERMINAL_STATES, JobState, JobStore

TERMINAL = frozenset(state.value for state in TERMINAL_STATES)


class TooManyWaiting(Exception):
    """``max_waiting`` requests are waiting already."""


class _Changes:
    """A job's change counter, and a condition its waiters sleep on."""

    def __init__(self) -> None:
        self.count = 0
        self.waiters = 0
        self.cond = threading.Condition()

    def changed_since(self, seen: int) -> bool:
        return self.count != seen


class JobWatch:
    """Wakes the waiters of a job when this process changes it; bounds the waiting requests."""

    def __init__(self, store: JobStore, poll_seconds: float | None, max_waiting: int,
                 clock: Callable[[], float] = time.monotonic):
        self.store, self.poll_seconds, self.max_waiting = store, poll_seconds, max_waiting
        self._clock = clock
        self._jobs: dict[str, _Changes] = {}
        self._lock = threading.Lock()
        self._waiting = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Count one waiting request for its length; ``TooManyWaiting`` past the bound."""
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise TooManyWaiting(f"{self.max_waiting} requests are waiting already")
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1

    def changed(self, job_id: str) -> None:
        """This process wrote the job: wake its waiters."""
        changes = self._jobs.get(job_id)
        if changes is not None:
            with changes.cond:
                changes.count += 1
                changes.cond.notify_all()

    def wait(self, job_id: str, since: str | None, seconds: float) -> dict[str, Any] | None:
        """The job (None if there is none) as soon as it has ended, or (with ``since``) its
        ``updatedAt`` differs from ``since``; else as it is after ``seconds``."""
        deadline = self._clock() + seconds
        changes = self._follow(job_id)
        try:
            while True:
                seen = changes.count  # before the read: a write after it wakes the wait below
                job = self.store.get(job_id)
                left = deadline - self._clock()
                if job is None or job["state"] in TERMINAL or (since is not None and job["updatedAt"] != since) \
                        or left <= 0:
                    return job
                nap = left if self.poll_seconds is None else min(left, self.poll_seconds)
                with cpugate.released(), changes.cond:
                    changes.cond.wait_for(functools.partial(changes.changed_since, seen), nap)
        finally:
            self._unfollow(job_id, changes)

    def _follow(self, job_id: str) -> _Changes:
        with self._lock:
            changes = self._jobs.setdefault(job_id, _Changes())
            changes.waiters += 1
            return changes

    def _unfollow(self, job_id: str, changes: _Changes) -> None:
        with self._lock:
            changes.waiters -= 1
            if not changes.waiters:
                del self._jobs[job_id]


class ObservedStore:
    """A ``JobStore`` that tells a ``JobWatch`` of every write it makes to a job."""

    def __init__(self, store: JobStore, watch: JobWatch):
        self._store, self._watch = store, watch
        self.shared = store.shared

    def create(self, job_id: str, job_input: dict[str, Any], owner: str, lease_ms: int,
               request_hash: str | None = None) -> dict[str, Any]:
        job = self._store.create(job_id, job_input, owner, lease_ms, request_hash)
        self._watch.changed(job_id)
        return job

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self._store.get(job_id)

    def location(self) -> dict[str, str | None]:
        """Where the wrapped store is (``DynamoStore.location``: region, endpoint); {} in memory."""
        where: dict[str, str | None] = getattr(self._store, "location", dict)()
        return where

    def claim(self, job_id: str, owner: str, lease_ms: int) -> dict[str, Any] | None:
        job = self._store.claim(job_id, owner, lease_ms)
        self._watch.changed(job_id)
        return job

    def heartbeat(self, job_id: str, owner: str, progress: float, lease_ms: int) -> None:
        self._store.heartbeat(job_id, owner, progress, lease_ms)
        self._watch.changed(job_id)

    def renew(self, job_id: str, owner: str, lease_ms: int) -> None:
        self._store.renew(job_id, owner, lease_ms)  # no visible change: nobody to wake

    def finish(self, job_id: str, owner: str, state: JobState, *, result: dict | None = None,
               error: str | None = None) -> dict[str, Any]:
        job = self._store.finish(job_id, owner, state, result=result, error=error)
        self._watch.changed(job_id)
        return job

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self._store.cancel(job_id)
        self._watch.changed(job_id)
        return job

    def states(self, job_ids: list[str]) -> dict[str, str]:
        return self._store.states(job_ids)

    def release(self, job_id: str, owner: str) -> None:
        self._store.release(job_id, owner)

    def expired(self, limit: int) -> list[str]:
        return self._store.expired(limit)

    def check(self) -> None:
        self._store.check()

    def list_jobs(self, state: str | None, limit: int,
                  before: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return self._store.list_jobs(state, limit, before)
