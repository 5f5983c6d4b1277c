"""End to end: the worker's WORKER_TOKEN and the public API's optional API_TOKEN, on real
processes on loopback ports."""

from __future__ import annotations

import collections
import http.client
import json
import threading
import urllib.parse

from apiclient import poll, request, submit
from polling import wait_until

WORKER_TOKEN = "e2e-worker-token-0123456789abcdef"
API_TOKEN = "e2e-api-token-0123456789abcdef"
PAYLOAD = {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}
MISSING = {"error": {"code": "unauthorized", "message": "this route needs Authorization: Bearer <token>"}}

FLOODERS = 20
JOBS = 10
FLOOD_REQUESTS_PER_CLIENT = 20_000  # a bound; the flood stops as soon as the jobs are done


class Flood:
    """``clients`` threads posting a valid job to the worker's /process as fast as they can,
    on keep-alive connections, without the token (half) or with a wrong one (half)."""

    def __init__(self, worker_url: str, clients: int):
        parts = urllib.parse.urlsplit(worker_url)
        self._address = (parts.hostname, parts.port)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.answered_by = [0] * clients
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Flood:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, index: int) -> None:
        body = json.dumps({"jobId": f"flood-{index}", "payload": PAYLOAD})
        headers = {"Content-Type": "application/json"}
        if index % 2:
            headers["Authorization"] = "Bearer not-the-worker-token-0123456789"
        conn = http.client.HTTPConnection(*self._address, timeout=10)
        try:
            for _ in range(FLOOD_REQUESTS_PER_CLIENT):
                if self._stop.is_set():
                    return
                conn.request("POST", "/process", body, headers)
                resp = conn.getresponse()
                resp.read()
                with self._lock:
                    self.statuses[resp.status] += 1
                    self.answered_by[index] += 1
                if resp.will_close:
                    conn.close()
        finally:
            conn.close()


def test_a_flood_without_the_worker_token_gets_401_and_every_real_job_ends_done(stack):
    """Observed before the token: 20 clients calling /process held the worker's slots and 8
    of 10 real jobs failed with `busy`. Now the flood is refused before a slot is taken."""
    worker, orch = stack(worker_env={"WORKER_TOKEN": WORKER_TOKEN}, orchestrator_env={"WORKER_TOKEN": WORKER_TOKEN})
    with Flood(worker.url, FLOODERS) as flood:
        wait_until(lambda: min(flood.answered_by) > 0, 30, "an answer to every flooding client")
        job_ids = [submit(orch.url, {**PAYLOAD, "seed": seed}) for seed in range(JOBS)]
        finals = [poll(orch.url, job_id, timeout=60)[-1] for job_id in job_ids]
    assert [(f["state"], f["error"]) for f in finals] == [("done", None)] * JOBS
    assert set(flood.statuses) == {401}
    refused = sum(flood.statuses.values())
    assert refused >= FLOODERS

    def refusals_logged() -> list[dict]:
        return [x for x in worker.lines() if x["message"] == "request" and x["status"] == 401]

    assert len(wait_until(lambda: len(refusals_logged()) == refused and refusals_logged(), 10,
                          "an access line per refused call")) == refused
    started = [x["jobId"] for x in worker.lines() if x["message"] == "job started"]
    assert sorted(set(started)) == sorted(job_ids)
    assert WORKER_TOKEN not in worker.raw_output() + orch.raw_output()


def test_an_orchestrator_with_a_wrong_worker_token_fails_the_job_at_once_saying_401(stack):
    """A wrong token is a configuration fault, not a transient one: no retries."""
    worker, orch = stack(worker_env={"WORKER_TOKEN": WORKER_TOKEN},
                         orchestrator_env={"WORKER_TOKEN": "another-worker-token-0123456789"})
    job_id = submit(orch.url, PAYLOAD)
    final = poll(orch.url, job_id, timeout=30)[-1]
    assert (final["state"], final["error"]) == ("failed", "the worker refused the job (HTTP 401)")
    [failed] = [x for x in orch.lines_when(lambda ls: any(x["message"] == "job failed" for x in ls), "job failed")
                if x["message"] == "job failed"]
    assert failed["error"]["message"] == (f"worker at {worker.url} answered HTTP 401: the Authorization header "
                                          "does not hold the bearer token this route needs")
    assert [x for x in worker.lines() if x["message"] == "job started"] == []


def test_the_worker_refuses_to_start_on_a_public_host_without_a_token(services):
    """Exit 2 before it binds anything; the one ERROR line names WORKER_TOKEN."""
    worker = services("worker.py", {"HOST": "0.0.0.0"}, wait=False)
    assert worker.wait(timeout=30) == 2
    assert [(x["level"], x["message"], x["reason"]) for x in worker.lines()] == [(
        "ERROR", "invalid configuration",
        "WORKER_TOKEN is required when HOST is not a loopback address (HOST=0.0.0.0): "
        "set it to the token the orchestrator sends")]


def test_with_api_token_the_public_api_needs_it_and_health_stays_open(stack):
    _, orch = stack(worker_env={"WORK_MS": "200"}, orchestrator_env={"API_TOKEN": API_TOKEN})
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}

    refused = request(orch.url, "POST", "/generate-scene", PAYLOAD)
    assert (refused.status, refused.headers["www-authenticate"], refused.json) == (401, "Bearer", MISSING)
    wrong = request(orch.url, "POST", "/generate-scene", PAYLOAD, {"Authorization": "Bearer wrong-token-0123456789"})
    assert (wrong.status, wrong.headers["www-authenticate"]) == (401, 'Bearer error="invalid_token"')

    job_id = submit(orch.url, PAYLOAD, bearer)
    assert request(orch.url, "GET", f"/status/{job_id}").status == 401
    assert poll(orch.url, job_id, headers=bearer)[-1]["state"] == "done"
    assert request(orch.url, "GET", "/healthz").json == {"ok": True}

    lines = orch.lines()
    assert [x["status"] for x in lines if x["message"] == "request" and x["path"] == "/generate-scene"] == [
        401, 401, 202]
    assert API_TOKEN not in orch.raw_output()
