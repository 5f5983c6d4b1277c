"""Load in DynamoDB mode: 1,000 jobs from 100 client threads against two orchestrator
replicas sharing one table on a moto server, and one worker. Nothing is lost (every
accepted job ends done), nothing is duplicated (the worker starts each job once, each job
is claimed once), and the only 5xx answers are the documented shedding, each with
Retry-After, which the clients honour.

It prints its figures (the README's "Reliability" section quotes them); it takes about a
minute on two cores, most of it the moto server's time.
"""

from __future__ import annotations

import collections
import http.client
import json
import threading
import time

from conftest import create_table

CLIENTS = 100
JOBS_PER_CLIENT = 10
SHEDDING = {"queue_full", "store_full", "store_unavailable", "too_many_connections"}


class Tally:
    """What every client saw, counted under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: collections.Counter[tuple[str, int, str]] = collections.Counter()
        self.undocumented: list[str] = []
        self.accepted: list[str] = []
        self.finals: dict[str, dict] = {}


def call(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(resp.read())
    finally:
        conn.close()


def shed_or_fail(tally: Tally, method: str, status: int, headers: dict[str, str], body: dict) -> float | None:
    """Count an answer; the seconds to wait before trying again if it is documented shedding."""
    code = (body.get("error") or {}).get("code", "") if isinstance(body, dict) else ""
    with tally.lock:
        tally.statuses[(method, status, code)] += 1
    if status < 500:
        return None
    if status == 503 and code in SHEDDING and headers.get("retry-after", "").isdigit():
        return float(headers["retry-after"])
    with tally.lock:
        tally.undocumented.append(f"{method} {status} {body}")
    return None


def client(url: str, index: int, tally: Tally) -> None:
    """Submit this client's jobs (honouring Retry-After), then poll each until it ends."""
    mine = []
    for n in range(JOBS_PER_CLIENT):
        body = json.dumps({"prompt": f"load {index}-{n}", "seed": index * 1000 + n}).encode()
        while True:
            status, headers, answer = call(url, "POST", "/generate-scene", body)
            wait = shed_or_fail(tally, "POST", status, headers, answer)
            if status == 202:
                mine.append(answer["jobId"])
                break
            if wait is None:
                break
            time.sleep(wait)  # the server asked for this wait: Retry-After
    with tally.lock:
        tally.accepted.extend(mine)
    for job_id in mine:
        while True:
            status, headers, answer = call(url, "GET", f"/status/{job_id}")
            wait = shed_or_fail(tally, "GET", status, headers, answer)
            if status == 200 and answer["state"] in ("done", "failed"):
                with tally.lock:
                    tally.finals[job_id] = answer
                break
            if status != 200 and wait is None:
                break
            time.sleep(wait if wait is not None else 1.0)  # Retry-After, or the poll interval


def test_a_thousand_jobs_from_a_hundred_clients_none_lost_none_duplicated(services, moto_server):
    env = create_table(moto_server, "jobs-load")
    worker = services("worker.py", {"WORK_MS": "10", "PROGRESS_TICK_MS": "10", "MAX_CONCURRENT_JOBS": "16"})
    replicas = [services("orchestrator.py", {**env, "WORKER_URL": worker.url, "MAX_CONCURRENT_JOBS": "8",
                                             "LOG_LEVEL": "INFO"}) for _ in range(2)]
    tally = Tally()
    threads = [threading.Thread(target=client, args=(replicas[i % 2].url, i, tally)) for i in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    elapsed = time.monotonic() - started

    states = collections.Counter(job["state"] for job in tally.finals.values())
    starts = collections.Counter(x["jobId"] for x in worker.lines() if x["message"] == "job started")
    claims = sum((collections.Counter(x["jobId"] for x in r.lines() if x["message"] == "job claimed")
                  for r in replicas), collections.Counter())
    lost = set(tally.accepted) - {job_id for job_id, job in tally.finals.items() if job["state"] == "done"}
    duplicated = {job_id for job_id in tally.accepted if starts[job_id] != 1 or claims[job_id] != 1}
    shed = sum(n for (_, status, _), n in tally.statuses.items() if status == 503)
    print(f"\nload: {len(tally.accepted)} jobs from {CLIENTS} clients in {elapsed:.1f} s; states {dict(states)}; "
          f"lost {len(lost)}; duplicated {len(duplicated)}; shed (503 + Retry-After) {shed}; "
          f"answers {dict(tally.statuses)}")

    assert not any(thread.is_alive() for thread in threads)
    assert tally.undocumented == []
    assert len(tally.accepted) == CLIENTS * JOBS_PER_CLIENT
    assert (lost, duplicated, states) == (set(), set(), {"done": CLIENTS * JOBS_PER_CLIENT})
