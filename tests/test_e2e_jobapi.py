"""End to end: the job API beyond submit-and-poll (cancel, idempotent submit, waiting, the
events stream) on real orchestrator and worker processes, in memory mode and in DynamoDB
mode (a table on the session's moto server; the cross-replica race on dynalite, which locks
each item as DynamoDB does)."""

from __future__ import annotations

import concurrent.futures
import http.client
import itertools
import json
import subprocess
import sys
import threading
import time

import boto3
import pytest

import apiclient
import dynamostore
from apiclient import poll, request, submit
from conftest import ROOT
from polling import wait_until

PAYLOAD = {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}
_tables = itertools.count()


@pytest.fixture(params=["memory", "dynamodb"])
def store_env(request):
    """The orchestrator's environment for one store mode (a fresh table in DynamoDB mode)."""
    if request.param == "memory":
        return {}
    server = request.getfixturevalue("moto_server")
    env = {**server.env(), "JOBS_TABLE_NAME": f"jobs-api-{next(_tables)}"}
    result = subprocess.run([sys.executable, "dynamostore.py", "create-table"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return env


def started(worker, job_id: str) -> list[dict]:
    return [x for x in worker.lines() if x["message"] == "job started" and x.get("jobId") == job_id]


def wait_progress(url: str, job_id: str) -> dict:
    def progressed():
        job = request(url, "GET", f"/status/{job_id}").json
        return job if job["state"] == "running" and job["progress"] > 0 else None
    return wait_until(progressed, 15, "the job's first progress", 0.05)


# -- cancel -----------------------------------------------------------------------------------


def test_a_running_job_is_canceled_and_its_worker_stops(stack, store_env):
    worker, orch = stack(worker_env={"WORK_MS": "8000"}, orchestrator_env=store_env)
    job_id = submit(orch.url, PAYLOAD)
    seen = wait_progress(orch.url, job_id)
    reply = request(orch.url, "POST", f"/jobs/{job_id}/cancel")
    assert reply.status == 200, reply.raw
    canceled = reply.json
    assert (canceled["state"], canceled["error"], canceled["result"]) == ("canceled", "canceled by client", None)
    assert canceled["progress"] >= seen["progress"]
    # The worker's stream is closed: it stops the job (its slot is free, no "job finished").
    wait_until(lambda: [x for x in worker.lines() if x["message"] == "client went away"], 10, "the worker stopping")
    assert [x for x in worker.lines() if x["message"] == "job finished"] == []
    # Nothing overwrites it later: the old run does not finish it.
    assert request(orch.url, "GET", f"/status/{job_id}?wait=2").json == canceled
    metrics = orch.lines_when(lambda ls: any(x["message"] == "job metrics" for x in ls), "the metrics line")
    [line] = [x for x in metrics if x["message"] == "job metrics"]
    assert (line["JobCanceled"], line["JobFailed"], line["JobSucceeded"], line["state"]) == (1, 0, 0, "canceled")


@pytest.mark.parametrize("accept", ["application/x-ndjson", "application/json"])
def test_the_worker_stops_as_soon_as_its_client_goes_away_not_at_its_next_progress_tick(services, accept):
    """With a 30 s tick there is nothing to write for 30 s: the worker must notice the closed
    connection while it waits, so a canceled job costs no more work (nor a worker slot)."""
    worker = services("worker.py", {"WORK_MS": "600000", "PROGRESS_TICK_MS": "30000", "MAX_CONCURRENT_JOBS": "1"})
    host, port = worker.url.removeprefix("http://").split(":")
    body = json.dumps({"jobId": "job-gone", "payload": PAYLOAD | {"style": None}})
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/process", body, {"Content-Type": "application/json", "Accept": accept})
    wait_until(lambda: [x for x in worker.lines() if x["message"] == "job started"], 10, "the job starting")
    closed_at = time.monotonic()
    conn.close()
    wait_until(lambda: [x for x in worker.lines() if x["message"] == "client went away"], 10, "the worker stopping")
    assert time.monotonic() - closed_at < 10  # the next tick was 30 s away
    assert [x for x in worker.lines() if x["message"] == "job finished"] == []
    # Its one slot is free again: the next job streams (200), it is not refused as busy (503).
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/process", body.replace("job-gone", "job-next"),
                 {"Content-Type": "application/json", "Accept": "application/x-ndjson"})
    assert conn.getresponse().status == 200
    conn.close()


def test_a_queued_job_is_canceled_and_never_runs(stack, store_env):
    worker, orch = stack(worker_env={"WORK_MS": "3000"},
                         orchestrator_env={**store_env, "MAX_CONCURRENT_JOBS": "1"})
    first = submit(orch.url, PAYLOAD)
    waiting = submit(orch.url, PAYLOAD)
    poll(orch.url, first, until=("running",))
    reply = request(orch.url, "POST", f"/jobs/{waiting}/cancel")
    assert (reply.status, reply.json["state"], reply.json["progress"]) == (200, "canceled", 0.0)
    assert poll(orch.url, first)[-1]["state"] == "done"
    time.sleep(0.5)  # the dispatch thread takes the canceled job from its queue and skips it
    assert started(worker, waiting) == []
    assert request(orch.url, "GET", f"/status/{waiting}").json["state"] == "canceled"


def test_canceling_an_ended_or_unknown_job_is_409_or_404(stack, store_env):
    _, orch = stack(worker_env={"WORK_MS": "0"}, orchestrator_env=store_env)
    done = submit(orch.url, PAYLOAD)
    assert poll(orch.url, done)[-1]["state"] == "done"
    reply = request(orch.url, "POST", f"/jobs/{done}/cancel")
    assert (reply.status, reply.json) == (409, {"error": {
        "code": "conflict", "message": "the job is already done; only a queued or running job can be canceled"}})
    unknown = "6f1c1d1e-0000-4000-8000-000000000000"
    assert request(orch.url, "POST", f"/jobs/{unknown}/cancel").status == 404
    assert request(orch.url, "POST", "/jobs/not-a-uuid/cancel").status == 404
    assert request(orch.url, "GET", f"/jobs/{unknown}/cancel").status == 405


@pytest.mark.parametrize("mode", ["memory", "dynalite"])
def test_two_cancels_of_one_running_job_have_one_winner(stack, mode, request):
    """In DynamoDB mode on dynalite, which locks each item as DynamoDB does (moto lets two
    conditional writes to one item both succeed, /work/shared/AWS-LOCAL.md)."""
    env = {}
    if mode == "dynalite":
        server = request.getfixturevalue("dynalite_server")
        name = f"jobs-cancel-race-{next(_tables)}"
        boto3.client("dynamodb", endpoint_url=server.endpoint).create_table(**dynamostore.table_definition(name))
        env = {"AWS_ENDPOINT_URL": server.endpoint, "JOBS_TABLE_NAME": name}
    _, slow = stack(worker_env={"WORK_MS": "10000"}, orchestrator_env=env)
    job_id = submit(slow.url, PAYLOAD)
    barrier = threading.Barrier(2)

    def cancel(_: int) -> int:
        barrier.wait()
        return apiclient.request(slow.url, "POST", f"/jobs/{job_id}/cancel").status

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(cancel, range(2)))
    assert statuses == [200, 409]


def test_a_job_canceled_on_one_replica_stops_on_the_replica_running_it(services, moto_server):
    """DynamoDB mode, two orchestrators: B cancels the job A runs; A's lease keeper reads
    the states of its running jobs every second, sees the cancel and closes the worker stream."""
    env = {**moto_server.env(), "JOBS_TABLE_NAME": f"jobs-api-{next(_tables)}"}
    subprocess.run([sys.executable, "dynamostore.py", "create-table"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=60)
    worker = services("worker.py", {"WORK_MS": "20000"})
    runner = services("orchestrator.py", {**env, "WORKER_URL": worker.url})
    other = services("orchestrator.py", {**env, "WORKER_URL": worker.url})
    job_id = submit(runner.url, PAYLOAD)
    wait_progress(runner.url, job_id)
    canceled_at = time.monotonic()
    assert request(other.url, "POST", f"/jobs/{job_id}/cancel").json["state"] == "canceled"
    wait_until(lambda: [x for x in worker.lines() if x["message"] == "client went away"], 15, "the worker stopping")
    stopped_after = time.monotonic() - canceled_at
    assert stopped_after < 10, stopped_after  # generous: the keeper looks every second
    lines = runner.lines_when(lambda ls: any(x["message"] == "job canceled; its run stopped" for x in ls), "stop")
    assert [x["jobId"] for x in lines if x["message"] == "job canceled; its run stopped"] == [job_id]
    assert request(runner.url, "GET", f"/status/{job_id}").json["state"] == "canceled"


# -- idempotent submit -------------------------------------------------------------------------


def keyed(url: str, key: str, body: dict, extra: dict[str, str] | None = None):
    return request(url, "POST", "/generate-scene", body, {"Idempotency-Key": key, **(extra or {})})


def test_the_same_key_and_body_replay_the_job_and_another_body_is_422(stack, store_env):
    _, orch = stack(worker_env={"WORK_MS": "0"}, orchestrator_env=store_env)
    first = keyed(orch.url, "order-42", PAYLOAD)
    again = keyed(orch.url, "order-42", {"style": "doom", "seed": 123, "prompt": "a spooky hallway"})  # key order
    assert (first.status, again.status) == (202, 202)
    assert again.json == first.json
    assert ("idempotent-replayed" in first.headers, again.headers["idempotent-replayed"]) == (False, "true")
    reused = keyed(orch.url, "order-42", {**PAYLOAD, "seed": 124})
    assert (reused.status, reused.json) == (422, {"error": {
        "code": "idempotency_key_reused",
        "message": "this Idempotency-Key was used with another request body; use a new key for a new job"}})
    other = keyed(orch.url, "order-43", PAYLOAD)
    assert other.json["jobId"] != first.json["jobId"]


def test_a_body_without_a_seed_replays_the_job_whose_seed_was_chosen(stack, store_env):
    _, orch = stack(worker_env={"WORK_MS": "0"}, orchestrator_env=store_env)
    body = {"prompt": "a haunted cellar"}
    first, again = keyed(orch.url, "no-seed", body), keyed(orch.url, "no-seed", body)
    assert again.json["jobId"] == first.json["jobId"]
    job = poll(orch.url, first.json["jobId"])[-1]
    assert job["input"]["seed"] == job["result"]["seed"]


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9"])
def test_a_bad_idempotency_key_is_400(stack, key):
    _, orch = stack(worker_env={"WORK_MS": "0"})
    raw = b"POST /generate-scene HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n"
    body = json.dumps(PAYLOAD).encode()
    conn = http.client.HTTPConnection("127.0.0.1", orch.port, timeout=10)
    try:
        conn.sock = None
        conn.connect()
        conn.sock.sendall(raw + b"Idempotency-Key: " + key.encode("latin-1") + b"\r\nContent-Length: %d\r\n\r\n%s"
                          % (len(body), body))
        resp = http.client.HTTPResponse(conn.sock)
        resp.begin()
        assert (resp.status, json.loads(resp.read())["error"]["message"]) == (400, (
            "Idempotency-Key must be 1 to 255 printable ASCII characters (a UUID is a good choice)"))
    finally:
        conn.close()


def test_eight_concurrent_keyed_submits_create_exactly_one_job(stack, store_env):
    worker, orch = stack(worker_env={"WORK_MS": "0"}, orchestrator_env=store_env)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: keyed(orch.url, "burst", PAYLOAD), range(8)))
    assert {r.status for r in replies} == {202}
    [job_id] = {r.json["jobId"] for r in replies}
    assert sum("idempotent-replayed" not in r.headers for r in replies) == 1
    assert poll(orch.url, job_id)[-1]["attempts"] == 1
    assert len(started(worker, job_id)) == 1


def test_keyed_submits_racing_on_two_replicas_of_one_table_create_exactly_one_job(services, dynalite_server):
    name = f"jobs-race-{next(_tables)}"
    client = boto3.client("dynamodb", endpoint_url=dynalite_server.endpoint)
    client.create_table(**dynamostore.table_definition(name))  # dynalite has no TTL API: the table alone
    env = {"AWS_ENDPOINT_URL": dynalite_server.endpoint, "JOBS_TABLE_NAME": name}
    worker = services("worker.py", {"WORK_MS": "0"})
    replicas = [services("orchestrator.py", {**env, "WORKER_URL": worker.url}) for _ in range(2)]
    barrier = threading.Barrier(8)

    def one(n: int):
        barrier.wait()
        return keyed(replicas[n % 2].url, "cross-replica", PAYLOAD)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(one, range(8)))
    assert {r.status for r in replies} == {202}
    [job_id] = {r.json["jobId"] for r in replies}
    assert sum("idempotent-replayed" not in r.headers for r in replies) == 1
    assert poll(replicas[0].url, job_id)[-1]["state"] == "done"
    assert len(started(worker, job_id)) == 1


# -- waiting instead of polling ----------------------------------------------------------------


def test_wait_answers_when_the_job_ends_and_since_answers_at_the_next_change(stack, store_env):
    _, orch = stack(worker_env={"WORK_MS": "1500"}, orchestrator_env=store_env)
    job_id = submit(orch.url, PAYLOAD)
    first = request(orch.url, "GET", f"/status/{job_id}").json
    changed = request(orch.url, "GET", f"/status/{job_id}?wait=20&since={first['updatedAt']}").json
    assert changed["updatedAt"] > first["updatedAt"]
    started_at = time.monotonic()
    ended = request(orch.url, "GET", f"/status/{job_id}?wait=20", timeout=30).json
    assert ended["state"] == "done"
    assert time.monotonic() - started_at < 15  # answered at the end, not after the 20 s
    assert request(orch.url, "GET", f"/status/{job_id}?wait=20&since={ended['updatedAt']}").json == ended


def test_wait_on_a_job_that_does_not_change_answers_after_n_seconds_with_it_as_it_is(stack, store_env):
    _, orch = stack(worker_env={"WORK_MS": "20000", "PROGRESS_TICK_MS": "20000"}, orchestrator_env=store_env)
    job_id = submit(orch.url, PAYLOAD)
    running = poll(orch.url, job_id, until=("running",))[-1]
    started_at = time.monotonic()
    same = request(orch.url, "GET", f"/status/{job_id}?wait=1&since={running['updatedAt']}").json
    assert time.monotonic() - started_at >= 0.9
    assert same == running


def test_prefer_wait_answers_201_with_the_ended_job_or_202_and_clamps_to_50(stack, store_env):
    _, orch = stack(worker_env={"WORK_MS": "300"}, orchestrator_env=store_env)
    reply = request(orch.url, "POST", "/generate-scene", PAYLOAD, {"Prefer": "wait=20"}, timeout=30)
    assert (reply.status, reply.json["state"], reply.headers["preference-applied"]) == (201, "done", "wait=20")
    assert reply.headers["location"] == f"/status/{reply.json['jobId']}"
    _, slow = stack(worker_env={"WORK_MS": "10000"}, orchestrator_env=store_env)
    short = request(slow.url, "POST", "/generate-scene", PAYLOAD, {"Prefer": "respond-async, wait=1"})
    assert (short.status, short.headers["preference-applied"], list(short.json)) == (
        202, "wait=1", ["jobId", "statusUrl"])
    ignored = request(slow.url, "POST", "/generate-scene", PAYLOAD, {"Prefer": "wait=soon"})
    assert (ignored.status, "preference-applied" in ignored.headers) == (202, False)


@pytest.mark.parametrize(("query", "message"), [
    ("wait=51", "wait must be a number of seconds from 0 to 50, got '51'"),
    ("wait=-1", "wait must be a number of seconds from 0 to 50, got '-1'"),
    ("wait=soon", "wait must be a number of seconds from 0 to 50, got 'soon'"),
    ("wait=nan", "wait must be a number of seconds from 0 to 50, got 'nan'"),
    ("wait=1&since=yesterday", "since must be a job's updatedAt, like 2026-11-28T09:29:33.250Z, got 'yesterday'"),
    ("since=2026-11-28T09:29:33.250Z", "since needs wait: ?wait=N&since=<updatedAt>"),
    ("wait=1&wait=2", "query parameter(s) given more than once: wait"),
    ("verbose=1", "unknown query parameter(s): verbose; accepted: since, wait"),
])
def test_bad_wait_parameters_are_400_naming_them(stack, query, message):
    _, orch = stack(worker_env={"WORK_MS": "0"})
    job_id = submit(orch.url, PAYLOAD)
    reply = request(orch.url, "GET", f"/status/{job_id}?{query}")
    assert (reply.status, reply.json) == (400, {"error": {"code": "invalid_request", "message": message}})


def test_waiting_requests_are_bounded_and_do_not_block_other_requests(stack):
    _, orch = stack(worker_env={"WORK_MS": "20000"}, orchestrator_env={"MAX_WAITING_REQUESTS": "2"})
    job_id = submit(orch.url, PAYLOAD)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        waits = [pool.submit(request, orch.url, "GET", f"/status/{job_id}?wait=4") for _ in range(2)]
        wait_until(lambda: len([x for x in orch.lines() if x["message"] == "request"]) >= 1, 5, "requests in")
        time.sleep(0.5)  # both waits are in (they only log when they answer)
        shed = request(orch.url, "GET", f"/status/{job_id}?wait=4")
        assert (shed.status, shed.headers["retry-after"], shed.json["error"]["code"]) == (503, "1", "too_many_waiting")
        started_at = time.monotonic()
        assert request(orch.url, "GET", "/healthz").status == 200
        assert request(orch.url, "GET", f"/status/{job_id}").status == 200
        assert time.monotonic() - started_at < 2  # not stuck behind the two waiting requests
        assert [w.result().status for w in waits] == [200, 200]


# -- progress events ---------------------------------------------------------------------------


def read_events(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[dict[str, str], list]:
    """The stream's response headers, and its events and comments, in order, until it ends."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        items: list = []
        for block in resp.read().decode().split("\n\n"):
            if block.startswith(":"):
                items.append(("comment", block))
            elif block:
                fields = dict(line.split(": ", 1) for line in block.split("\n"))
                items.append((fields["event"], fields["id"], json.loads(fields["data"])))
        return {k.lower(): v for k, v in resp.getheaders()}, items
    finally:
        conn.close()


def test_events_stream_the_status_at_once_then_each_change_then_end(stack, store_env):
    _, orch = stack(worker_env={"WORK_MS": "2400", "PROGRESS_TICK_MS": "100"},
                    orchestrator_env={**store_env, "SSE_HEARTBEAT_SECONDS": "0.2"})
    job_id = submit(orch.url, PAYLOAD)
    headers, items = read_events(orch.url, f"/status/{job_id}/events")
    assert (headers["content-type"], headers["cache-control"]) == ("text/event-stream", "no-store")
    events = [item for item in items if item[0] == "status"]
    states = [data["state"] for _, _, data in events]
    assert states[-1] == "done" and "running" in states
    progress = [data["progress"] for _, _, data in events]
    assert progress == sorted(progress) and len(set(progress)) >= 3
    assert [event_id for _, event_id, _ in events] == [data["updatedAt"] for _, _, data in events]
    assert len({event_id for _, event_id, _ in events}) == len(events)  # one event per change


def test_events_send_comments_while_nothing_changes_and_resume_after_last_event_id(stack):
    _, orch = stack(worker_env={"WORK_MS": "1600", "PROGRESS_TICK_MS": "1000"},
                    orchestrator_env={"SSE_HEARTBEAT_SECONDS": "0.1"})
    job_id = submit(orch.url, PAYLOAD)
    _, items = read_events(orch.url, f"/status/{job_id}/events")
    assert ("comment", ": still running") in items
    last = [item for item in items if item[0] == "status"][-1]
    _, resumed = read_events(orch.url, f"/status/{job_id}/events", {"Last-Event-ID": last[1]})
    assert resumed == []  # nothing changed after the last event: the ended job's stream just ends
    assert request(orch.url, "GET", f"/status/{job_id}/events?x=1").status == 400
    assert request(orch.url, "GET", "/status/6f1c1d1e-0000-4000-8000-000000000000/events").status == 404
