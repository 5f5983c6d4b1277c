"""Unit tests for dispatcher: Dispatcher with a MemoryStore and scripted fake workers
(creation, retries within the budget, busy workers, public errors, progress, leases kept and
lost, the finish write, shutdown in both store modes, the reaper, readiness)."""

from __future__ import annotations

import dataclasses
import re

import pytest

import scene
import worker
from conftest import serving_in_thread
from dispatcher import DispatchConfig, Dispatcher, QueueFull
from fakeworker import OUTPUT, PAYLOAD, RESULT, error_json, fake_workers, line, progress, stream
from httpserver import Server
from logcapture import wait_for_line
from polling import wait_until
from store import JobState, MemoryStore, StoreUnavailable
from workerclient import WorkerClient

OWNER = "orch-test"


@pytest.fixture
def fakes(dispatchers):
    """FakeWorkers, closed after the test before its dispatchers stop (so a dispatcher
    thread waiting on a fake's gate is let go first)."""
    with fake_workers() as make:
        yield make


class RecordingStore(MemoryStore):
    """A MemoryStore that records the progress of every heartbeat and counts renewals."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.heartbeats: list[float] = []
        self.renewals = 0

    def heartbeat(self, job_id, owner, progress, lease_ms):
        self.heartbeats.append(progress)
        super().heartbeat(job_id, owner, progress, lease_ms)

    def renew(self, job_id, owner, lease_ms):
        self.renewals += 1
        super().renew(job_id, owner, lease_ms)


class SharedStore(MemoryStore):
    """A MemoryStore standing in for one that other replicas share (DynamoDB)."""

    shared = True


class FlakyStore(MemoryStore):
    """A MemoryStore whose next ``finish_failures`` finishes fail (and every heartbeat
    meanwhile, if ``writes_down``), and whose ``expired`` calls fail while
    ``expired_failures`` holds exceptions."""

    def __init__(self, finish_failures: int = 0, expired_failures: tuple[Exception, ...] = (),
                 writes_down: bool = False):
        super().__init__()
        self.finish_failures = finish_failures
        self.expired_failures = list(expired_failures)
        self.writes_down = writes_down
        self.finish_calls = 0

    def heartbeat(self, job_id, owner, progress, lease_ms):
        self._check_writes()
        super().heartbeat(job_id, owner, progress, lease_ms)

    def renew(self, job_id, owner, lease_ms):
        self._check_writes()
        super().renew(job_id, owner, lease_ms)

    def _check_writes(self):
        if self.writes_down and self.finish_failures:
            raise StoreUnavailable("DynamoDB table jobs: ThrottlingException: slow down")

    def finish(self, job_id, owner, state, **fields):
        self.finish_calls += 1
        if self.finish_failures:
            self.finish_failures -= 1
            raise StoreUnavailable("DynamoDB table jobs: ThrottlingException: slow down")
        return super().finish(job_id, owner, state, **fields)

    def expired(self, limit):
        if self.expired_failures:
            raise self.expired_failures.pop(0)
        return super().expired(limit)


@pytest.fixture
def dispatchers():
    """Makes Dispatchers with test-friendly settings (no retry budget, 10 ms backoff without
    jitter, no reaper unless asked) and stops them after the test."""
    made: list[Dispatcher] = []

    def make(store, url: str, **overrides) -> Dispatcher:
        config = DispatchConfig(worker_url=url, max_concurrent_jobs=2, retry_budget_seconds=0.0,
                                busy_budget_seconds=5.0, retry_backoff_ms=10, retry_backoff_max_ms=50,
                                worker_connect_timeout_seconds=2.0, worker_timeout_seconds=5.0, lease_seconds=30.0,
                                max_job_attempts=3, progress_write_interval_ms=0, reaper_interval_seconds=3600.0)
        config = dataclasses.replace(config, **overrides)
        wc = WorkerClient(config.worker_url, config.worker_connect_timeout_seconds, config.worker_timeout_seconds)
        made.append(Dispatcher(store, wc, config, OWNER, rng=lambda: 1.0))
        return made[-1]

    yield make
    for d in made:
        d.stop(1.0)  # a memory-mode stop runs the queue down for up to this long


def create_and_submit(store: MemoryStore, d: Dispatcher, job_id: str, request_id: str | None = "req-1") -> None:
    store.create(job_id, PAYLOAD, OWNER, d.lease_ms)
    assert d.submit(job_id, request_id) is True


def wait_finished(store: MemoryStore, job_id: str, timeout: float = 10.0) -> dict:
    wait_until(lambda: store.get(job_id)["state"] in ("done", "failed"), timeout, f"job {job_id} finished")
    return store.get(job_id)


def busy(retry_after: str = "0"):
    return error_json(503, "the worker is running its limit of 16 jobs; retry later", code="busy",
                      headers={"Retry-After": retry_after})


# -- running, retrying, giving up ---------------------------------------------------------


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
    d = dispatchers(store, fake.url, retry_budget_seconds=30.0)
    d.start()
    create_and_submit(store, d, "job-retry", "req-retry")
    job = wait_finished(store, "job-retry")
    assert (job["state"], job["result"], job["error"], job["attempts"]) == ("done", OUTPUT, None, 1)
    assert [r["headers"]["X-Request-Id"] for r in fake.requests] == ["req-retry", "req-retry"]
    assert wait_for_line(logs, lambda x: x["message"] == "worker call failed; retrying") == {
        "level": "WARNING", "service": "test", "message": "worker call failed; retrying",
        "requestId": "req-retry", "jobId": "job-retry", "reason": f"worker at {fake.url} answered HTTP 500: boom",
        "attempt": 1, "retryInSeconds": 0.01}


def test_while_retrying_the_job_stays_running_without_an_error_then_fails_past_the_budget(dispatchers, refused_port):
    store = MemoryStore()
    d = dispatchers(store, f"http://127.0.0.1:{refused_port}", retry_budget_seconds=1.0, retry_backoff_ms=20,
                    retry_backoff_max_ms=100)
    d.start()
    create_and_submit(store, d, "job-outage")
    snapshots: list[dict] = []
    wait_until(lambda: snapshots.append(store.get("job-outage")) or snapshots[-1]["state"] == "failed",
               10, "the job failed past its budget")
    during = {(s["state"], s["error"]) for s in snapshots[:-1]}
    assert during <= {("queued", None), ("running", None)} and ("running", None) in during
    assert re.fullmatch(r"the worker could not be reached; gave up after retrying for 1 s \(\d+ retries\)",
                        snapshots[-1]["error"]), snapshots[-1]["error"]


def test_a_zero_budget_fails_at_the_first_fault_with_a_public_error_naming_no_url(fakes, dispatchers):
    fake = fakes(error_json(500, "internal error"))
    store = MemoryStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-500")
    job = wait_finished(store, "job-500")
    assert (job["state"], job["result"], job["error"]) == (
        "failed", None, "the worker failed (HTTP 500); gave up after retrying for 0 s (0 retries)")
    assert len(fake.requests) == 1


def test_unreachable_worker_fails_the_job_generically_and_logs_the_url_and_errno(dispatchers, refused_port, logs):
    url = f"http://127.0.0.1:{refused_port}"
    store = MemoryStore()
    d = dispatchers(store, url)
    d.start()
    create_and_submit(store, d, "job-down", "req-down")
    job = wait_finished(store, "job-down")
    public = "the worker could not be reached; gave up after retrying for 0 s (0 retries)"
    assert (job["state"], job["error"]) == ("failed", public)
    line = wait_for_line(logs, lambda x: x["message"] == "job failed")
    assert line["error"].pop("stack").startswith("Traceback")
    assert line == {
        "level": "ERROR", "service": "test", "message": "job failed", "requestId": "req-down", "jobId": "job-down",
        "workerUrl": url, "jobError": public, "error": {
            "type": "WorkerError",
            "message": f"worker unreachable at {url}: [Errno 111] Connection refused (gave up after 0 retries in 0.0 s)"}}


def test_permanent_failure_fails_at_once_without_retry(fakes, dispatchers, logs):
    fake = fakes(error_json(400, "payload: seed is required"), stream(RESULT))
    store = MemoryStore()
    d = dispatchers(store, fake.url, retry_budget_seconds=30.0)
    d.start()
    create_and_submit(store, d, "job-bad", "req-bad")
    job = wait_finished(store, "job-bad")
    assert (job["state"], job["error"]) == ("failed", "the worker refused the job (HTTP 400)")
    assert len(fake.requests) == 1
    line = wait_for_line(logs, lambda x: x["message"] == "job failed")
    detail = f"worker at {fake.url} answered HTTP 400: payload: seed is required"
    assert line["error"].pop("stack").splitlines()[-1] == f"workerclient.WorkerError: {detail}"
    assert line == {
        "level": "ERROR", "service": "test", "message": "job failed", "requestId": "req-bad",
        "jobId": "job-bad", "workerUrl": fake.url, "jobError": "the worker refused the job (HTTP 400)",
        "error": {"type": "WorkerError", "message": detail}}


def test_result_without_ok_true_fails_the_job_without_retry(fakes, dispatchers):
    fake = fakes(stream(line({"event": "result", "ok": False, "output": OUTPUT})))
    store = MemoryStore()
    d = dispatchers(store, fake.url, retry_budget_seconds=30.0)
    d.start()
    create_and_submit(store, d, "job-notok")
    job = wait_finished(store, "job-notok")
    assert (job["state"], job["error"]) == ("failed", "the worker sent an answer that could not be read")
    assert len(fake.requests) == 1


# -- a busy worker ------------------------------------------------------------------------


def test_a_busy_worker_is_waited_for_and_not_counted_as_a_fault(fakes, dispatchers, logs):
    """The fault budget is 0 here: had "busy" counted as a fault, the job would have failed."""
    fake = fakes(busy(), busy(), stream(RESULT))
    store = MemoryStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-busy", "req-busy")
    job = wait_finished(store, "job-busy")
    assert (job["state"], job["error"], len(fake.requests)) == ("done", None, 3)
    waits = [x for x in logs.lines() if x["message"] == "worker busy; waiting"]
    assert [(x["level"], x["jobId"], x["retryInSeconds"]) for x in waits] == [
        ("INFO", "job-busy", 0.1), ("INFO", "job-busy", 0.1)]  # Retry-After 0: the 0.1 s floor


def test_a_worker_busy_past_the_busy_budget_fails_the_job_saying_so(fakes, dispatchers):
    fake = fakes(busy())
    store = MemoryStore()
    d = dispatchers(store, fake.url, busy_budget_seconds=0.25)
    d.start()
    create_and_submit(store, d, "job-saturated")
    job = wait_finished(store, "job-saturated")
    assert (job["state"], job["error"]) == ("failed", "the worker stayed busy for 0 s; gave up waiting")
    assert len(fake.requests) == 4  # waits of 0.1, 0.1 and the 0.05 left of the budget


# -- progress and leases ------------------------------------------------------------------


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


def test_progress_writes_are_throttled_by_the_write_interval(fakes, dispatchers):
    fake = fakes(stream(progress(0.2), progress(0.4), progress(0.6), RESULT))
    store = RecordingStore()
    d = dispatchers(store, fake.url, progress_write_interval_ms=60_000)
    d.start()
    create_and_submit(store, d, "job-quiet")
    assert wait_finished(store, "job-quiet")["state"] == "done"
    assert store.heartbeats == []


def test_a_silent_worker_does_not_let_the_lease_lapse(fakes, dispatchers):
    """The worker says nothing after 0.5; the keeper renews the 0.3 s lease regardless, at
    the best progress this run recorded."""
    fake = fakes()
    gate = fake.gate()
    fake.answers.append(stream(progress(0.5), gate=gate, after_gate=(RESULT,)))
    store = RecordingStore()
    d = dispatchers(store, fake.url, lease_seconds=0.3, worker_timeout_seconds=5.0)
    d.start()
    create_and_submit(store, d, "job-silent")
    wait_until(lambda: store.renewals >= 5, what="renewals while the worker is silent")
    job = store.get("job-silent")
    assert (job["state"], job["owner"], store.heartbeats) == ("running", OWNER, [0.5])
    assert store.expired(limit=10) == []
    gate.set()
    assert wait_finished(store, "job-silent")["state"] == "done"


def test_backing_off_does_not_let_the_lease_lapse(dispatchers, refused_port):
    store = RecordingStore()
    d = dispatchers(store, f"http://127.0.0.1:{refused_port}", lease_seconds=0.3, retry_budget_seconds=30.0,
                    retry_backoff_ms=200, retry_backoff_max_ms=200)
    d.start()
    create_and_submit(store, d, "job-waiting")
    wait_until(lambda: store.renewals >= 5, what="renewals while backing off")
    assert (store.get("job-waiting")["state"], store.get("job-waiting")["error"], store.expired(limit=10)) == (
        "running", None, [])


def test_losing_the_lease_during_a_silent_call_aborts_the_call_and_does_not_finish_the_job(fakes, dispatchers, logs):
    """The worker timeout is 30 s: the run lets go of the worker only because the keeper's
    renewal found another owner."""
    fake = fakes()
    fake.answers.append(stream(progress(0.3), gate=fake.gate(), after_gate=(RESULT,)))
    store = MemoryStore()
    d = dispatchers(store, fake.url, lease_seconds=0.3, worker_timeout_seconds=30.0)
    d.start()
    create_and_submit(store, d, "job-stolen", "req-stolen")
    wait_until(lambda: store.get("job-stolen")["progress"] == 0.3, what="job-stolen in progress")
    store.release("job-stolen", OWNER)
    assert store.claim("job-stolen", "thief", 60_000)["owner"] == "thief"
    line = wait_for_line(logs, lambda x: x["message"].startswith("lease lost: "))
    assert line == {"level": "WARNING", "service": "test",
                    "message": "lease lost: another orchestrator may own the job now; abandoning this run",
                    "requestId": "req-stolen", "jobId": "job-stolen", "reason": "another orchestrator owns the job now"}
    wait_until(lambda: d.leases.runs() == [], what="the run ended")
    job = store.get("job-stolen")
    assert (job["state"], job["owner"], job["progress"], job["result"]) == ("running", "thief", 0.3, None)


def test_losing_the_lease_while_backing_off_ends_the_wait_and_the_run(dispatchers, refused_port, logs):
    store = MemoryStore()
    d = dispatchers(store, f"http://127.0.0.1:{refused_port}", lease_seconds=0.3, retry_budget_seconds=60.0,
                    retry_backoff_ms=30_000, retry_backoff_max_ms=30_000)
    d.start()
    create_and_submit(store, d, "job-waiting")
    wait_for_line(logs, lambda x: x["message"] == "worker call failed; retrying")
    store.release("job-waiting", OWNER)
    store.claim("job-waiting", "thief", 60_000)
    wait_for_line(logs, lambda x: x["message"].startswith("lease lost: "))
    wait_until(lambda: d.leases.runs() == [], what="the run ended")
    assert (store.get("job-waiting")["state"], store.get("job-waiting")["error"]) == ("running", None)


def test_job_past_max_job_attempts_fails_with_the_gave_up_lease_message(fakes, dispatchers):
    fake = fakes(stream(RESULT))
    store = MemoryStore()
    store.create("job-cursed", PAYLOAD, "dead-0", 0)
    for n in range(1, 4):  # three orchestrators claimed it and died, each leaving its lease to expire
        assert store.claim("job-cursed", f"dead-{n}", 0)["attempts"] == n
    d = dispatchers(store, fake.url, max_job_attempts=3)
    d.start()
    d.submit("job-cursed", None)  # or the reaper's first pass, at start, queued it already
    job = wait_finished(store, "job-cursed")
    assert (job["state"], job["attempts"], job["error"]) == (
        "failed", 4, "gave up after 3 attempts: the orchestrator running the job stopped each time before "
                     "it finished (lease of 30 s expired)")
    assert fake.requests == []


def test_a_job_on_its_last_allowed_attempt_still_runs(fakes, dispatchers):
    """The boundary of MAX_JOB_ATTEMPTS: the third claim of a job allowed three is run."""
    fake = fakes(stream(RESULT))
    store = MemoryStore()
    store.create("job-last-chance", PAYLOAD, "dead-0", 0)
    for n in range(1, 3):
        store.claim("job-last-chance", f"dead-{n}", 0)
    d = dispatchers(store, fake.url, max_job_attempts=3)
    d.start()
    d.submit("job-last-chance", None)  # or the reaper's first pass, at start, queued it already
    job = wait_finished(store, "job-last-chance")
    assert (job["state"], job["attempts"], job["error"], job["result"]) == ("done", 3, None, OUTPUT)
    assert len(fake.requests) == 1


# -- the finish write ---------------------------------------------------------------------


def test_the_finish_write_is_retried_through_a_store_outage(fakes, dispatchers, logs):
    fake = fakes(stream(RESULT))
    store = FlakyStore(finish_failures=2)
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-blip")
    job = wait_finished(store, "job-blip")
    assert (job["state"], job["result"], store.finish_calls) == ("done", OUTPUT, 3)
    retries = [x for x in logs.lines() if x["message"] == "could not record job end; retrying"]
    assert [(x["attempt"], x["retryInSeconds"]) for x in retries] == [(1, 0.01), (2, 0.02)]


def test_the_finish_write_gives_up_when_the_lease_would_expire(fakes, dispatchers, logs):
    fake = fakes(stream(RESULT))
    store = FlakyStore(finish_failures=10**6, writes_down=True)  # the lease cannot be renewed either
    d = dispatchers(store, fake.url, lease_seconds=0.3, retry_backoff_ms=50, retry_backoff_max_ms=50)
    d.start()
    create_and_submit(store, d, "job-unrecorded")
    line = wait_for_line(logs, lambda x: x["message"].startswith("job end not recorded"))
    assert (line["level"], line["message"]) == (
        "ERROR", "job end not recorded before the lease expired; the job will run again")
    assert store.get("job-unrecorded")["state"] == "running"
    assert 2 <= store.finish_calls < 10**6


# -- creating and queueing ----------------------------------------------------------------


def test_create_records_a_queued_job_under_this_owner_and_lease_and_queues_it(dispatchers):
    store = MemoryStore(clock=lambda: 1_800_000_000.0)
    d = dispatchers(store, "http://127.0.0.1:9", lease_seconds=12)  # not started: the job stays queued
    job_id, replayed = d.create(PAYLOAD, "req-new")
    assert replayed is False
    job = store.get(job_id)
    assert (job["state"], job["input"], job["owner"], job["leaseExpiresAt"], job["attempts"]) == (
        "queued", PAYLOAD, OWNER, 1_800_000_012_000, 0)
    assert d.submit(job_id, None) is False  # already queued here


def test_load_counts_jobs_running_on_the_worker_and_jobs_waiting_for_a_dispatch_thread(dispatchers):
    app = worker.Worker(worker.WorkerConfig(work_ms=60_000, progress_tick_ms=100))
    with serving_in_thread(Server(("127.0.0.1", 0), worker.WorkerHandler, app)) as port:
        store = MemoryStore()
        d = dispatchers(store, f"http://127.0.0.1:{port}")  # two dispatch threads
        assert d.load() == (0, 0)
        d.start()
        for job_id in ("job-1", "job-2", "job-3"):
            create_and_submit(store, d, job_id)
        wait_until(lambda: d.load() == (2, 1), 10, "two jobs running and one waiting")
        assert sorted(store.get(j)["state"] for j in ("job-1", "job-2", "job-3")) == ["queued", "running", "running"]
        d.stop(0.1)


def test_a_started_dispatcher_reports_its_load_to_on_load_at_once():
    store = MemoryStore()
    samples: list[tuple[int, int, int]] = []
    config = DispatchConfig(worker_url="http://127.0.0.1:9", max_concurrent_jobs=3, reaper_interval_seconds=3600.0)
    d = Dispatcher(store, WorkerClient(config.worker_url, 1.0, 1.0), config, OWNER, on_load=
                   lambda running, waiting, slots: samples.append((running, waiting, slots)))
    d.start()
    try:
        wait_until(lambda: samples, 10, "a first load sample")
    finally:
        d.stop(1.0)
    assert samples[0] == (0, 0, 3)


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


# -- stopping -----------------------------------------------------------------------------


def test_stop_with_a_shared_store_hands_back_running_and_queued_jobs(fakes, dispatchers, logs):
    fake = fakes()
    gate = fake.gate()
    fake.answers.append(stream(progress(0.3), gate=gate, after_gate=(RESULT,)))
    store = SharedStore()
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


def test_stop_with_a_memory_store_runs_the_queue_down_within_the_grace_period(fakes, dispatchers, logs):
    """Nobody else would take a job handed back from a dict: the queued jobs run before exit."""
    fake = fakes(stream(progress(0.5), RESULT))
    store = MemoryStore()
    d = dispatchers(store, fake.url, max_concurrent_jobs=1)
    for i in range(5):
        create_and_submit(store, d, f"job-{i}")
    d.start()
    d.stop(10.0)
    assert [store.get(f"job-{i}")["state"] for i in range(5)] == ["done"] * 5
    assert [x for x in logs.lines() if x["message"] == "job handed back"] == []


def test_stop_with_a_memory_store_fails_what_the_grace_period_left_saying_why(fakes, dispatchers, logs):
    fake = fakes()
    fake.answers.append(stream(progress(0.3), gate=fake.gate(), after_gate=(RESULT,)))
    store = MemoryStore()
    d = dispatchers(store, fake.url, max_concurrent_jobs=1)
    d.start()
    create_and_submit(store, d, "job-running")
    create_and_submit(store, d, "job-waiting")
    wait_until(lambda: store.get("job-running")["progress"] == 0.3, what="job-running in progress")
    d.stop(0.2)
    running, waiting = store.get("job-running"), store.get("job-waiting")
    assert (running["state"], running["error"]) == (
        "failed", "the orchestrator stopped (shutdown grace of 0.2 s ended) while the job was running; submit it again")
    assert (waiting["state"], waiting["error"]) == (
        "failed", "the orchestrator stopped before the job could run; submit it again")
    failed = [x["jobId"] for x in logs.lines() if x["message"] == "job failed"]
    assert sorted(failed) == ["job-running", "job-waiting"]


# -- the reaper, the loops, readiness -----------------------------------------------------


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


def test_the_reaper_survives_any_exception_and_readiness_shows_it_failing_meanwhile(fakes, dispatchers, logs):
    from botocore.exceptions import NoCredentialsError

    fake = fakes(stream(RESULT))
    store = FlakyStore(expired_failures=(NoCredentialsError(), RuntimeError("index missing")))
    store.create("job-orphan", PAYLOAD, "dead-orchestrator", 0)
    d = dispatchers(store, fake.url, reaper_interval_seconds=0.05)
    d.start()
    assert wait_finished(store, "job-orphan")["state"] == "done"
    errors = [(x["loop"], x["error"]["type"]) for x in logs.lines() if x["message"] == "background loop failed"]
    assert errors == [("reaper", "NoCredentialsError"), ("reaper", "RuntimeError")]
    ready, parts = wait_until(lambda: (r := d.readiness())[0] and r, what="ready once the reaper works")
    assert (parts["reaper"]["ok"], parts["leaseKeeper"]["ok"], parts["dispatch"]) == (
        True, True, {"ok": True, "threadsAlive": 2})


def test_readiness_names_the_reaper_while_it_has_never_succeeded(dispatchers):
    store = FlakyStore(expired_failures=tuple(RuntimeError("no credentials") for _ in range(1000)))
    d = dispatchers(store, "http://127.0.0.1:9", reaper_interval_seconds=0.05)
    d.start()
    wait_until(lambda: d.readiness()[1]["reaper"]["consecutiveFailures"] >= 2, what="two failed reaper passes")
    ready, parts = d.readiness()
    assert (ready, parts["reaper"]["ok"], parts["reaper"]["lastSuccessSecondsAgo"], parts["leaseKeeper"]["ok"]) == (
        False, False, None, True)


def test_a_dispatch_thread_survives_an_exception_and_runs_the_next_job(fakes, dispatchers, logs):
    class ClaimFailsOnce(MemoryStore):
        failed = False

        def claim(self, job_id, owner, lease_ms):
            if not self.failed:
                self.failed = True
                raise RuntimeError("unexpected")
            return super().claim(job_id, owner, lease_ms)

    fake = fakes(stream(RESULT))
    store = ClaimFailsOnce()
    d = dispatchers(store, fake.url, max_concurrent_jobs=1)
    d.start()
    create_and_submit(store, d, "job-unlucky")
    create_and_submit(store, d, "job-next")
    assert wait_finished(store, "job-next")["state"] == "done"
    line = wait_for_line(logs, lambda x: x["message"] == "background loop failed")
    assert (line["loop"], line["jobId"], line["error"]["type"]) == ("dispatch-0", "job-unlucky", "RuntimeError")
    assert d.readiness()[1]["dispatch"] == {"ok": True, "threadsAlive": 1}
    assert store.get("job-unlucky")["state"] == JobState.QUEUED.value
