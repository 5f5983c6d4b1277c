"""Process start to first healthy ``/healthz``: the time from just before the process is
spawned (on the servers' CPU) to the first 200 from ``GET /healthz``, polled every
millisecond from the load generator's CPU; the median, min and max of ``runs`` starts.

Both services, in both store modes: the orchestrator in memory mode and in DynamoDB mode
(where it imports boto3 and checks the table on a moto server before it serves), and the
worker, which has no store (so one row).

Why not hyperfine: it times commands that exit, and a server does not; a wrapper that
starts the server, waits for it and stops it would add its own interpreter start (tens of
ms) to every sample of a figure whose target is 150 ms.
"""

from __future__ import annotations

import pathlib
import statistics
from collections.abc import Callable
from typing import Any

import motoserver
from procs import Pinning, Process


def time_starts(script: str, env: dict[str, str], runs: int, log_dir: pathlib.Path, pin: Pinning) -> dict[str, Any]:
    """Start ``script`` ``runs`` times; milliseconds to healthy."""
    samples = []
    for _ in range(runs):
        with Process.script(pathlib.Path(script).stem, script, log_dir, pin, env) as process:
            samples.append(process.wait_healthy(interval=0.001) * 1000)
    return {"runs": runs, "median_ms": round(statistics.median(samples), 1), "min_ms": round(min(samples), 1),
            "max_ms": round(max(samples), 1)}


def run(runs: int, moto_endpoint: str | None, log_dir: pathlib.Path, pin: Pinning,
        say: Callable[[str], None]) -> dict[str, Any]:
    rows: dict[str, Any] = {
        "orchestrator/memory": time_starts("orchestrator.py", {}, runs, log_dir, pin),
        "orchestrator/dynamodb": (time_starts("orchestrator.py", motoserver.dynamodb_env(moto_endpoint), runs,
                                              log_dir, pin)
                                  if moto_endpoint else {"skipped": motoserver.missing() or "no moto server"}),
        "worker": time_starts("worker.py", {}, runs, log_dir, pin),
    }
    say(f"startup: {runs} starts per row")
    return {"method": "spawn to first 200 from /healthz, polled every 1 ms", **rows}
