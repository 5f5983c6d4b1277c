"""End to end in DynamoDB mode: real orchestrators and workers on a real moto server.

Proves that job state survives orchestrator restarts and crashes, that a crashed job is
recovered by another orchestrator once its lease expires (and never run twice at once),
that two orchestrators share one table, and that a store outage is a clean 503 that
heals by itself.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time

import boto3
import pytest

from apiclient import poll, request, submit
from conftest import ROOT, MotoServer, create_table
from polling import wait_until

PAYLOAD = {"prompt": "a haunted cellar", "seed": 7, "style": "noir"}
_names = itertools.count()
# The shortest lease the start-up rules allow, with the settings those rules tie to it.
FAST_RECOVERY = {"JOB_LEASE_SECONDS": "3", "WORKER_TIMEOUT_SECONDS": "2", "PROGRESS_WRITE_INTERVAL_MS": "500",
                 "REAPER_INTERVAL_SECONDS": "0.2"}


@pytest.fixture
def table_env(moto_server):
    """Environment for services that use a fresh jobs table on the session's moto server."""
    return create_table(moto_server, f"jobs-e2e-{next(_names)}")


def item(env: dict[str, str], job_id: str) -> dict:
    client = boto3.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"])
    return client.get_item(TableName=env["JOBS_TABLE_NAME"], Key={"jobId": {"S": job_id}}, ConsistentRead=True)["Item"]


def wait_progress(url: str, job_id: str, timeout: float = 15) -> dict:
    def progressed() -> dict | None:
        job = request(url, "GET", f"/status/{job_id}").json
        return job if job["state"] == "running" and job["progress"] > 0 else None

    return wait_until(progressed, timeout, f"progress of job {job_id}", 0.05)


def test_job_states_survive_an_orchestrator_kill(services, table_env):
    worker = services("worker.py", {"WORK_MS": "300"})
    first = services("orchestrator.py", {**table_env, "WORKER_URL": worker.url})
    done_id = submit(first.url, PAYLOAD)
    done = poll(first.url, done_id)[-1]
    dead = services("orchestrator.py", {**table_env, "WORKER_URL": "http://127.0.0.1:9",
                                        "WORKER_RETRY_BUDGET_SECONDS": "0"})
    failed_id = submit(dead.url, PAYLOAD)
    failed = poll(dead.url, failed_id)[-1]
    assert (done["state"], failed["state"]) == ("done", "failed")

    first.proc.kill()
    dead.proc.kill()
    second = services("orchestrator.py", {**table_env, "WORKER_URL": worker.url})

    assert request(second.url, "GET", f"/status/{done_id}").json == done
    [selected] = [x for x in second.lines() if x["message"] == "store selected"]
    assert {k: selected.get(k) for k in ("store", "table", "region", "endpoint", "workerUrl")} == {
        "store": "dynamodb", "table": table_env["JOBS_TABLE_NAME"], "region": "us-east-1",
        "endpoint": table_env["AWS_ENDPOINT_URL"], "workerUrl": worker.url}
    assert request(second.url, "GET", f"/status/{failed_id}").json == failed
    row = item(table_env, done_id)
    assert row["state"] == {"S": "done"}
    assert json.loads(row["result"]["S"]) == done["result"]
    assert "activeShard" not in row and int(row["ttl"]["N"]) > time.time() + 6 * 86400


def test_a_job_whose_orchestrator_crashed_is_recovered_by_another(services, table_env):
    worker = services("worker.py", {"WORK_MS": "3000"})
    env = {**table_env, **FAST_RECOVERY, "WORKER_URL": worker.url}
    doomed = services("orchestrator.py", env)
    job_id = submit(doomed.url, PAYLOAD)
    before = wait_progress(doomed.url, job_id)
    doomed.proc.kill()

    rescuer = services("orchestrator.py", env)
    snapshots = poll(rescuer.url, job_id, timeout=30)
    final = snapshots[-1]

    assert final["state"] == "done"
    assert final["attempts"] == 2
    assert final["progress"] == 1.0
    assert min(s["progress"] for s in snapshots) >= before["progress"]  # never went backwards
    lines = [x for x in rescuer.lines_when(lambda ls: any(x.get("jobId") == job_id and x["message"] == "job finished"
                                                           for x in ls), "the rescuer's job finished line")
             if x.get("jobId") == job_id]
    assert [x["message"] for x in lines][:2] == ["recovering job with expired lease", "job claimed"]


def test_a_job_that_keeps_losing_its_orchestrator_fails_after_max_attempts(services, table_env):
    worker = services("worker.py", {"WORK_MS": "5000"})
    env = {**table_env, **FAST_RECOVERY, "WORKER_URL": worker.url, "MAX_JOB_ATTEMPTS": "1"}
    doomed = services("orchestrator.py", env)
    job_id = submit(doomed.url, PAYLOAD)
    wait_progress(doomed.url, job_id)
    doomed.proc.kill()
    rescuer = services("orchestrator.py", env)
    final = poll(rescuer.url, job_id, timeout=30)[-1]
    assert final["state"] == "failed"
    assert final["attempts"] == 2
    assert final["error"] == ("gave up after 1 attempts: the orchestrator running the job stopped each time "
                              "before it finished (lease of 3 s expired)")


def test_two_orchestrators_share_one_table_and_never_run_a_job_twice(services, table_env):
    worker = services("worker.py", {"WORK_MS": "400"})
    env = {**table_env, **FAST_RECOVERY, "WORKER_URL": worker.url}
    a, b = services("orchestrator.py", env), services("orchestrator.py", env)
    ids = [submit(a.url, {**PAYLOAD, "seed": i}) for i in range(4)] + \
          [submit(b.url, {**PAYLOAD, "seed": i}) for i in range(4, 8)]
    for job_id in ids:  # read each through the orchestrator that did not create it
        other = b if ids.index(job_id) < 4 else a
        final = poll(other.url, job_id, timeout=30)[-1]
        assert (final["state"], final["attempts"]) == ("done", 1)
    started = [x["jobId"] for x in worker.lines() if x["message"] == "job started"]
    assert sorted(started) == sorted(ids)


def test_sigterm_hands_queued_jobs_back_to_another_orchestrator(services, table_env):
    worker = services("worker.py", {"WORK_MS": "1500"})
    # A long lease: the staying orchestrator can take the queued jobs only once they are
    # handed back, not because their lease ran out first.
    env = {**table_env, "JOB_LEASE_SECONDS": "60", "REAPER_INTERVAL_SECONDS": "0.2", "WORKER_URL": worker.url,
           "MAX_CONCURRENT_JOBS": "1", "SHUTDOWN_GRACE_SECONDS": "10"}
    leaving = services("orchestrator.py", env)
    ids = [submit(leaving.url, {**PAYLOAD, "seed": i}) for i in range(3)]
    poll(leaving.url, ids[0], until=("running",))
    staying = services("orchestrator.py", env)
    leaving.signal(15)
    assert leaving.wait(timeout=30) == 0
    handed_back = {x["jobId"] for x in leaving.lines() if x["message"] == "job handed back"}
    assert handed_back == set(ids[1:])
    finals = [poll(staying.url, j, timeout=30)[-1] for j in ids]
    assert [f["state"] for f in finals] == ["done", "done", "done"]
    assert all(f["attempts"] == 1 for f in finals)


def test_store_outage_gives_503_and_the_service_recovers_by_itself(services):
    server = MotoServer()
    try:
        env = create_table(server, "jobs-outage")
        worker = services("worker.py", {"WORK_MS": "100"})
        orch = services("orchestrator.py", {**env, "WORKER_URL": worker.url})
        server.stop()

        reply = request(orch.url, "POST", "/generate-scene", PAYLOAD, timeout=60)
        assert reply.status == 503
        assert reply.json["error"]["code"] == "store_unavailable"
        assert reply.headers["retry-after"] == "1"
        status = request(orch.url, "GET", "/status/6f1c1d1e-0000-4000-8000-000000000000", timeout=60)
        assert (status.status, status.json["error"]["code"]) == (503, "store_unavailable")

        server = MotoServer.restart(server)
        create_table(server, "jobs-outage")
        job_id = submit(orch.url, PAYLOAD)
        assert poll(orch.url, job_id)[-1]["state"] == "done"
        assert request(orch.url, "GET", "/healthz").status == 200
    finally:
        server.stop()


def test_smoke_script_passes_in_dynamodb_mode_and_leaves_a_row(services, table_env):
    worker = services("worker.py", {"WORK_MS": "500"})
    orch = services("orchestrator.py", {**table_env, "WORKER_URL": worker.url})
    result = subprocess.run(["bash", "scripts/smoke-test.sh", orch.url], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    client = boto3.client("dynamodb", endpoint_url=table_env["AWS_ENDPOINT_URL"])
    rows = client.scan(TableName=table_env["JOBS_TABLE_NAME"])["Items"]
    assert [r["state"]["S"] for r in rows] == ["done"]
    assert rows[0]["jobId"]["S"] in result.stdout


def test_an_orchestrator_pointed_at_a_missing_table_refuses_to_start_naming_the_table(services, moto_server):
    """A missing table is a configuration error (exit 2), not an outage to answer 503 for
    forever: on ECS the task stops, and a deployment that names the wrong table rolls back."""
    orch = services("orchestrator.py", {**moto_server.env(), "JOBS_TABLE_NAME": "jobs-never-created"}, wait=False)
    assert orch.wait(timeout=30) == 2
    [line] = [x for x in orch.lines() if x["level"] == "ERROR"]
    assert (line["message"], line["reason"]) == ("invalid configuration", (
        f"DynamoDB table jobs-never-created does not exist in us-east-1 at {moto_server.endpoint}: "
        "Requested resource not found; create it with `python dynamostore.py create-table` or Terraform"))
