"""End to end: schemathesis against a live orchestrator (API_TOKEN set) and worker.

The CLI, not the pytest plugin: it runs every phase (the schema's examples, boundary
"coverage" cases, random fuzzing, and stateful sequences that follow the 202's link to
/status), with every check, including that requests without the token are refused and
that undocumented methods get 405. It runs offline against loopback.

The schema comes from the repository's openapi.json (after checking that the orchestrator
serves the same document); every documented operation is run, /openapi.json included.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

import orchestrator
from apiclient import request
from conftest import ROOT, find_tool

API_TOKEN = "e2e-api-token-0123456789abcdef"
WORKER_TOKEN = "e2e-worker-token-0123456789abcdef"
MAX_EXAMPLES = 100  # per operation and phase: ~1,000 cases, ~20 s here
SEED = 20261201  # reproducible: a failure names its case; `schemathesis run --seed` replays the run
TIMEOUT_S = 300


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_schemathesis_finds_no_failure_against_the_live_orchestrator(stack, tmp_path):
    worker, orch = stack(worker_env={"WORK_MS": "0", "WORKER_TOKEN": WORKER_TOKEN},
                         orchestrator_env={"API_TOKEN": API_TOKEN, "WORKER_TOKEN": WORKER_TOKEN})
    served = request(orch.url, "GET", "/openapi.json")
    document = json.loads((ROOT / "openapi.json").read_text(encoding="utf-8"))
    assert (served.status, served.json) == (200, document)
    # /readyz arrives with the readiness work of issue 9 (another branch); until then it is not run.
    pending = [] if ("GET", "/readyz") in orchestrator.ROUTES else ["--exclude-path", "/readyz"]

    started = time.monotonic()
    proc = subprocess.run(
        [find_tool("schemathesis"), "run", str(ROOT / "openapi.json"), "--url", orch.url,
         "--header", f"Authorization: Bearer {API_TOKEN}", "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
         "--seed", str(SEED), "--no-color", *pending],
        cwd=tmp_path, env={**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])},
        capture_output=True, text=True, timeout=TIMEOUT_S)
    elapsed = time.monotonic() - started

    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    operations = re.search(r"Operations:\s+(\d+) selected / (\d+) total", proc.stdout)
    assert operations is not None, proc.stdout[-3000:]
    documented = sum(method in ("get", "post") for item in document["paths"].values() for method in item)
    # 8 operations of the job API, 6 of the web console (its files)
    assert (int(operations[1]), int(operations[2])) == (documented - len(pending) // 2, documented) == (14, 14)
    counts = re.search(r"(\d+) generated, (\d+) passed", proc.stdout)
    assert counts is not None, proc.stdout[-3000:]
    generated, passed = int(counts[1]), int(counts[2])
    assert generated == passed >= 500
    statuses = [x["status"] for x in orch.lines() if x["message"] == "request"]
    assert len(statuses) >= generated and [s for s in statuses if s >= 500] == []
    assert API_TOKEN not in orch.raw_output() and WORKER_TOKEN not in worker.raw_output()
    print(f"schemathesis: {generated} cases, {len(statuses)} requests, 0 failures in {elapsed:.1f} s")
