"""Runs jobs for the orchestrator: a bounded pool of dispatch threads, calls to the worker
(``workerclient``) with bounded retries, leases (claim, heartbeat, hand back) and crash
recovery.

Flow of one job: ``create`` records it as queued under this process's lease and
``submit``s it, which puts its id on a local queue; a dispatch thread ``claim``s it
in the store (queued -> running, under this process's lease), streams ``POST /process``
from the worker, records progress with ``heartbeat`` (which also extends the lease), and
``finish``es it as done or failed. A reaper thread asks the store for active jobs whose
lease expired (their orchestrator died or handed them back) and runs them here.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import logjson
from logjson import log
from store import JobState, JobStore, LeaseLost, StoreError, StoreUnavailable, running_progress
from workerclient import WorkerClient, WorkerError


@dataclass(frozen=True)
class DispatchConfig:
    worker_url: str = "http://127.0.0.1:8081"
    max_concurrent_jobs: int = 8
    max_queued_jobs: int = 1000
    dispatch_attempts: int = 3
    retry_backoff_ms: int = 500
    worker_connect_timeout_seconds: float = 2.0
    worker_timeout_seconds: float = 10.0
    lease_seconds: float = 30.0
    max_job_attempts: int = 3
    progress_write_interval_ms: int = 0
    reaper_interval_seconds: float = 5.0


class QueueFull(Exception):
    """This orchestrator already holds ``max_queued_jobs`` jobs waiting to run."""


class Dispatcher:
    """Bounded-concurrency job runner bound to one store and one owner id."""

    def __init__(self, store: JobStore, client: WorkerClient, config: DispatchConfig, owner: str,
                 on_finish: Callable[[dict[str, Any], dict[str, Any]], None] | None = None):
        self.store, self.client, self.config, self.owner = store, client, config, owner
        self.lease_ms = int(config.lease_seconds * 1000)
        self._on_finish = on_finish or (lambda finished, claimed: None)
        self._queue: queue.Queue[tuple[str, str | None] | None] = queue.Queue()
        self._local: set[str] = set()  # ids queued or running here
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.config.max_concurrent_jobs):
            self._spawn(self._dispatch_loop, f"dispatch-{i}")
        self._spawn(self._reaper_loop, "reaper")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def has_room(self) -> bool:
        return self._queue.qsize() < self.config.max_queued_jobs

    def create(self, job_input: dict[str, Any], request_id: str | None) -> str:
        """Record a new job as queued under this process's lease, queue it here, and
        return its id. Raises ``QueueFull`` (nothing recorded) or the store's errors."""
        if not self.has_room():
            raise QueueFull(f"{self.config.max_queued_jobs} jobs are waiting to run here")
        job_id = str(uuid.uuid4())
        self.store.create(job_id, job_input, self.owner, self.lease_ms)
        self.submit(job_id, request_id)
        return job_id

    def submit(self, job_id: str, request_id: str | None) -> bool:
        """Queue a job here unless it already is; False if it was."""
        with self._lock:
            if job_id in self._local:
                return False
            self._local.add(job_id)
        self._queue.put((job_id, request_id))
        return True

    def stop(self, grace_seconds: float) -> None:
        """Stop taking jobs, let running ones finish within ``grace_seconds``, and hand
        back (release the lease of) whatever is still queued or running here."""
        self._stopping.set()
        for _ in range(self.config.max_concurrent_jobs):
            self._queue.put(None)
        deadline = time.monotonic() + grace_seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            leftover = sorted(self._local)
        for job_id in leftover:
            try:
                self.store.release(job_id, self.owner)
                log.info("job handed back", jobId=job_id)
            except StoreError as exc:
                log.warning("could not hand job back; its lease will expire", jobId=job_id, reason=str(exc))

    # -- threads ----------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            item = self._queue.get()
            if item is None or self._stopping.is_set():
                return
            job_id, request_id = item
            rid_token = logjson.request_id.set(request_id)
            job_token = logjson.job_id.set(job_id)
            try:
                self._execute(job_id, request_id)
            except Exception as exc:  # a dispatch thread must survive anything
                log.error("dispatch failed", exc=exc)
            finally:
                with self._lock:
                    self._local.discard(job_id)
                logjson.job_id.reset(job_token)
                logjson.request_id.reset(rid_token)

    def _reaper_loop(self) -> None:
        while not self._stopping.wait(self.config.reaper_interval_seconds):
            try:
                expired = self.store.expired(limit=self.config.max_concurrent_jobs)
            except StoreError as exc:
                log.warning("could not look for expired jobs", reason=str(exc))
                continue
            for job_id in expired:
                if self.has_room() and self.submit(job_id, None):
                    log.info("recovering job with expired lease", jobId=job_id)

    # -- one job ----------------------------------------------------------------------

    def _execute(self, job_id: str, request_id: str | None) -> None:
        job = self.store.claim(job_id, self.owner, self.lease_ms)
        if job is None:
            log.info("job not claimable here; skipped")
            return
        log.info("job claimed", attempt=job["attempts"], owner=self.owner)
        if job["attempts"] > self.config.max_job_attempts:
            self._finish(job, JobState.FAILED, error=(
                f"gave up after {job['attempts'] - 1} attempts: the orchestrator running the job stopped "
                f"each time before it finished (lease of {self.config.lease_seconds:g} s expired)"))
            return
        try:
            output = self._run_with_retries(job, request_id)
        except WorkerError as exc:
            log.error("job failed", exc=exc, workerUrl=self.client.base_url)
            self._finish(job, JobState.FAILED, error=str(exc))
        except LeaseLost:
            log.warning("lease lost: another orchestrator owns the job now; abandoning this run")
        else:
            self._finish(job, JobState.DONE, result=output)

    def _run_with_retries(self, job: dict[str, Any], request_id: str | None) -> dict[str, Any]:
        attempts = self.config.dispatch_attempts
        progress = _ProgressReports(job["progress"])
        for attempt in range(1, attempts + 1):
            try:
                return self._run_once(job["jobId"], job["input"], request_id, progress)
            except WorkerError as exc:
                if not exc.transient:
                    raise
                if attempt == attempts:
                    raise WorkerError(f"{exc} (gave up after {attempts} attempts)", transient=True) from None
                delay = self.config.retry_backoff_ms / 1000 * 2 ** (attempt - 1)
                log.warning("worker call failed; retrying", reason=str(exc), attempt=attempt, retryInSeconds=delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _run_once(self, job_id: str, job_input: dict[str, Any], request_id: str | None,
                  progress: _ProgressReports) -> dict[str, Any]:
        """One worker call: its progress events become heartbeats (see ``_ProgressReports``),
        its result event is the job's output."""
        interval, renew_after = self.config.progress_write_interval_ms / 1000, self.config.lease_seconds / 3
        for event in self.client.process(job_id, job_input, request_id):
            if event["event"] == "result":
                return event["output"]
            if event["event"] != "progress" or not isinstance(event.get("progress"), (int, float)):
                continue
            reported = running_progress(event["progress"])  # what the store would record
            if progress.due(reported, interval, renew_after):
                self._heartbeat(job_id, reported)
        raise AssertionError("unreachable: process() ends with a result or raises")

    def _heartbeat(self, job_id: str, progress: float) -> None:
        try:
            self.store.heartbeat(job_id, self.owner, progress, self.lease_ms)
        except StoreUnavailable as exc:  # keep working; the next heartbeat may get through
            log.warning("progress not recorded", reason=str(exc))

    def _finish(self, job: dict[str, Any], state: JobState, **fields: Any) -> None:
        delay = 0.2
        for attempt in range(1, 6):
            try:
                finished = self.store.finish(job["jobId"], self.owner, state, **fields)
            except StoreUnavailable as exc:
                log.warning("could not record job end; retrying", reason=str(exc), attempt=attempt)
                time.sleep(delay)
                delay *= 2
                continue
            except StoreError as exc:  # finished elsewhere, or the lease moved on
                log.warning("job end not recorded", reason=str(exc))
                return
            log.info("job finished", state=state.value, attempts=finished["attempts"])
            self._on_finish(finished, job)
            return
        log.error("job end not recorded; the lease will expire and the job will be retried")


class _ProgressReports:
    """Which of one run's progress reports to write. A report is written when it is above
    the best this run has written (at most once per write interval), or when a third of
    the lease has passed since the last write, so that a retry still below an earlier
    run's progress keeps its lease. The store keeps recorded progress from going down."""

    def __init__(self, recorded: float):
        self._best = recorded
        self._last_write = time.monotonic()

    def due(self, reported: float, interval: float, renew_after: float) -> bool:
        """True if ``reported`` should be written now; then it counts as written."""
        now = time.monotonic()
        since = now - self._last_write
        if since < interval or (reported <= self._best and since < renew_after):
            return False
        self._best, self._last_write = max(self._best, reported), now
        return True
