"""End to end: what both services write to stdout for a job that succeeds and one that
fails (worker down) is enough to follow each job and find the failure's cause."""

from __future__ import annotations

import copy
import re
import subprocess

import pytest

from apiclient import poll, request
from conftest import ROOT
from emfcheck import assert_emf_valid

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PAYLOAD = {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}


@pytest.fixture
def two_jobs(stack):
    """One job done, then the worker killed and one job failed; both services' lines."""
    # The services' default batching (LOG_FLUSH_MS 50), as deployed: lines are waited for.
    worker, orch = stack(worker_env={"WORK_MS": "400", "LOG_FLUSH_MS": "50"},
                         orchestrator_env={"RETRY_BACKOFF_MS": "50", "WORKER_RETRY_BUDGET_SECONDS": "0.3",
                                           "ENVIRONMENT": "test", "LOG_FLUSH_MS": "50"})
    ok = request(orch.url, "POST", "/generate-scene", PAYLOAD, {"X-Request-Id": "req-ok"}).json["jobId"]
    assert poll(orch.url, ok)[-1]["state"] == "done"
    # Lines are written in batches: let the worker's last line for the job out before the kill.
    worker.lines_when(lambda ls: any(x.get("jobId") == ok and x["message"] == "request" for x in ls),
                      "the worker's request line")
    worker.proc.kill()
    worker.proc.wait()
    bad = request(orch.url, "POST", "/generate-scene", PAYLOAD,
                  {"X-Amzn-Trace-Id": "Root=1-6789abcd-0123456789abcdef01234567"}).json["jobId"]
    assert poll(orch.url, bad, timeout=15)[-1]["state"] == "failed"
    orch_lines = orch.lines_when(lambda ls: len([x for x in ls if x["message"] == "job metrics"]) == 2,
                                 "both jobs' metrics lines")
    return {"ok": ok, "bad": bad, "worker": worker, "orch": orch, "lines": orch_lines + worker.lines()}


def test_every_line_is_json_with_the_required_keys_in_order(two_jobs):
    assert len(two_jobs["lines"]) > 10
    for line in two_jobs["lines"]:
        assert list(line)[:4] == ["timestamp", "level", "service", "message"], line
        assert TIMESTAMP.match(line["timestamp"]), line
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")
        assert line["service"] in ("orchestrator", "worker")
        assert None not in line.values()
        if line["message"] == "request":
            assert {"requestId", "method", "path", "status", "durationMs"} <= set(line)


def test_one_request_id_threads_each_job_through_both_services(two_jobs):
    ok_lines = [x for x in two_jobs["lines"] if x.get("jobId") == two_jobs["ok"]]
    assert {x["service"] for x in ok_lines} == {"orchestrator", "worker"}
    assert {x["requestId"] for x in ok_lines} == {"req-ok"}
    worker_messages = [x["message"] for x in ok_lines if x["service"] == "worker"]
    assert worker_messages == ["job started", "job finished", "request"]
    bad_lines = [x for x in two_jobs["lines"] if x.get("jobId") == two_jobs["bad"]]
    assert {x["requestId"] for x in bad_lines} == {"Root=1-6789abcd-0123456789abcdef01234567"}


def test_the_failure_cause_is_in_one_error_line_with_the_job_id(two_jobs):
    errors = [x for x in two_jobs["lines"] if x["level"] == "ERROR"]
    assert len(errors) == 1
    line = errors[0]
    worker_url = two_jobs["worker"].url
    assert (line["service"], line["message"], line["jobId"]) == ("orchestrator", "job failed", two_jobs["bad"])
    assert line["workerUrl"] == worker_url
    assert line["error"]["type"] == "WorkerError"
    assert line["error"]["message"].startswith(f"worker unreachable at {worker_url}: ")
    assert "Connection refused" in line["error"]["message"]
    assert "Traceback (most recent call last)" in line["error"]["stack"]
    assert line["jobError"].startswith("the worker could not be reached; gave up after retrying for ")
    retries = [x for x in two_jobs["lines"] if x["message"] == "worker call failed; retrying"]
    assert [x["attempt"] for x in retries] == list(range(1, len(retries) + 1)) and retries
    assert all(x["jobId"] == two_jobs["bad"] and x["level"] == "WARNING" for x in retries)


def test_emf_lines_are_valid_and_count_one_success_and_one_failure(two_jobs):
    emf = [x for x in two_jobs["lines"] if "_aws" in x and x["message"] == "job metrics"]
    assert len(emf) == 2
    for doc in emf:
        assert_emf_valid(doc)
        assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "GhostEngine"
        assert (doc["Service"], doc["Environment"]) == ("orchestrator", "test")
        assert doc["JobDurationMs"] > 0 and doc["JobQueueWaitMs"] >= 0
    by_job = {doc["jobId"]: doc for doc in emf}
    assert (by_job[two_jobs["ok"]]["JobSucceeded"], by_job[two_jobs["ok"]]["JobFailed"]) == (1, 0)
    assert (by_job[two_jobs["bad"]]["JobSucceeded"], by_job[two_jobs["bad"]]["JobFailed"]) == (0, 1)
    assert by_job[two_jobs["ok"]]["JobDurationMs"] >= 400  # the worker's WORK_MS


def test_the_orchestrator_logs_its_load_as_emf_from_the_start(two_jobs):
    """What the worker's auto scaling tracks (JobsRunning; infra/aws/terraform/autoscaling.tf):
    a sample when the dispatcher starts, then every 15 s; every EMF line is job or load metrics."""
    emf = [x for x in two_jobs["lines"] if "_aws" in x]
    assert {x["message"] for x in emf} == {"job metrics", "load metrics"}
    load = [x for x in emf if x["message"] == "load metrics"]
    for doc in load:
        assert_emf_valid(doc)
    first = copy.deepcopy(load[0])  # the fixture's lines are shared with other tests
    del first["timestamp"], first["_aws"]["Timestamp"]
    assert first == {
        "level": "INFO", "service": "orchestrator", "message": "load metrics",
        "_aws": {"CloudWatchMetrics": [{
            "Namespace": "GhostEngine", "Dimensions": [["Service", "Environment"]],
            "Metrics": [{"Name": "JobsRunning", "Unit": "Count"}, {"Name": "JobsWaiting", "Unit": "Count"},
                        {"Name": "DispatchSlotsBusyPercent", "Unit": "Percent"}]}]},
        "Service": "orchestrator", "Environment": "test",
        "JobsRunning": 0, "JobsWaiting": 0, "DispatchSlotsBusyPercent": 0.0, "dispatchSlots": 8,
    }


def test_trace_script_rebuilds_both_timelines_from_the_captured_logs(two_jobs):
    files = [str(two_jobs["orch"].log_path), str(two_jobs["worker"].log_path)]
    ok = subprocess.run(["bash", "scripts/trace.sh", two_jobs["ok"], *files], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    for message in ("job accepted", "job claimed", "job started", "job finished", "job metrics"):
        assert message in ok.stdout
    assert " worker " in ok.stdout and " orchestrator " in ok.stdout
    bad = subprocess.run(["bash", "scripts/trace.sh", two_jobs["bad"], *files], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 0, bad.stderr
    assert "job failed" in bad.stdout and "Connection refused" in bad.stdout


def test_emf_lines_are_written_at_log_level_error(stack):
    """A real orchestrator at LOG_LEVEL=ERROR: no INFO request lines, but the job's EMF
    line is there (the JobFailed alarm must not go blind with a quieter log level)."""
    _, orch = stack(worker_env={"WORK_MS": "50", "LOG_LEVEL": "ERROR"},
                    orchestrator_env={"LOG_LEVEL": "ERROR", "ENVIRONMENT": "test"})
    job = request(orch.url, "POST", "/generate-scene", PAYLOAD).json["jobId"]
    assert poll(orch.url, job)[-1]["state"] == "done"
    lines = orch.lines_when(lambda ls: any(x["message"] == "job metrics" for x in ls), "the job's metrics line")
    [emf] = [x for x in lines if x["message"] == "job metrics"]
    assert_emf_valid(emf)
    assert (emf["jobId"], emf["JobSucceeded"], emf["JobFailed"]) == (job, 1, 0)
    assert not [x for x in lines if x["message"] == "request"]
