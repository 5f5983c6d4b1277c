"""End to end: the README's local-stack command starts both services and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys

from apiclient import poll, request, submit
from conftest import ROOT, free_port, wait_http_ok


def run_devstack(*args: str, worker_port: int | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "scripts/devstack.py", "--port", str(port), "--worker-port", str(worker_port or free_port()),
         *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", timeout=30, proc=proc)
    return proc, url


def test_devstack_runs_a_job_and_stops_on_sigterm():
    """The two services share a token made for the run: the job runs, a caller without it
    gets 401 from the worker."""
    worker_port = free_port()
    proc, url = run_devstack(worker_port=worker_port)
    try:
        job_id = submit(url, {"prompt": "a spooky hallway", "seed": 1})
        assert poll(url, job_id, timeout=30)[-1]["state"] == "done"
        direct = request(f"http://127.0.0.1:{worker_port}", "POST", "/process",
                         {"jobId": "j", "payload": {"prompt": "p", "seed": 1}})
        assert (direct.status, direct.json["error"]["code"]) == (401, "unauthorized")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "devstack: ready at " + url in err
    services = {line.split('"service":"')[1].split('"')[0] for line in out.splitlines() if '"service":"' in line}
    assert services == {"orchestrator", "worker"}


def test_devstack_rejects_bad_usage():
    result = subprocess.run([sys.executable, "scripts/devstack.py", "--bogus"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr


def test_devstack_dynamodb_mode_keeps_jobs_in_a_local_table():
    import boto3

    moto_port = free_port()
    proc, url = run_devstack("--dynamodb", "--moto-port", str(moto_port))
    try:
        job_id = submit(url, {"prompt": "a haunted attic", "seed": 5})
        assert poll(url, job_id, timeout=30)[-1]["state"] == "done"
        client = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{moto_port}")
        item = client.get_item(TableName="ghost-engine-jobs-dev", Key={"jobId": {"S": job_id}})["Item"]
        assert item["state"] == {"S": "done"}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "created: ghost-engine-jobs-dev" in out
    assert '"store":"dynamodb"' in out
