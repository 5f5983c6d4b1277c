"""DynamoDB requests per job: a real orchestrator (DynamoDB mode, its defaults) and a real
worker (``WORK_MS`` 2000, its default) run a few jobs at once against a moto server, with
``awsproxy.CountingProxy`` between the orchestrator and moto counting every request by
operation and job.

Counting starts once the orchestrator is healthy (its start-up table check is not a job's).
The harness reads each job's status every 250 ms until it ends; those reads are the
``GetItem`` calls, reported per status poll rather than per job, since clients poll at
their own pace. Requests about no one job (the reaper's ``Query``, every 5 s per
orchestrator) are reported as such.
"""

from __future__ import annotations

import collections
import pathlib
import statistics
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import api
import motoserver
import services
from awsproxy import CountingProxy
from procs import Pinning

WORK_MS = 2000
POLL_SECONDS = 0.25
TERMINAL = ("done", "failed")


def _spread(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _poll_until_ended(client: api.Api, job_ids: list[str], timeout: float = 60) -> tuple[dict[str, str], int]:
    """Every job's final state, and how many status reads it took."""
    states: dict[str, str] = {}
    polls, deadline = 0, time.monotonic() + timeout
    while len(states) < len(job_ids) and time.monotonic() < deadline:
        for job_id in [j for j in job_ids if j not in states]:
            polls += 1
            state = client.status(job_id)["state"]
            if state in TERMINAL:
                states[job_id] = state
        time.sleep(POLL_SECONDS)
    return states, polls


def summarize(counts: collections.Counter[tuple[str | None, str]], job_ids: list[str], polls: int) -> dict[str, Any]:
    """Per-job write counts, reads per status poll, and the requests about no job."""
    per_job = {j: collections.Counter({op: n for (job, op), n in counts.items() if job == j}) for j in job_ids}
    reads = sum(c["GetItem"] for c in per_job.values())
    return {
        "per_job": {
            "PutItem": _spread([c["PutItem"] for c in per_job.values()]),
            "UpdateItem": _spread([c["UpdateItem"] for c in per_job.values()]),
            "writes": _spread([c["PutItem"] + c["UpdateItem"] for c in per_job.values()]),
        },
        "status_polls": polls,
        "get_item_per_status_poll": round(reads / polls, 3) if polls else None,
        "not_per_job": dict(sorted(collections.Counter({op: n for (job, op), n in counts.items()
                                                        if job not in per_job}).items())),
    }


def run(moto_endpoint: str, job_count: int, log_dir: pathlib.Path, pin: Pinning,
        say: Callable[[str], None]) -> dict[str, Any]:
    proxy = CountingProxy(urllib.parse.urlsplit(moto_endpoint).port or 80)
    threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        env = motoserver.dynamodb_env(proxy.endpoint)
        with services.stack(log_dir, pin, {"WORK_MS": str(WORK_MS)}, env) as (_worker, orchestrator):
            proxy.take()
            client = api.Api(orchestrator.port)
            started = time.monotonic()
            job_ids = [client.create_job() for _ in range(job_count)]
            states, polls = _poll_until_ended(client, job_ids)
            window = time.monotonic() - started
            client.close()
            counts = proxy.take()
    finally:
        proxy.shutdown()
        proxy.server_close()
    say(f"dynamodb: {job_count} jobs of {WORK_MS} ms counted")
    return {"work_ms": WORK_MS, "progress_write_interval_ms": 1000, "jobs": job_count,
            "states": dict(collections.Counter(states.values())), "window_s": round(window, 2),
            **summarize(counts, job_ids, polls)}
