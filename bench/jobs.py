"""Jobs end to end, and what they cost in memory: a real orchestrator (memory mode) and a
real worker with ``WORK_MS=0``, so all that is left of a job is the kernel's own work
(create, queue, claim, the streamed ``POST /process``, the scene the worker builds,
finish).

- Per-job overhead: jobs one at a time; for each, ``updatedAt - createdAt`` of the finished
  job (the orchestrator's own clock, millisecond resolution), so neither the client's
  round trips nor its polling interval are counted.
- Throughput: ``jobs`` jobs posted as fast as 8 client threads (on the load generator's
  CPU) can, ``MAX_QUEUED_JOBS`` raised so none is refused; jobs/s is the count over the
  span from the first ``createdAt`` to the last ``updatedAt``.
- Memory: the orchestrator's RSS once those jobs are finished. The store keeps the newest
  ``MEMORY_MAX_JOBS`` (10,000) finished jobs, results included, so with 10,000 jobs or
  more this is the RSS of a full store.
"""

from __future__ import annotations

import datetime
import pathlib
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import api
import services
import stats
from procs import Pinning

SUBMITTERS = 8
MEMORY_MAX_JOBS = 10_000  # the orchestrator's default, restated to say what "retained" means


def _ms(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp).timestamp() * 1000


def overhead(port: int, count: int) -> dict[str, Any]:
    """Jobs one at a time: milliseconds from creation to finish, as the store recorded them."""
    client = api.Api(port)
    spans = []
    for _ in range(count):
        job = client.wait_state(client.create_job(), ("done", "failed"), interval=0.002)
        spans.append(_ms(job["updatedAt"]) - _ms(job["createdAt"]))
    client.close()
    ordered = sorted(spans)
    return {"jobs": count, "p50_ms": stats.percentile(ordered, 50), "p90_ms": stats.percentile(ordered, 90),
            "max_ms": ordered[-1], "mean_ms": round(statistics.fmean(ordered), 2), "resolution_ms": 1}


def _submit(port: int, count: int, ids: list[str], errors: list[BaseException]) -> None:
    client = api.Api(port)
    try:
        for _ in range(count):
            ids.append(client.create_job())
    except (OSError, RuntimeError) as exc:
        errors.append(exc)
    finally:
        client.close()


def throughput(port: int, count: int) -> dict[str, Any]:
    """``count`` jobs posted by parallel clients, waited for, and the rate they ran at."""
    ids: list[str] = []
    errors: list[BaseException] = []
    shares = [count // SUBMITTERS + (i < count % SUBMITTERS) for i in range(SUBMITTERS)]
    threads = [threading.Thread(target=_submit, args=(port, n, ids, errors)) for n in shares]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submit_s = time.monotonic() - started
    if errors:
        raise RuntimeError(f"{len(errors)} submitters failed; first: {errors[0]}")
    client = api.Api(port)
    client.wait_state(ids[-1], ("done", "failed"), timeout=300, interval=0.05)
    jobs = [client.wait_state(j, ("done", "failed"), timeout=60, interval=0.05) for j in ids]
    client.close()
    span_ms = max(_ms(j["updatedAt"]) for j in jobs) - min(_ms(j["createdAt"]) for j in jobs)
    return {"jobs": count, "failed": sum(j["state"] == "failed" for j in jobs), "submitters": SUBMITTERS,
            "submit_per_s": round(count / submit_s, 1), "span_s": round(span_ms / 1000, 3),
            "jobs_per_s": round(count / (span_ms / 1000), 1) if span_ms else None,
            "ms_per_job": round(span_ms / count, 3)}


def run(job_count: int, sequential_count: int, log_dir: pathlib.Path, pin: Pinning,
        say: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(jobs, memory)``: the overhead and throughput figures, and the RSS figures."""
    orchestrator_env = {"MAX_QUEUED_JOBS": str(job_count + 1)}
    with services.stack(log_dir, pin, {"WORK_MS": "0"}, orchestrator_env) as (_worker, orchestrator):
        rss_idle = orchestrator.rss_kib()
        single = overhead(orchestrator.port, sequential_count)
        say(f"jobs: overhead p50 {single['p50_ms']} ms over {sequential_count} jobs")
        bulk = throughput(orchestrator.port, job_count)
        say(f"jobs: {bulk['jobs_per_s']} jobs/s over {job_count} jobs")
        rss_full = orchestrator.rss_kib()
    retained = min(MEMORY_MAX_JOBS, job_count + sequential_count)
    memory = {"retained_jobs": retained, "rss_idle_kib": rss_idle, "rss_kib": rss_full,
              "rss_mib": round(rss_full / 1024, 1) if rss_full else None,
              "kib_per_retained_job": round((rss_full - rss_idle) / retained, 2) if rss_full and rss_idle else None}
    return {"work_ms": 0, "overhead": single, "throughput": bulk}, memory
