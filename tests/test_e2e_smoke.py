"""End to end: scripts/smoke-test.sh and its PowerShell port against the real local stack
(worker.py and orchestrator.py as processes, in-memory store): a job to done, and a job that
fails because the worker was stopped."""

from __future__ import annotations

import json
import re

import pytest

import scriptrun


@pytest.fixture(params=scriptrun.variants("smoke-test"))
def smoke(request):
    return request.param


def test_smoke_script_passes_against_the_local_stack_and_prints_the_result_with_verbose(smoke, stack):
    worker, orch = stack()
    result = scriptrun.run(smoke, "--verbose", orch.url, timeout=180)
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    out = result.stdout
    request_id = re.search(r"\(X-Request-Id: (smoke-[0-9a-f]{12})\)", out).group(1)
    job_id = re.search(r"^job (\S+) submitted$", out, re.M).group(1)
    assert out.splitlines()[:3] == [f"smoke test of {orch.url} (X-Request-Id: {request_id})", "healthz ok",
                                    f"job {job_id} submitted"]
    progress_lines = re.findall(r"^\[ *[\d.]+s\] (queued|running|done) +(\d+)%$", out, re.M)
    assert progress_lines[-1] == ("done", "100")
    assert any(state == "running" and 0 < int(pct) < 100 for state, pct in progress_lines)
    assert re.fullmatch(rf"PASS job {job_id} in \d+\.\ds", out.splitlines()[-1])
    result_json = json.loads(out.split("result:\n", 1)[1].rsplit("\nPASS ", 1)[0])
    assert result_json["seed"] == 123 and result_json["scene"]["style"] == "doom"
    lines = worker.lines_when(lambda ls: any(x.get("jobId") == job_id and x["message"] == "request" for x in ls),
                              "the worker's request line")
    assert {x["requestId"] for x in lines if x.get("jobId") == job_id} == {request_id}


def test_smoke_script_exits_1_with_the_cause_when_the_worker_is_stopped(smoke, stack):
    worker, orch = stack(orchestrator_env={"RETRY_BACKOFF_MS": "50", "WORKER_RETRY_BUDGET_SECONDS": "0.5"})
    worker.stop()
    result = scriptrun.run(smoke, orch.url, timeout=180)
    assert result.returncode == 1
    assert re.fullmatch(rf"{smoke.name}: job \S+ failed: the worker could not be reached; gave up after retrying "
                        r"for \d+ s \(\d+ retries\)\n", result.stderr), result.stderr
    assert "healthz ok\n" in result.stdout
    assert re.fullmatch(r"FAIL job \S+ in \d+\.\ds: job \S+ failed: the worker could not be reached; gave up after "
                        r"retrying for \d+ s \(\d+ retries\)", result.stdout.splitlines()[-1])


def test_smoke_script_quiet_prints_progress_and_the_pass_line_only(smoke, stack):
    _, orch = stack(worker_env={"WORK_MS": "300"})
    result = scriptrun.run(smoke, "--quiet", orch.url, timeout=180)
    assert (result.returncode, result.stderr) == (0, "")
    *progress, last = result.stdout.splitlines()
    assert progress and all(re.fullmatch(r"\[ *[\d.]+s\] (queued|running|done) +\d+%", line) for line in progress)
    assert re.fullmatch(r"PASS job [0-9a-f-]{36} in \d+\.\ds", last)
