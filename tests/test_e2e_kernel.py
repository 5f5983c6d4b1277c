"""End to end: a real orchestrator and worker as processes on loopback ports."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket

import pytest

from apiclient import poll, request, submit
from polling import wait_until

PAYLOAD = {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}
# scene.build_scene("a spooky hallway", 123, "doom") as the worker computes it; pinned so
# a change to the generator is a visible, deliberate change.
GOLDEN_DIGEST = "sha256:03fbeb1896a09bced23d0f6623db3cb77dc6ad44a61553c484011bcd7ef13f62"
STATE_ORDER = {"queued": 0, "running": 1, "done": 2, "failed": 2}


def assert_forward_only(snapshots: list[dict]) -> None:
    states = [s["state"] for s in snapshots]
    assert [STATE_ORDER[s] for s in states] == sorted(STATE_ORDER[s] for s in states), states
    progress = [s["progress"] for s in snapshots]
    assert progress == sorted(progress), progress
    assert all(0.0 <= p <= 1.0 for p in progress)


def test_job_runs_to_done_with_visible_intermediate_progress(stack):
    _, orch = stack()
    reply = request(orch.url, "POST", "/generate-scene", PAYLOAD)
    assert reply.status == 202
    job_id = reply.json["jobId"]
    assert reply.json == {"jobId": job_id, "statusUrl": f"/status/{job_id}"}
    assert reply.headers["location"] == f"/status/{job_id}"

    snapshots = poll(orch.url, job_id)

    final = snapshots[-1]
    assert final["state"] == "done"
    assert final["progress"] == 1.0
    assert final["error"] is None
    assert final["input"] == PAYLOAD
    assert final["attempts"] == 1
    assert final["result"]["seed"] == 123
    assert final["result"]["scene"]["style"] == "doom"
    assert final["result"]["digest"] == GOLDEN_DIGEST
    assert final["createdAt"].endswith("Z") and final["updatedAt"] >= final["createdAt"]
    assert_forward_only(snapshots)
    intermediate = {s["progress"] for s in snapshots if s["state"] == "running" and 0 < s["progress"] < 1}
    assert len(intermediate) >= 3, f"poller saw only {sorted(intermediate)}"
    assert all(s["result"] is None for s in snapshots if s["state"] != "done")


def test_equal_inputs_give_identical_results_and_another_seed_differs(stack):
    _, orch = stack(worker_env={"WORK_MS": "200"})
    first, second = submit(orch.url, PAYLOAD), submit(orch.url, PAYLOAD)
    other = submit(orch.url, {**PAYLOAD, "seed": 124})
    results = [poll(orch.url, j)[-1]["result"] for j in (first, second, other)]
    assert results[0] == results[1]
    assert results[0]["digest"] != results[2]["digest"]
    assert results[2]["seed"] == 124


def test_seed_is_chosen_and_recorded_when_absent(stack):
    _, orch = stack(worker_env={"WORK_MS": "100"})
    job_id = submit(orch.url, {"prompt": "a quiet library"})
    final = poll(orch.url, job_id)[-1]
    assert final["state"] == "done"
    seed = final["input"]["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**53
    assert final["input"]["style"] is None
    assert final["result"]["seed"] == seed


def test_worker_down_fails_the_job_past_its_budget_with_a_clear_error_naming_no_url(services):
    with socket.socket() as s:  # a port that refuses connections
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}"
    orch = services("orchestrator.py", {"WORKER_URL": dead_url, "WORKER_RETRY_BUDGET_SECONDS": "2",
                                        "RETRY_BACKOFF_MS": "100", "RETRY_BACKOFF_MAX_MS": "400"})
    job_id = submit(orch.url, PAYLOAD)
    snapshots = poll(orch.url, job_id, timeout=15)
    final = snapshots[-1]
    assert {(s["state"], s["error"]) for s in snapshots[:-1]} <= {("queued", None), ("running", None)}
    assert (final["state"], final["result"]) == ("failed", None)
    assert re.fullmatch(r"the worker could not be reached; gave up after retrying for 2 s \(\d+ retries\)",
                        final["error"]), final["error"]
    [line] = [x for x in orch.lines() if x["message"] == "job failed"]
    assert (line["jobId"], line["jobError"], line["workerUrl"]) == (job_id, final["error"], dead_url)
    assert line["error"]["message"].startswith(f"worker unreachable at {dead_url}: [Errno 111] Connection refused")


def test_worker_killed_mid_job_and_not_back_fails_the_job_past_its_budget(stack):
    worker, orch = stack(worker_env={"WORK_MS": "8000"},
                         orchestrator_env={"WORKER_RETRY_BUDGET_SECONDS": "1", "RETRY_BACKOFF_MS": "100"})
    job_id = submit(orch.url, PAYLOAD)
    poll(orch.url, job_id, until=("running",))
    wait_until(lambda: request(orch.url, "GET", f"/status/{job_id}").json["progress"] > 0.0, 10,
               "progress before the kill", 0.05)
    worker.proc.kill()
    snapshots = poll(orch.url, job_id, timeout=15)
    final = snapshots[-1]
    assert final["state"] == "failed"
    assert re.fullmatch(r"the worker could not be reached; gave up after retrying for 1 s \(\d+ retries\)",
                        final["error"]), final["error"]
    assert_forward_only(snapshots)


def test_hanging_worker_fails_the_job_after_its_timeout(services):
    with socket.socket() as hang:  # accepts connections (backlog) and never answers
        hang.bind(("127.0.0.1", 0))
        hang.listen(16)
        url = f"http://127.0.0.1:{hang.getsockname()[1]}"
        orch = services("orchestrator.py", {"WORKER_URL": url, "WORKER_TIMEOUT_SECONDS": "1",
                                            "WORKER_RETRY_BUDGET_SECONDS": "1.5", "RETRY_BACKOFF_MS": "100"})
        job_id = submit(orch.url, PAYLOAD)
        final = poll(orch.url, job_id, timeout=20)[-1]
    assert final["state"] == "failed"
    assert re.fullmatch(r"the worker did not answer; gave up after retrying for \d s \(\d+ retr(y|ies)\)",
                        final["error"]), final["error"]
    details = [x["error"]["message"] for x in orch.lines() if x["message"] == "job failed"]
    assert details[0].startswith(f"worker at {url} did not answer within 1 s (gave up after "), details


def test_excess_jobs_wait_in_queued_while_concurrency_is_bounded(stack):
    _, orch = stack(worker_env={"WORK_MS": "1500"}, orchestrator_env={"MAX_CONCURRENT_JOBS": "1"})
    ids = [submit(orch.url, {**PAYLOAD, "seed": i}) for i in range(3)]
    poll(orch.url, ids[0], until=("running",))
    states = [request(orch.url, "GET", f"/status/{j}").json["state"] for j in ids]
    assert states == ["running", "queued", "queued"]
    finals = [poll(orch.url, j, timeout=30)[-1]["state"] for j in ids]
    assert finals == ["done", "done", "done"]


def test_keep_alive_serves_many_requests_on_one_connection(stack):
    _, orch = stack()
    conn = http.client.HTTPConnection("127.0.0.1", orch.port, timeout=5)
    for _ in range(20):
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b'{"ok":true}')
        assert resp.getheader("Connection") is None
    conn.close()


def test_request_id_is_echoed_and_threads_the_job_through_both_services(stack):
    worker, orch = stack(worker_env={"WORK_MS": "200"})
    reply = request(orch.url, "POST", "/generate-scene", PAYLOAD, {"X-Request-Id": "smoke-req-42"})
    assert reply.headers["x-request-id"] == "smoke-req-42"
    job_id = reply.json["jobId"]
    poll(orch.url, job_id)
    worker_lines = [x for x in worker.lines_when(lambda ls: any(x.get("jobId") == job_id and x["message"] == "request"
                                                                for x in ls), "the worker's request line")
                    if x.get("jobId") == job_id]
    assert [x["message"] for x in worker_lines] == ["job started", "job finished", "request"]
    assert {x["requestId"] for x in worker_lines} == {"smoke-req-42"}
    orch_lines = [x for x in orch.lines_when(lambda ls: any(x.get("jobId") == job_id and x["message"] == "job finished"
                                                            for x in ls), "the job finished line")
                  if x.get("jobId") == job_id]
    assert {"job accepted", "job claimed", "job finished"} <= {x["message"] for x in orch_lines}
    assert {x["requestId"] for x in orch_lines} == {"smoke-req-42"}


def test_amzn_trace_id_is_the_request_id_when_no_x_request_id(stack):
    _, orch = stack()
    trace = "Root=1-67891233-abcdef012345678912345678"
    reply = request(orch.url, "GET", "/healthz", headers={"X-Amzn-Trace-Id": trace})
    assert reply.headers["x-request-id"] == trace


def test_sigterm_lets_the_running_job_finish_and_exits_zero(stack):
    worker, orch = stack(worker_env={"WORK_MS": "1500"})
    job_id = submit(orch.url, PAYLOAD)
    poll(orch.url, job_id, until=("running",))
    orch.signal(signal.SIGTERM)
    assert orch.wait(timeout=30) == 0
    lines = orch.lines()
    finished = [x for x in lines if x["message"] == "job finished" and x.get("jobId") == job_id]
    assert finished and finished[0]["state"] == "done"
    assert lines[-1]["message"] == "stopped"
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_sigterm_on_worker_finishes_the_in_flight_request(stack):
    worker, orch = stack(worker_env={"WORK_MS": "1500"})
    job_id = submit(orch.url, PAYLOAD)
    # The worker must hold the request before the signal: "running" is set at the claim,
    # before the orchestrator has called the worker, so wait for the worker's own line.
    wait_until(lambda: [x for x in worker.lines() if x["message"] == "job started" and x.get("jobId") == job_id],
               10, "the worker started the job")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert poll(orch.url, job_id, timeout=10)[-1]["state"] == "done"


@pytest.mark.parametrize("script", ["orchestrator.py", "worker.py"])
def test_every_stdout_line_is_json_with_the_required_keys(services, script):
    svc = services(script)
    request(svc.url, "GET", "/nope")
    svc.signal(signal.SIGINT)
    assert svc.wait(timeout=30) == 0
    lines = svc.lines()
    messages = [x["message"] for x in lines]
    assert messages[0] == "store selected" if script == "orchestrator.py" else messages[0] == "listening"
    assert "stopping" in messages and messages[-1] == "stopped"
    access = [{k: x[k] for k in ("method", "path", "status")} for x in lines if x["message"] == "request"]
    assert access[-1] == {"method": "GET", "path": "/nope", "status": 404}
    for line in lines:
        assert list(line)[:4] == ["timestamp", "level", "service", "message"]
        assert line["service"] == script.removesuffix(".py")


def test_after_sigterm_a_request_on_an_open_keep_alive_connection_gets_503_and_close(stack):
    """Observed before: a job was accepted with 202 after SIGTERM. The orchestrator stays up
    while its running job finishes; a POST arriving on an idle keep-alive connection in
    that window is refused, and no job is created for it."""
    _, orch = stack(worker_env={"WORK_MS": "3000"})
    running = submit(orch.url, PAYLOAD)
    poll(orch.url, running, until=("running",))
    conn = http.client.HTTPConnection("127.0.0.1", orch.port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b'{"ok":true}'
        orch.signal(signal.SIGTERM)
        wait_until(lambda: [x for x in orch.lines() if x["message"] == "stopping"], 10, "the stopping line")
        conn.request("POST", "/generate-scene", json.dumps(PAYLOAD), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert (resp.status, resp.headers["Connection"], json.loads(resp.read())) == (503, "close", {"error": {
            "code": "shutting_down", "message": "this server is shutting down; retry on a new connection"}})
    finally:
        conn.close()
    assert orch.wait(timeout=30) == 0
    accepted = [x["jobId"] for x in orch.lines() if x["message"] == "job accepted"]
    assert accepted == [running]


def test_log_lines_are_written_in_batches_and_all_of_them_on_sigterm(services):
    """With a 10 s flush interval nothing reaches the file while the service runs; SIGTERM
    writes every pending line (so a stop loses nothing), ending with "stopped"."""
    worker = services("worker.py", {"LOG_FLUSH_MS": "10000"})  # not the fixture's 0: batching on
    assert request(worker.url, "GET", "/healthz").status == 200
    assert worker.raw_output() == ""
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    messages = [x["message"] for x in worker.lines()]
    # The client has its answer before the server writes the access line, so the second request's
    # line may follow "stopping" (the drain waits for it); every line comes before "stopped".
    assert messages[0] == "listening" and messages[-1] == "stopped"
    assert [x["path"] for x in worker.lines() if x["message"] == "request"] == ["/healthz", "/healthz"]
    assert sorted(messages) == sorted(["listening", "request", "request", "stopping", "stopped"])
