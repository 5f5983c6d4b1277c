"""Runs the Ghost Engine kernel benchmark and writes its results (README "Benchmark").

    python bench/run.py [--quick] [--out bench/results/NAME.json] [--client auto|wrk|python]

Sections (``--sections``, all by default):

- ``http``: ``GET /status/<id>`` and ``POST /generate-scene`` on the orchestrator, a bare
  stdlib ceiling and uvicorn + FastAPI (``httpbench``), with wrk or the built-in client;
- ``jobs``: per-job overhead, job throughput and RSS with 10,000 retained jobs (``jobs``);
- ``dynamodb``: DynamoDB requests per job against a moto server (``dynamocost``);
- ``startup``: process start to first healthy ``/healthz`` (``startup``).

With ``taskset`` and two CPUs, the servers run on one CPU and the load generator, and this
harness's own work (submitting jobs, polling, the DynamoDB counting proxy), on the other.
Prints a table, writes the JSON document (default ``bench/results/<UTC time>.json``, an
ignored directory) and, when matplotlib is importable, a PNG chart beside it. Exit codes: 0
done, 1 a measurement failed, 2 bad usage.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import dynamocost
import fastapi_peer
import httpbench
import jobs
import loadgen
import motoserver
import plan as planning
import report
import startup
import wrkload
from procs import Pinning

NOT_SELECTED = {"skipped": "not in --sections"}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(load: loadgen.LoadGen) -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version(), "load_generator": load.description,
                             "wrk": wrkload.version(load.wrk) if load.wrk else None}
    found.update({name: _version(name) for name in ("boto3", "moto", "matplotlib")})
    found.update(fastapi_peer.versions())
    return found


def machine(pin: Pinning) -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "pinning": pin.describe(),
            "server_cpu": pin.server_cpu, "client_cpu": pin.client_cpu,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def notes(plan: planning.Plan, load: loadgen.LoadGen, pin: Pinning) -> list[str]:
    found = []
    if plan.quick:
        found.append("Note: --quick is a smoke check of the harness; its figures are not measurements.")
    if load.kind == "python":
        found.append("Note: the built-in Python client measured; it may be slower than the fastest servers here "
                     "(install wrk for the real figures).")
    if pin.server_cpu is None:
        found.append(f"Note: not pinned ({pin.describe()}); expect 0.6-1.4x noise between identical servers.")
    return found


def measure(plan: planning.Plan, load: loadgen.LoadGen, pin: Pinning, log_dir: Path) -> dict[str, Any]:
    """Every selected section, as the document's ``http``, ``jobs``, ``memory``, ``dynamodb``, ``startup``."""
    sizes, sections = plan.sizes, plan.sections
    doc: dict[str, Any] = {"http": NOT_SELECTED, "jobs": NOT_SELECTED, "memory": NOT_SELECTED,
                           "dynamodb": NOT_SELECTED, "startup": NOT_SELECTED}
    if "http" in sections:
        matrix = httpbench.MatrixPlan(sizes.rounds, sizes.duration, sizes.warmup, sizes.connections)
        doc["http"] = httpbench.run(matrix, load, log_dir, pin, say)
    if "jobs" in sections:
        doc["jobs"], doc["memory"] = jobs.run(sizes.jobs, sizes.sequential_jobs, log_dir, pin, say)
    if {"dynamodb", "startup"} & set(sections):
        with contextlib.ExitStack() as stack:
            reason = motoserver.missing()
            endpoint = stack.enter_context(motoserver.running(log_dir, pin)) if reason is None else None
            if "dynamodb" in sections:
                doc["dynamodb"] = (dynamocost.run(endpoint, sizes.dynamodb_jobs, log_dir, pin, say)
                                   if endpoint else {"skipped": reason})
            if "startup" in sections:
                doc["startup"] = startup.run(sizes.startup_runs, endpoint, log_dir, pin, say)
    return doc


def main(argv: list[str] | None = None) -> int:
    plan = planning.from_args(argv)
    pin = Pinning.detect(plan.pin_enabled)
    try:
        load = loadgen.choose(plan.client, pin)
    except ValueError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2
    if pin.client_cpu is not None:
        os.sched_setaffinity(0, {pin.client_cpu})  # the harness's own work stays off the servers' CPU
    started = datetime.datetime.now(datetime.UTC)
    doc: dict[str, Any] = {
        "benchmark": "ghost-engine-kernel", "format": 1, "started_at": started.isoformat(timespec="seconds"),
        "quick": plan.quick, "sections": list(plan.sections), "machine": machine(pin), "versions": versions(load)}
    try:
        with tempfile.TemporaryDirectory(prefix="ghost-bench-") as tmp:
            doc.update(measure(plan, load, pin, Path(tmp)))
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"run.py: measurement failed: {exc}", file=sys.stderr)
        return 1
    finished = datetime.datetime.now(datetime.UTC)
    doc.update(finished_at=finished.isoformat(timespec="seconds"),
               wall_s=round((finished - started).total_seconds(), 1), notes=notes(plan, load, pin))
    report.write_json(doc, plan.out)
    chart = plan.out.with_suffix(".png")
    charted = report.write_chart(doc, chart)
    print(report.text(doc))
    print(f"Wrote {plan.out}" + (f" and {chart}" if charted else " (no chart: matplotlib not importable)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
