"""End to end: scripts/smoke-test.sh against the real local stack (in-memory store)."""

from __future__ import annotations

import json
import re
import subprocess

from conftest import ROOT


def run_smoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/smoke-test.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, env=env)


def test_smoke_script_passes_against_the_local_stack_and_prints_the_result(stack):
    worker, orch = stack()
    result = run_smoke(orch.url)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    request_id = re.search(r"\(X-Request-Id: (smoke-[0-9a-f]+)\)", out).group(1)
    job_id = re.search(r"^job (\S+) submitted$", out, re.M).group(1)
    progress_lines = re.findall(r"^\[ *[\d.]+s\] (queued|running|done) +(\d+)%$", out, re.M)
    assert progress_lines[-1] == ("done", "100")
    assert any(state == "running" and 0 < int(pct) < 100 for state, pct in progress_lines)
    result_json = json.loads(out.split("result:\n", 1)[1])
    assert result_json["seed"] == 123 and result_json["scene"]["style"] == "doom"
    assert {l["requestId"] for l in worker.lines() if l.get("jobId") == job_id} == {request_id}


def test_smoke_script_exits_1_with_the_cause_when_the_job_fails(services):
    orch = services("orchestrator.py", {"WORKER_URL": "http://127.0.0.1:9", "RETRY_BACKOFF_MS": "50"})
    result = run_smoke(orch.url)
    assert result.returncode == 1
    assert re.search(r"^error: job \S+ failed: worker unreachable at http://127.0.0.1:9: .*"
                     r"\(gave up after 3 attempts\)$", result.stderr, re.M), result.stderr
