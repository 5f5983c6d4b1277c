"""Unit tests for dispatcher: Dispatcher with a MemoryStore and scripted fake workers
(creation, retries, give-up, progress, leases, hand-back, reaper)."""

from __future__ import annotations

import dataclasses
import time

import pytest

import scene
import worker
from conftest import serving_in_thread
from dispatcher import DispatchConfig, Dispatcher, QueueFull
from fakeworker import OUTPUT, PAYLOAD, RESULT, error_json, fake_workers, line, progress, stream
from httpserver import Server
from logcapture import wait_for_line
from polling import wait_until
from store import MemoryStore
from workerclient import WorkerClient

OWNER = "orch-test"


@pytest.fixture
def fakes(dispatchers):
    """FakeWorkers, closed after the test before its dispatchers stop (so a dispatcher
    thread waiting on a fake's gate is let go first)."""
    with fake_workers() as make:
        yield make


class RecordingStore(MemoryStore):
    """A MemoryStore that records the progress of every heartbeat."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.heartbeats: list[float] = []

    def heartbeat(self, job_id, owner, progress, lease_ms):
        self.heartbeats.append(progress)
        super().heartbeat(job_id, owner, progress, lease_ms)


@pytest.fixture
def dispatchers():
    """Makes Dispatchers with test-friendly settings (no backoff, no reaper unless asked)
    and stops them after the test."""
    made: list[Dispatcher] = []

    def make(store, url: str, **overrides) -> Dispatcher:
        config = DispatchConfig(worker_url=url, max_concurrent_jobs=2, dispatch_attempts=3, retry_backoff_ms=0,
                                worker_connect_timeout_seconds=2.0, worker_timeout_seconds=5.0, lease_seconds=30.0,
                                max_job_attempts=3, progress_write_interval_ms=0, reaper_interval_seconds=3600.0)
        config = dataclasses.replace(config, **overrides)
        wc = WorkerClient(config.worker_url, config.worker_connect_timeout_seconds, config.worker_timeout_seconds)
        made.append(Dispatcher(store, wc, config, OWNER))
        return made[-1]

    yield make
    for d in made:
        d.stop(5.0)


def create_and_submit(store: MemoryStore, d: Dispatcher, job_id: str, request_id: str | None = "req-1") -> None:
    store.create(job_id, PAYLOAD, OWNER, d.lease_ms)
    assert d.submit(job_id, request_id) is True


def wait_finished(store: MemoryStore, job_id: str, timeout: float = 10.0) -> dict:
    wait_until(lambda: store.get(job_id)["state"] in ("done", "failed"), timeout, f"job {job_id} finished")
    return store.get(job_id)


def test_job_runs_on_a_real_worker_and_is_done_with_its_output(dispatchers):
    app = worker.Worker(worker.WorkerConfig(work_ms=0))
    with serving_in_thread(Server(("127.0.0.1", 0), worker.WorkerHandler, app)) as port:
        store = MemoryStore()
        d = dispatchers(store, f"http://127.0.0.1:{port}")
        d.start()
        create_and_submit(store, d, "job-real")
        job = wait_finished(store, "job-real")
    assert (job["state"], job["progress"], job["error"], job["attempts"], job["leaseExpiresAt"]) == (
        "done", 1.0, None, 1, None)
    assert job["result"] == scene.build_scene("a spooky hallway", 123, "doom")


def test_transient_failure_is_retried_and_then_succeeds(fakes, dispatchers, logs):
    fake = fakes(error_json(500, "boom"), stream(progress(0.5), RESULT))
    store = MemoryStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-retry", "req-retry")
    job = wait_finished(store, "job-retry")
    assert (job["state"], job["result"], job["error"], job["attempts"]) == ("done", OUTPUT, None, 1)
    assert [r["headers"]["X-Request-Id"] for r in fake.requests] == ["req-retry", "req-retry"]
    assert wait_for_line(logs, lambda x: x["message"] == "worker call failed; retrying") == {
        "level": "WARNING", "service": "test", "message": "worker call failed; retrying",
        "requestId": "req-retry", "jobId": "job-retry", "reason": "worker answered HTTP 500: boom",
        "attempt": 1, "retryInSeconds": 0.0}


def test_transient_failures_give_up_after_dispatch_attempts(fakes, dispatchers):
    fake = fakes(error_json(503, "busy"))
    store = MemoryStore()
    d = dispatchers(store, fake.url, dispatch_attempts=3)
    d.start()
    create_and_submit(store, d, "job-busy")
    job = wait_finished(store, "job-busy")
    assert (job["state"], job["result"], job["error"]) == (
        "failed", None, "worker answered HTTP 503: busy (gave up after 3 attempts)")
    assert len(fake.requests) == 3


def test_unreachable_worker_fails_the_job_after_dispatch_attempts(dispatchers, refused_port):
    url = f"http://127.0.0.1:{refused_port}"
    store = MemoryStore()
    d = dispatchers(store, url, dispatch_attempts=2)
    d.start()
    create_and_submit(store, d, "job-down")
    job = wait_finished(store, "job-down")
    assert (job["state"], job["error"]) == (
        "failed", f"worker unreachable at {url}: [Errno 111] Connection refused (gave up after 2 attempts)")


def test_permanent_failure_fails_at_once_without_retry(fakes, dispatchers, logs):
    fake = fakes(error_json(400, "payload: seed is required"), stream(RESULT))
    store = MemoryStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-bad", "req-bad")
    job = wait_finished(store, "job-bad")
    assert (job["state"], job["error"]) == ("failed", "worker answered HTTP 400: payload: seed is required")
    assert len(fake.requests) == 1
    line = wait_for_line(logs, lambda x: x["message"] == "job failed")
    assert line["error"].pop("stack").splitlines()[-1] == "workerclient.WorkerError: worker answered HTTP 400: payload: seed is required"
    assert line == {
        "level": "ERROR", "service": "test", "message": "job failed", "requestId": "req-bad",
        "jobId": "job-bad", "workerUrl": fake.url,
        "error": {"type": "WorkerError", "message": "worker answered HTTP 400: payload: seed is required"}}


def test_result_without_ok_true_fails_the_job_without_retry(fakes, dispatchers):
    fake = fakes(stream(line({"event": "result", "ok": False, "output": OUTPUT})))
    store = MemoryStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-notok")
    job = wait_finished(store, "job-notok")
    assert (job["state"], job["error"]) == ("failed", "worker's result has no ok=true and output object")
    assert len(fake.requests) == 1


def test_progress_is_recorded_monotonic_and_capped_below_1_while_running(fakes, dispatchers):
    fake = fakes()
    gate = fake.gate()
    fake.answers.append(stream(progress(0.2), progress(0.1), progress(0.5), progress(1.0), gate=gate,
                               after_gate=(RESULT,)))
    store = RecordingStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-progress")
    wait_until(lambda: store.get("job-progress")["progress"] == 0.99, what="progress 0.99")
    assert store.get("job-progress")["state"] == "running"
    assert store.heartbeats == [0.2, 0.5, 0.99]  # the lower 0.1 is not written
    gate.set()
    job = wait_finished(store, "job-progress")
    assert (job["state"], job["progress"]) == ("done", 1.0)


def test_a_run_below_the_recorded_progress_still_renews_its_lease(fakes, dispatchers):
    """A retry's worker starts again from 0: no progress to record, but the lease must not lapse."""
    fake = fakes()
    gate = fake.gate()
    fake.answers.append(stream(progress(0.5), gate=gate, after_gate=(progress(0.5), RESULT)))
    store = RecordingStore()
    d = dispatchers(store, fake.url, lease_seconds=0.03)  # renew after 10 ms without a write
    d.start()
    create_and_submit(store, d, "job-renew")
    wait_until(lambda: store.heartbeats == [0.5], what="first heartbeat")
    time.sleep(0.05)  # let more than a third of the lease pass before the repeated progress
    gate.set()
    assert wait_finished(store, "job-renew")["state"] == "done"
    assert store.heartbeats == [0.5, 0.5]


def test_progress_writes_are_throttled_by_the_write_interval(fakes, dispatchers):
    fake = fakes(stream(progress(0.2), progress(0.4), progress(0.6), RESULT))
    store = RecordingStore()
    d = dispatchers(store, fake.url, progress_write_interval_ms=60_000)
    d.start()
    create_and_submit(store, d, "job-quiet")
    assert wait_finished(store, "job-quiet")["state"] == "done"
    assert store.heartbeats == []


def test_job_past_max_job_attempts_fails_with_the_gave_up_lease_message(fakes, dispatchers):
    fake = fakes(stream(RESULT))
    store = MemoryStore()
    store.create("job-cursed", PAYLOAD, "dead-0", 0)
    for n in range(1, 4):  # three orchestrators claimed it and died, each leaving its lease to expire
        assert store.claim("job-cursed", f"dead-{n}", 0)["attempts"] == n
    d = dispatchers(store, fake.url, max_job_attempts=3)
    d.start()
    assert d.submit("job-cursed", None)
    job = wait_finished(store, "job-cursed")
    assert (job["state"], job["attempts"], job["error"]) == (
        "failed", 4, "gave up after 3 attempts: the orchestrator running the job stopped each time before "
                     "it finished (lease of 30 s expired)")
    assert fake.requests == []


def test_create_records_a_queued_job_under_this_owner_and_lease_and_queues_it(dispatchers):
    store = MemoryStore(clock=lambda: 1_800_000_000.0)
    d = dispatchers(store, "http://127.0.0.1:9", lease_seconds=12)  # not started: the job stays queued
    job_id = d.create(PAYLOAD, "req-new")
    job = store.get(job_id)
    assert (job["state"], job["input"], job["owner"], job["leaseExpiresAt"], job["attempts"]) == (
        "queued", PAYLOAD, OWNER, 1_800_000_012_000, 0)
    assert d.submit(job_id, None) is False  # already queued here


def test_create_with_a_full_queue_raises_queue_full_and_records_nothing(dispatchers):
    store = MemoryStore()
    d = dispatchers(store, "http://127.0.0.1:9", max_queued_jobs=2)
    d.create(PAYLOAD, None)
    d.create(PAYLOAD, None)
    with pytest.raises(QueueFull) as info:
        d.create(PAYLOAD, None)
    assert str(info.value) == "2 jobs are waiting to run here"
    assert len(store) == 2


def test_submit_refuses_a_job_already_queued_here_and_has_room_counts_the_queue(dispatchers):
    store = MemoryStore()
    d = dispatchers(store, "http://127.0.0.1:9", max_queued_jobs=1)  # not started: jobs stay queued
    assert d.has_room() is True
    assert (d.submit("job-a", None), d.submit("job-a", None)) == (True, False)
    assert d.has_room() is False


def test_stop_hands_back_running_and_queued_jobs(fakes, dispatchers, logs):
    fake = fakes()
    gate = fake.gate()
    fake.answers.append(stream(progress(0.3), gate=gate, after_gate=(RESULT,)))
    store = MemoryStore()
    d = dispatchers(store, fake.url, max_concurrent_jobs=1)
    d.start()
    create_and_submit(store, d, "job-running")
    create_and_submit(store, d, "job-waiting")
    wait_until(lambda: store.get("job-running")["progress"] == 0.3, what="job-running in progress")
    d.stop(0.2)
    running, waiting = store.get("job-running"), store.get("job-waiting")
    assert (running["state"], running["leaseExpiresAt"], waiting["state"], waiting["leaseExpiresAt"]) == (
        "running", 0, "queued", 0)
    assert sorted(store.expired(limit=10)) == ["job-running", "job-waiting"]
    handed = [x["jobId"] for x in logs.lines() if x["message"] == "job handed back"]
    assert sorted(handed) == ["job-running", "job-waiting"]
    assert len(fake.requests) == 1


def test_reaper_runs_a_job_whose_lease_expired(fakes, dispatchers, logs):
    fake = fakes(stream(progress(0.5), RESULT))
    store = MemoryStore()
    store.create("job-orphan", PAYLOAD, "dead-orchestrator", 0)
    d = dispatchers(store, fake.url, reaper_interval_seconds=0.05)
    d.start()
    job = wait_finished(store, "job-orphan")
    assert (job["state"], job["owner"], job["attempts"], job["result"]) == ("done", OWNER, 1, OUTPUT)
    line = wait_for_line(logs, lambda x: x["message"] == "recovering job with expired lease")
    assert line == {"level": "INFO", "service": "test", "message": "recovering job with expired lease",
                    "jobId": "job-orphan"}
    assert "X-Request-Id" not in fake.requests[0]["headers"]


def test_reaper_leaves_jobs_with_a_live_lease_alone(fakes, dispatchers):
    fake = fakes(stream(RESULT))
    store = MemoryStore()
    store.create("job-live", PAYLOAD, "other-orchestrator", 60_000)
    store.create("job-orphan", PAYLOAD, "dead-orchestrator", 0)
    d = dispatchers(store, fake.url, reaper_interval_seconds=0.05)
    d.start()
    wait_finished(store, "job-orphan")  # the reaper has run since both jobs existed
    live = store.get("job-live")
    assert (live["state"], live["owner"], live["attempts"]) == ("queued", "other-orchestrator", 0)
    assert [r["body"]["jobId"] for r in fake.requests] == ["job-orphan"]


def test_lost_lease_abandons_the_run_without_finishing_the_job(fakes, dispatchers, logs):
    fake = fakes()
    gate = fake.gate()
    fake.answers.append(stream(progress(0.3), gate=gate, after_gate=(progress(0.6), RESULT)))
    store = MemoryStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-stolen", "req-stolen")
    wait_until(lambda: store.get("job-stolen")["progress"] == 0.3, what="job-stolen in progress")
    store.release("job-stolen", OWNER)
    assert store.claim("job-stolen", "thief", 60_000)["owner"] == "thief"
    gate.set()
    line = wait_for_line(logs, lambda x: x["message"].startswith("lease lost"))
    assert line == {"level": "WARNING", "service": "test",
                    "message": "lease lost: another orchestrator owns the job now; abandoning this run",
                    "requestId": "req-stolen", "jobId": "job-stolen"}
    job = store.get("job-stolen")
    assert (job["state"], job["owner"], job["progress"], job["result"]) == ("running", "thief", 0.3, None)
