"""Runs jobs for the orchestrator: a bounded pool of dispatch threads, calls to the worker
(``workerclient``) retried within a budget (``backoff``), leases kept alive by one keeper
(``leases``), crash recovery, and a shutdown that drops no job.

Flow of one job: ``create`` records it as queued under this process's lease and
``submit``s it, which puts its id on a local queue; a dispatch thread ``claim``s it in the
store (queued -> running, under this process's lease), hands the run to the lease keeper
(which renews the lease every third of it until the run ends), streams ``POST /process``
from the worker, records progress with heartbeats, and ``finish``es the job as done or
failed. Worker faults are retried with jittered backoff until ``retry_budget_seconds``
have passed since the run's first fault; a busy worker is waited for (its own budget), not
counted as a fault; meanwhile the job stays running with no error. A run whose lease is
lost stops its worker call and does not finish the job.

The reaper asks the store for active jobs whose lease expired (their orchestrator died or
handed them back) and runs them here. The reaper and the lease keeper are background
loops that survive any exception (``loops``); ``readiness`` reports them and the dispatch
threads for ``GET /readyz``.

``stop``: with a store other replicas share (DynamoDB), queued jobs, and runs still going
when the grace period ends, are handed back (their lease released) for another replica.
With a store nobody else sees (memory), handing back would drop them: the queue is run
down within the grace period and whatever is left is failed with an error that says so.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import logjson
from backoff import Backoff, RetryBudget
from leases import LeaseKeeper, Run
from logjson import log
from loops import BackgroundLoop
from store import JobExists, JobNotFound, JobState, JobStore, LeaseLost, StoreError, StoreUnavailable, running_progress
from workerclient import CallAborted, WorkerBusy, WorkerClient, WorkerError

REAPER_MAX_BACKOFF_SECONDS = 60.0
# How often the load (jobs running and waiting here) is reported to on_load: four samples per
# CloudWatch minute, so auto scaling sees a change within a minute.
LOAD_SAMPLE_SECONDS = 15.0
STOP_JOIN_SECONDS = 5.0  # after the grace period: for abandoned runs to record their end


@dataclass(frozen=True)
class DispatchConfig:
    worker_url: str = "http://127.0.0.1:8081"
    max_concurrent_jobs: int = 8
    max_queued_jobs: int = 1000
    retry_budget_seconds: float = 120.0
    busy_budget_seconds: float = 300.0
    retry_backoff_ms: int = 500
    retry_backoff_max_ms: int = 10_000
    worker_connect_timeout_seconds: float = 2.0
    worker_timeout_seconds: float = 10.0
    lease_seconds: float = 30.0
    max_job_attempts: int = 3
    progress_write_interval_ms: int = 0
    reaper_interval_seconds: float = 5.0


class QueueFull(Exception):
    """This orchestrator already holds ``max_queued_jobs`` jobs waiting to run."""


class IdempotencyKeyReused(Exception):
    """An idempotency key came back with another request body."""


class RunAbandoned(Exception):
    """The run was stopped (lease lost, or the orchestrator is stopping); see ``Run.abandoned``."""


class Dispatcher:
    """Bounded-concurrency job runner bound to one store and one owner id."""

    def __init__(self, store: JobStore, client: WorkerClient, config: DispatchConfig, owner: str,
                 on_finish: Callable[[dict[str, Any], dict[str, Any] | None], None] | None = None,
                 on_loop_error: Callable[[str], None] | None = None,
                 on_load: Callable[[int, int, int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, rng: Callable[[], float] = random.random):
        self.store, self.client, self.config, self.owner = store, client, config, owner
        self.leases = LeaseKeeper(store, owner, config.lease_seconds, clock)
        self.lease_ms = self.leases.lease_ms
        self._on_finish = on_finish or (lambda finished, claimed: None)
        self._on_loop_error = on_loop_error or (lambda loop: None)
        self._clock, self._rng = clock, rng
        self._backoff = Backoff(config.retry_backoff_ms / 1000,
                                max(config.retry_backoff_ms, config.retry_backoff_max_ms) / 1000)
        self._queue: queue.Queue[tuple[str, str | None] | None] = queue.Queue()
        self._local: set[str] = set()  # ids queued or running here
        self._changed = threading.Condition()  # guards _local; notified when it shrinks
        self._closing = threading.Event()  # stop() began: the reaper takes nothing more
        self._halting = threading.Event()  # dispatch threads take nothing more
        self._threads: list[threading.Thread] = []
        self._reaper = BackgroundLoop("reaper", self._reap, config.reaper_interval_seconds,
                                      max_backoff=REAPER_MAX_BACKOFF_SECONDS, on_error=on_loop_error)
        self._keeper = BackgroundLoop("lease-keeper", self.leases.keep, self.leases.tick,
                                      max_backoff=self.leases.tick, on_error=on_loop_error)
        # Not part of readiness: a missed sample delays scaling, it does not stop jobs.
        self._on_load = on_load
        self._sampler = BackgroundLoop("load-sampler", self._sample_load, LOAD_SAMPLE_SECONDS,
                                       max_backoff=LOAD_SAMPLE_SECONDS, on_error=on_loop_error)

    def start(self) -> None:
        for i in range(self.config.max_concurrent_jobs):
            thread = threading.Thread(target=self._dispatch_loop, name=f"dispatch-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._keeper.start()
        self._reaper.start()
        if self._on_load is not None:
            self._sampler.start()

    def load(self) -> tuple[int, int]:
        """(jobs running here now, jobs queued here waiting for a dispatch thread)."""
        running = len(self.leases.runs())
        with self._changed:
            local = len(self._local)
        return running, max(0, local - running)

    def _sample_load(self) -> None:
        if self._on_load is not None:
            self._on_load(*self.load(), self.config.max_concurrent_jobs)

    def has_room(self) -> bool:
        return self._queue.qsize() < self.config.max_queued_jobs

    def create(self, job_input: dict[str, Any], request_id: str | None, job_id: str | None = None,
               request_hash: str | None = None) -> tuple[str, bool]:
        """Record a new job as queued under this process's lease and queue it here:
        ``(job id, False)``. With ``job_id`` and ``request_hash`` (an idempotent submit):
        if that job exists already and was created by the same request, ``(job id, True)``
        and nothing is recorded or queued; by another request, ``IdempotencyKeyReused``.
        Raises ``QueueFull`` (nothing recorded) or the store's errors."""
        if not self.has_room():
            raise QueueFull(f"{self.config.max_queued_jobs} jobs are waiting to run here")
        job_id = job_id or str(uuid.uuid4())
        try:
            self.store.create(job_id, job_input, self.owner, self.lease_ms, request_hash)
        except JobExists as exc:
            if request_hash is None:
                raise
            if exc.current is None or exc.current.get("requestHash") != request_hash:
                raise IdempotencyKeyReused(f"job {job_id} was created by another request") from None
            return job_id, True
        self.submit(job_id, request_id)
        return job_id, False

    def submit(self, job_id: str, request_id: str | None) -> bool:
        """Queue a job here unless it already is; False if it was."""
        with self._changed:
            if job_id in self._local:
                return False
            self._local.add(job_id)
        self._queue.put((job_id, request_id))
        return True

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (wherever it runs) and stop its run if it runs
        here; elsewhere, the lease keeper of the replica running it stops it. Raises the
        store's ``JobNotFound`` or ``IllegalTransition`` (the job already ended)."""
        job = self.store.cancel(job_id)
        stopped = self.leases.cancel(job_id)
        log.info("job canceled", jobId=job_id, stoppedHere=stopped)
        self._on_finish(job, None)
        return job

    def readiness(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Whether this dispatcher does its work, and each part's health (``GET /readyz``)."""
        alive = sum(thread.is_alive() for thread in self._threads)
        dispatch_ok = bool(self._threads) and alive == len(self._threads)
        parts = {"reaper": self._reaper.health(), "leaseKeeper": self._keeper.health(),
                 "dispatch": {"ok": dispatch_ok, "threadsAlive": alive}}
        return all(part["ok"] for part in parts.values()), parts

    # -- stopping -----------------------------------------------------------------------

    def stop(self, grace_seconds: float) -> None:
        """Stop within ``grace_seconds`` (plus a few for abandoned runs to record their end);
        see the module docstring for what happens to queued and running jobs."""
        if self._closing.is_set():
            return
        self._closing.set()
        deadline = time.monotonic() + grace_seconds
        if self._threads and not self.store.shared:  # nobody else would run them: run the queue down
            self._wait(lambda: not self._local, deadline)
        self._halting.set()
        for _ in self._threads:
            self._queue.put(None)
        self._wait(lambda: not self.leases.runs(), deadline)
        self.leases.abandon_all(f"the orchestrator stopped (shutdown grace of {grace_seconds:g} s ended)")
        join_by = time.monotonic() + STOP_JOIN_SECONDS
        for thread in self._threads:
            thread.join(max(0.0, join_by - time.monotonic()))
        with self._changed:
            leftover = sorted(self._local)
        for job_id in leftover:
            if self.store.shared:
                self._hand_back(job_id)
            else:
                self._fail_unstarted(job_id)
        self._reaper.stop()
        self._keeper.stop()
        self._sampler.stop()

    def _wait(self, done: Callable[[], bool], deadline: float) -> None:
        with self._changed:
            while not done() and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(min(left, 0.1))  # runs() changes without a notification

    def _hand_back(self, job_id: str) -> None:
        try:
            self.store.release(job_id, self.owner)
            log.info("job handed back", jobId=job_id)
        except StoreError as exc:
            log.warning("could not hand job back; its lease will expire", jobId=job_id, reason=str(exc))

    def _fail_unstarted(self, job_id: str) -> None:
        error = "the orchestrator stopped before the job could run; submit it again"
        token = logjson.job_id.set(job_id)  # for the metrics line too
        try:
            finished = self.store.finish(job_id, self.owner, JobState.FAILED, error=error)
            log.warning("job failed", jobError=error)
            self._on_finish(finished, finished)
        except StoreError as exc:
            log.error("could not fail a job at shutdown", exc=exc)
        finally:
            logjson.job_id.reset(token)

    # -- threads ----------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        name = threading.current_thread().name
        while True:
            item = self._queue.get()
            if item is None or self._halting.is_set():
                return
            job_id, request_id = item
            try:
                self._dispatch_one(job_id, request_id)
            except Exception as exc:  # a dispatch thread must survive anything
                log.error("background loop failed", exc=exc, loop=name, jobId=job_id)
                self._on_loop_error(name)

    def _dispatch_one(self, job_id: str, request_id: str | None) -> None:
        rid_token = logjson.request_id.set(request_id)
        job_token = logjson.job_id.set(job_id)
        try:
            self._execute(job_id, request_id)
        finally:
            with self._changed:
                self._local.discard(job_id)
                self._changed.notify_all()
            logjson.job_id.reset(job_token)
            logjson.request_id.reset(rid_token)

    def _reap(self) -> None:
        """One reaper pass: queue here the active jobs whose lease expired."""
        if self._closing.is_set():
            return
        for job_id in self.store.expired(limit=self.config.max_concurrent_jobs):
            if self.has_room() and self.submit(job_id, None):
                log.info("recovering job with expired lease", jobId=job_id)

    # -- one job ----------------------------------------------------------------------

    def _execute(self, job_id: str, request_id: str | None) -> None:
        sent = self.leases.now()
        job = self.store.claim(job_id, self.owner, self.lease_ms)
        if job is None:
            log.info("job not claimable here; skipped")
            return
        log.info("job claimed", attempt=job["attempts"], owner=self.owner)
        run = self.leases.hold(job_id, job["progress"], sent)
        try:
            outcome = self._outcome(run, job, request_id)
            if outcome is not None and not run.lease_lost:
                self._finish(run, job, *outcome)
        finally:
            self.leases.drop(run)

    def _outcome(self, run: Run, job: dict[str, Any], request_id: str | None) -> tuple[JobState, dict] | None:
        """How the run ends the job: ``(state, fields)`` to finish it with, or None to
        leave it to another run (lease lost, or handed back at shutdown)."""
        if job["attempts"] > self.config.max_job_attempts:
            return JobState.FAILED, {"error": (
                f"gave up after {job['attempts'] - 1} attempts: the orchestrator running the job stopped each time "
                f"before it finished (lease of {self.config.lease_seconds:g} s expired)")}
        try:
            return JobState.DONE, {"result": self._run_with_retries(run, job, request_id)}
        except WorkerError as exc:
            log.error("job failed", exc=exc, workerUrl=self.client.base_url, jobError=exc.public)
            return JobState.FAILED, {"error": exc.public}
        except RunAbandoned:
            return self._abandoned(run)

    def _abandoned(self, run: Run) -> tuple[JobState, dict] | None:
        if run.canceled:
            log.info("job canceled; its run stopped")
            return None
        if run.lease_lost:
            log.warning("lease lost: another orchestrator may own the job now; abandoning this run",
                        reason=run.abandoned)
            return None
        if self.store.shared:
            self._hand_back(run.job_id)
            return None
        error = f"{run.abandoned} while the job was running; submit it again"
        log.warning("job failed", jobError=error)
        return JobState.FAILED, {"error": error}

    def _run_with_retries(self, run: Run, job: dict[str, Any], request_id: str | None) -> dict[str, Any]:
        c = self.config
        budget = RetryBudget(self._backoff, c.retry_budget_seconds, c.busy_budget_seconds, self._clock, self._rng)
        progress = _ProgressReports(job["progress"], c.progress_write_interval_ms / 1000, self._clock)
        while True:
            try:
                return self._run_once(run, job, request_id, progress)
            except WorkerBusy as exc:
                wait = budget.after_busy(exc.retry_after)
                if wait is None:
                    raise WorkerError(f"the worker stayed busy for {budget.busy_spent:.0f} s; gave up waiting",
                                      f"{exc.detail} (gave up after {budget.busy_waits} busy answers)",
                                      transient=True) from None
                log.info("worker busy; waiting", reason=exc.detail, retryInSeconds=round(wait, 3))
            except WorkerError as exc:
                if not exc.transient:
                    raise
                wait = budget.after_fault()
                if wait is None:
                    spent = budget.faulty_for()
                    retries = f"{budget.retries} {'retry' if budget.retries == 1 else 'retries'}"
                    raise WorkerError(f"{exc.public}; gave up after retrying for {spent:.0f} s ({retries})",
                                      f"{exc.detail} (gave up after {retries} in {spent:.1f} s)",
                                      transient=True) from None
                log.warning("worker call failed; retrying", reason=exc.detail, attempt=budget.retries,
                            retryInSeconds=round(wait, 3))
            if run.wait(wait):
                raise RunAbandoned()

    def _run_once(self, run: Run, job: dict[str, Any], request_id: str | None,
                  progress: _ProgressReports) -> dict[str, Any]:
        """One worker call, abortable through ``run``: its progress events become
        heartbeats (see ``_ProgressReports``), its result event is the job's output."""
        call = self.client.call(job["jobId"], job["input"], request_id)
        run.attach(call)
        try:
            for event in call.events():
                if event["event"] == "result":
                    return event["output"]
                if event["event"] != "progress" or not isinstance(event.get("progress"), (int, float)):
                    continue
                reported = running_progress(event["progress"])  # what the store would record
                # After a failed write, progress waits for the keeper to get a renewal through:
                # writes to an unreachable store take seconds, and the stream must keep flowing.
                if not run.write_failed and progress.due(reported):
                    self._heartbeat(run, reported)
        except CallAborted:
            raise RunAbandoned() from None
        finally:
            run.detach()
        raise AssertionError("unreachable: events() ends with a result or raises")

    def _heartbeat(self, run: Run, progress: float) -> None:
        try:
            self.leases.heartbeat(run, progress)
        except StoreUnavailable as exc:  # keep working; the keeper renews, the next report may get through
            log.warning("progress not recorded", reason=str(exc))
        except (LeaseLost, JobNotFound):
            raise RunAbandoned() from None

    def _finish(self, run: Run, job: dict[str, Any], state: JobState, fields: dict[str, Any]) -> None:
        """Record the job's end, retrying a store outage until the run's lease would expire
        (a later write could land after another replica has taken the job over)."""
        tries = 0
        while True:
            try:
                finished = self.leases.finish(run, state, **fields)
            except StoreUnavailable as exc:
                wait = self._backoff.delay(tries, self._rng)
                tries += 1
                if run.lease_lost or self._clock() + wait >= run.expires:
                    log.error("job end not recorded before the lease expired; the job will run again",
                              exc=exc, tries=tries)
                    return
                log.warning("could not record job end; retrying", reason=str(exc), attempt=tries,
                            retryInSeconds=round(wait, 3))
                time.sleep(wait)
                continue
            except StoreError as exc:  # finished elsewhere, or the lease moved on
                log.warning("job end not recorded", reason=str(exc))
                return
            log.info("job finished", state=state.value, attempts=finished["attempts"])
            self._on_finish(finished, job)
            return


class _ProgressReports:
    """Which of one run's progress reports to write: those above the best this run has
    written, at most once per write interval. (Lease renewal is the keeper's job.) The store
    keeps recorded progress from going down."""

    def __init__(self, recorded: float, interval: float, clock: Callable[[], float]):
        self._best, self._interval, self._clock = recorded, interval, clock
        self._last_write = clock()

    def due(self, reported: float) -> bool:
        """True if ``reported`` should be written now; then it counts as written."""
        now = self._clock()
        if reported <= self._best or now - self._last_write < self._interval:
            return False
        self._best, self._last_write = reported, now
        return True
