"""End to end under faults: real orchestrators and workers on loopback (and a moto server for
DynamoDB), each fault made for real while jobs are in flight: worker SIGKILL and restart,
worker SIGSTOP/SIGCONT, a cut TCP link to the store, orchestrator SIGKILL, SIGTERM in both
store modes, a saturated worker, and no AWS credentials at all.

After each, every accepted job ends ``done`` (or ``failed`` only past its budget), and no job
ran twice where a lease was live. Two records prove the second: the store counts claims
(``attempts``), so a job whose running lease lapsed and was taken over ends with
``attempts`` 2; and the worker logs ``job started`` once per call, counted per job and per
worker process. A second replica on the same table, with a short lease and a busy reaper,
stands ready to take any job whose lease lapses.
"""

from __future__ import annotations

import collections
import datetime
import itertools
import json
import signal
import subprocess
import sys

import pytest

from apiclient import poll, request, submit
from conftest import ROOT, create_table
from polling import wait_until
from tcpproxy import TcpProxy

PAYLOAD = {"prompt": "a haunted cellar", "seed": 7, "style": "noir"}
LEASE_SECONDS = 3.0
# The shortest lease the start-up rules allow, the settings they tie to it, and a reaper that
# looks for expired leases five times a second.
SHORT_LEASE = {"JOB_LEASE_SECONDS": "3", "WORKER_TIMEOUT_SECONDS": "2", "PROGRESS_WRITE_INTERVAL_MS": "500",
               "REAPER_INTERVAL_SECONDS": "0.2"}
# A minute's budget for worker faults, retried every 0.1-0.5 s.
PATIENT = {"WORKER_RETRY_BUDGET_SECONDS": "60", "RETRY_BACKOFF_MS": "100", "RETRY_BACKOFF_MAX_MS": "500"}
_tables = itertools.count()


@pytest.fixture
def table_env(moto_server):
    return create_table(moto_server, f"jobs-faults-{next(_tables)}")


def lines(svc, message: str) -> list[dict]:
    return [x for x in svc.lines() if x["message"] == message]


def per_job(svc, message: str) -> collections.Counter[str]:
    return collections.Counter(x["jobId"] for x in lines(svc, message) if "jobId" in x)


def at(line: dict) -> datetime.datetime:
    return datetime.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def submit_many(url: str, count: int) -> list[str]:
    return [submit(url, {**PAYLOAD, "seed": seed}) for seed in range(count)]


def finals(url: str, ids: list[str], timeout: float = 60) -> dict[str, dict]:
    return {job_id: poll(url, job_id, timeout=timeout, interval=0.1)[-1] for job_id in ids}


def started_on(worker, count: int) -> None:
    wait_until(lambda: len(per_job(worker, "job started")) >= count, 20, f"{count} jobs started on the worker", 0.05)


def retried_past(orch, since: datetime.datetime, seconds: float) -> None:
    """Wait until ``orch`` logs a retry ``seconds`` after ``since``: the fault has lasted that long."""
    wait_until(lambda: any(at(x) > since + datetime.timedelta(seconds=seconds)
                           for x in lines(orch, "worker call failed; retrying")),
               30 + seconds, f"retries {seconds:g} s into the fault", 0.1)


def assert_all_done_once(jobs: dict[str, dict]) -> None:
    """Every job done, with no error, claimed once: no lease lapsed while it ran."""
    assert {(j["state"], j["error"], j["attempts"]) for j in jobs.values()} == {("done", None, 1)}


def assert_still_waiting(url: str, ids: list[str]) -> None:
    snapshots = [request(url, "GET", f"/status/{job_id}").json for job_id in ids]
    assert {(s["state"], s["error"]) for s in snapshots} <= {("queued", None), ("running", None)}


# -- worker faults --------------------------------------------------------------------------


def test_worker_killed_and_restarted_within_the_budget_loses_no_job_and_no_lease(services, table_env):
    worker = services("worker.py", {"WORK_MS": "1500"})
    env = {**table_env, **SHORT_LEASE, **PATIENT, "WORKER_URL": worker.url, "MAX_CONCURRENT_JOBS": "6"}
    a, b = services("orchestrator.py", env), services("orchestrator.py", env)
    ids = submit_many(a.url, 6)
    started_on(worker, 2)
    worker.proc.kill()
    worker.proc.wait()
    killed_at = now()
    retried_past(a, killed_at, 1.5 * LEASE_SECONDS)  # down for longer than a lease: b is waiting for any lapse
    assert_still_waiting(a.url, ids)
    restarted = services("worker.py", {"WORK_MS": "1500"}, port=worker.port)

    assert_all_done_once(finals(a.url, ids))
    assert per_job(b, "job claimed") == collections.Counter()
    for w in (worker, restarted):  # within one worker process no job started twice
        assert set(per_job(w, "job started").values()) <= {1}
    assert set(per_job(restarted, "job started")) | set(per_job(worker, "job finished")) == set(ids)


def test_worker_stopped_and_continued_loses_no_job_and_no_lease(services, table_env):
    """SIGSTOP: the worker's sockets stay open and answer nothing; calls time out (2 s) and
    are retried. After SIGCONT the worker also starts the calls queued while it was stopped,
    whose caller has gone: each job's starts are at most its owner's calls."""
    worker = services("worker.py", {"WORK_MS": "2000"})
    env = {**table_env, **SHORT_LEASE, **PATIENT, "WORKER_URL": worker.url, "MAX_CONCURRENT_JOBS": "4"}
    a, b = services("orchestrator.py", env), services("orchestrator.py", env)
    ids = submit_many(a.url, 4)
    started_on(worker, 4)
    worker.signal(signal.SIGSTOP)
    stopped_at = now()
    try:
        retried_past(a, stopped_at, 1.5 * LEASE_SECONDS)
        assert_still_waiting(a.url, ids)
    finally:
        worker.signal(signal.SIGCONT)

    assert_all_done_once(finals(a.url, ids))
    assert per_job(b, "job claimed") == collections.Counter()
    calls = per_job(a, "worker call failed; retrying") + collections.Counter(ids)
    starts = per_job(worker, "job started")
    assert all(starts[job_id] <= calls[job_id] for job_id in ids), (starts, calls)


def test_a_saturated_worker_is_waited_for_not_counted_as_a_fault(services):
    """The worker takes one job at a time and answers the rest 503 busy; with no budget for
    faults at all, every job still ends done."""
    worker = services("worker.py", {"WORK_MS": "300", "MAX_CONCURRENT_JOBS": "1"})
    orch = services("orchestrator.py", {"WORKER_URL": worker.url, "MAX_CONCURRENT_JOBS": "4",
                                        "WORKER_RETRY_BUDGET_SECONDS": "0"})
    ids = submit_many(orch.url, 4)
    assert_all_done_once(finals(orch.url, ids))
    assert len(lines(orch, "worker busy; waiting")) >= 3
    assert lines(orch, "worker call failed; retrying") == []


# -- store faults ---------------------------------------------------------------------------


def test_a_store_outage_shorter_than_the_lease_loses_no_job_and_no_finish(services, moto_server, table_env):
    """Orchestrator a reaches the moto server through a TCP proxy that the test cuts while a's
    jobs run, and restores once a finish write has failed (a few seconds: each write to the
    cut link takes about a second of retries); b reaches the store directly and would take
    any job whose 10 s lease lapsed."""
    proxy = TcpProxy(moto_server.port)
    try:
        worker = services("worker.py", {"WORK_MS": "2500"})
        lease = {**SHORT_LEASE, "JOB_LEASE_SECONDS": "10"}
        env = {**table_env, **lease, **PATIENT, "WORKER_URL": worker.url, "MAX_CONCURRENT_JOBS": "4"}
        a = services("orchestrator.py", {**env, "AWS_ENDPOINT_URL": proxy.endpoint})
        b = services("orchestrator.py", env)
        ids = submit_many(a.url, 4)
        started_on(worker, 4)
        proxy.cut()
        try:
            refused = request(a.url, "POST", "/generate-scene", PAYLOAD, timeout=30)
            assert (refused.status, refused.headers["retry-after"], refused.json["error"]["code"]) == (
                503, "1", "store_unavailable")
            wait_until(lambda: lines(a, "could not record job end; retrying"), 30, "a finish write in the outage", 0.1)
        finally:
            proxy.restore()
        assert_all_done_once(finals(a.url, ids))
        assert per_job(b, "job claimed") == collections.Counter()
        assert per_job(worker, "job started") == collections.Counter(ids)
        assert lines(a, "job end not recorded before the lease expired; the job will run again") == []
        wait_until(lambda: request(a.url, "GET", "/readyz").status == 200, 20, "a ready again", 0.1)
    finally:
        proxy.close()


# -- orchestrator faults ------------------------------------------------------------------


def test_orchestrator_killed_its_jobs_finish_on_the_other_replica_each_started_once_after_the_kill(
        services, table_env):
    worker = services("worker.py", {"WORK_MS": "1500"})
    env = {**table_env, **SHORT_LEASE, "WORKER_URL": worker.url, "MAX_CONCURRENT_JOBS": "2"}
    a, b = services("orchestrator.py", env), services("orchestrator.py", env)
    ids = submit_many(a.url, 6)
    started_on(worker, 2)
    a.proc.kill()
    killed_at = now()

    jobs = finals(b.url, ids)
    assert {(j["state"], j["error"]) for j in jobs.values()} == {("done", None)}
    starts = lines(worker, "job started")
    before = collections.Counter(x["jobId"] for x in starts if at(x) <= killed_at)
    after = collections.Counter(x["jobId"] for x in starts if at(x) > killed_at)
    assert set(before.values()) == {1} and set(after.values()) == {1}
    # Every job a had not finished ran once after the kill, on b; those that a had claimed
    # were claimed again once their lease expired (2 attempts), the queued ones once.
    assert set(after) == set(ids) - set(per_job(a, "job finished"))
    assert set(per_job(b, "job claimed")) == set(after)
    assert {job_id: j["attempts"] for job_id, j in jobs.items() if job_id in after} == {
        job_id: 2 if job_id in before else 1 for job_id in after}


def test_sigterm_in_memory_mode_runs_every_queued_job_before_exit(services):
    worker = services("worker.py", {"WORK_MS": "100"})
    orch = services("orchestrator.py", {"WORKER_URL": worker.url, "MAX_CONCURRENT_JOBS": "2"})
    ids = submit_many(orch.url, 20)
    orch.signal(signal.SIGTERM)
    assert orch.wait(timeout=60) == 0
    finished = {x["jobId"]: x["state"] for x in lines(orch, "job finished")}
    assert finished == {job_id: "done" for job_id in ids}
    assert lines(orch, "job handed back") == []
    assert per_job(worker, "job started") == collections.Counter(ids)


def test_sigterm_in_memory_mode_fails_what_the_grace_period_left_with_a_clear_error(services):
    worker = services("worker.py", {"WORK_MS": "5000"})
    orch = services("orchestrator.py", {"WORKER_URL": worker.url, "MAX_CONCURRENT_JOBS": "2",
                                        "SHUTDOWN_GRACE_SECONDS": "1"})
    ids = submit_many(orch.url, 6)
    started_on(worker, 2)
    orch.signal(signal.SIGTERM)
    assert orch.wait(timeout=60) == 0
    errors = {x["jobId"]: x["jobError"] for x in lines(orch, "job failed")}
    running = "the orchestrator stopped (shutdown grace of 1 s ended) while the job was running; submit it again"
    queued = "the orchestrator stopped before the job could run; submit it again"
    assert set(errors) == set(ids)
    assert collections.Counter(errors.values()) == {running: 2, queued: 4}
    metrics = [x for x in orch.lines() if x["message"] == "job metrics"]
    assert sorted((x["jobId"], x["JobFailed"]) for x in metrics) == sorted((job_id, 1) for job_id in ids)
    assert lines(orch, "job handed back") == []


def test_sigterm_in_dynamodb_mode_hands_queued_jobs_to_the_other_replica_each_run_once(services, table_env):
    worker = services("worker.py", {"WORK_MS": "1000"})
    env = {**table_env, "JOB_LEASE_SECONDS": "60", "REAPER_INTERVAL_SECONDS": "0.2", "WORKER_URL": worker.url,
           "MAX_CONCURRENT_JOBS": "1", "SHUTDOWN_GRACE_SECONDS": "10"}
    leaving, staying = services("orchestrator.py", env), services("orchestrator.py", env)
    ids = submit_many(leaving.url, 4)
    started_on(worker, 1)
    leaving.signal(signal.SIGTERM)
    assert leaving.wait(timeout=30) == 0
    handed_back = set(per_job(leaving, "job handed back"))
    assert len(handed_back) == 3 and handed_back < set(ids)
    assert_all_done_once(finals(staying.url, ids))
    assert per_job(worker, "job started") == collections.Counter(ids)


# -- background loops -----------------------------------------------------------------------


def test_without_aws_credentials_the_reaper_keeps_trying_and_readyz_says_so(services, moto_server, tmp_path):
    """Observed before: NoCredentialsError ended the reaper thread for good (a plain-text
    traceback on stderr) while /healthz stayed green. Now the process starts, every line it
    writes is JSON, the reaper logs each failure and tries again, and /readyz answers 503."""
    no_credentials = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
                      "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
                      "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": moto_server.endpoint,
                      "JOBS_TABLE_NAME": "jobs-no-credentials", "REAPER_INTERVAL_SECONDS": "0.1",
                      "ENVIRONMENT": "test"}
    orch = services("orchestrator.py", no_credentials)
    wait_until(lambda: len([x for x in lines(orch, "background loop failed") if x["loop"] == "reaper"]) >= 3,
               30, "three failed reaper passes", 0.1)
    assert request(orch.url, "GET", "/healthz").json == {"ok": True}
    ready = request(orch.url, "GET", "/readyz")
    assert (ready.status, ready.json["error"], ready.json["loops"]["reaper"]["ok"]) == (
        503, {"code": "not_ready", "message": "not ready: reaper not working; see the service log"}, False)
    failures = [x for x in lines(orch, "background loop failed") if x["loop"] == "reaper"]
    no_credentials_text = ("DynamoDB table jobs-no-credentials: no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY (any values for a local server such as moto), or AWS_PROFILE "
                           "naming a profile that has credentials")
    assert {(x["level"], x["error"]["type"], x["error"]["message"]) for x in failures} == {
        ("ERROR", "StoreUnavailable", no_credentials_text)}
    # At start: one line that says what to set, without a stack (before: NoCredentialsError and its traceback).
    [at_start] = lines(orch, "job store unreachable at start; serving anyway")
    assert (at_start["level"], at_start["reason"], "error" in at_start) == ("WARNING", no_credentials_text, False)
    assert lines(orch, "job store check failed at start; serving anyway") == []
    emf = [x for x in orch.lines() if x["message"] == "loop metrics"]
    assert {(x["BackgroundLoopErrors"], x["loop"], x["Environment"]) for x in emf} == {(1, "reaper", "test")}
    assert orch.proc.poll() is None
    orch.signal(signal.SIGTERM)
    assert orch.wait(timeout=30) == 0
    assert orch.lines()  # every line parses as JSON: no plain-text traceback


def test_an_orchestrator_whose_aws_profile_does_not_exist_refuses_to_start_naming_it(tmp_path):
    """Before: ProfileNotFound's traceback on stderr and exit 1."""
    result = subprocess.run([sys.executable, "orchestrator.py"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={"PATH": "", "PORT": "0", "JOBS_TABLE_NAME": "jobs", "AWS_PROFILE": "team",
                                             "AWS_CONFIG_FILE": str(tmp_path / "absent")})
    assert (result.returncode, result.stderr) == (2, "")
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    assert (line["level"], line["message"], line["reason"]) == (
        "ERROR", "invalid configuration", "AWS_PROFILE=team names no profile in the AWS config or credentials file; "
        "set AWS_PROFILE to one of `aws configure list-profiles`, or unset it")


@pytest.mark.parametrize(("environ", "variables"), [
    ({"JOB_LEASE_SECONDS": "10", "WORKER_TIMEOUT_SECONDS": "10"}, ["WORKER_TIMEOUT_SECONDS", "JOB_LEASE_SECONDS"]),
    ({"JOB_LEASE_SECONDS": "2", "WORKER_TIMEOUT_SECONDS": "1"}, ["JOB_LEASE_SECONDS"]),
], ids=["worker-timeout", "short-lease"])
def test_an_orchestrator_whose_lease_settings_make_live_jobs_look_dead_refuses_to_start(environ, variables):
    result = subprocess.run([sys.executable, "orchestrator.py"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={"PATH": "", "PORT": "0", **environ})
    assert (result.returncode, result.stderr) == (2, "")
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    assert (line["level"], line["message"]) == ("ERROR", "invalid configuration")
    assert all(name in line["reason"] for name in variables), line["reason"]


def test_a_signalled_worker_keeps_accepting_for_its_delay_reporting_unhealthy_then_stops(services):
    """ECS drops a stopping worker from Cloud Map without waiting for the record's TTL: for
    SHUTDOWN_DELAY_SECONDS after SIGTERM the worker still runs new work, while /healthz says
    503 draining; then it stops accepting, finishes, and exits 0."""
    worker = services("worker.py", {"WORK_MS": "50", "SHUTDOWN_DELAY_SECONDS": "3"})
    worker.signal(signal.SIGTERM)
    health = wait_until(lambda: (r := request(worker.url, "GET", "/healthz")).status == 503 and r,
                        5, "/healthz to answer 503 after SIGTERM")
    assert health.json == {"error": {"code": "draining", "message": "this worker is shutting down: it still "
                                     "accepts work for a few seconds, but should be given none"}}
    done = request(worker.url, "POST", "/process", {"jobId": "late-job", "payload": PAYLOAD})
    assert (done.status, done.json["jobId"], done.json["ok"]) == (200, "late-job", True)
    assert worker.wait(timeout=20) == 0
    messages = [(x["message"], x.get("acceptForSeconds")) for x in worker.lines()
                if x["message"] in ("stopping", "no longer accepting", "stopped")]
    assert messages == [("stopping", 3.0), ("no longer accepting", None), ("stopped", None)]


def test_without_a_delay_a_signalled_worker_stops_accepting_at_once(services):
    worker = services("worker.py", {"WORK_MS": "50"})
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert [x["message"] for x in worker.lines() if x["message"] in ("stopping", "no longer accepting")] == ["stopping"]
