"""CloudWatch Embedded Metric Format (EMF), written by hand as JSON lines on stdout.

``build_emf`` is pure: it returns the EMF document for some metric values. ``JobMetrics``
writes one per finished job, ``LoadMetrics`` one per load sample (what ECS auto scaling
tracks, infra/aws/terraform/autoscaling.tf), through the log writer (``log.metric``: whatever
``LOG_LEVEL`` says, since alarms and scaling are built on these lines), so each EMF document is also a normal
log line (timestamp, level, service, message, requestId, jobId) and CloudWatch Logs
extracts the metrics from it. Dimensions are low-cardinality (service, environment);
the job id is a plain property, searchable in Logs Insights, never a dimension.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any

from logjson import log

# Units from the EMF specification's list (CloudWatch StandardUnit).
UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
    "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
    "Count/Second", "None",
})
MAX_METRICS = 100


def build_emf(namespace: str, dimensions: Mapping[str, str], metrics: list[tuple[str, str, float]],
              timestamp_ms: int, properties: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The EMF document: ``_aws`` directives first, then dimension values, metric values
    and properties at the root. ``metrics`` is ``[(name, unit, value), ...]``."""
    if not 0 < len(metrics) <= MAX_METRICS:
        raise ValueError(f"an EMF document carries 1..{MAX_METRICS} metrics, got {len(metrics)}")
    for name, unit, _ in metrics:
        if unit not in UNITS:
            raise ValueError(f"metric {name}: unit {unit!r} is not an EMF unit")
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(timestamp_ms),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [list(dimensions)],
                "Metrics": [{"Name": name, "Unit": unit} for name, unit, _ in metrics],
            }],
        },
    }
    doc.update(dimensions)
    doc.update({name: value for name, _, value in metrics})
    doc.update(properties or {})
    return doc


def _epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class JobMetrics:
    """Emits one EMF line per ended job: JobSucceeded, JobFailed, JobCanceled (Count, 1 or
    0), JobDurationMs (creation to end) and, for a job that ran, JobQueueWaitMs (creation
    to the claim that ran it)."""

    def __init__(self, namespace: str, service: str, environment: str):
        self.namespace = namespace
        self.dimensions = {"Service": service, "Environment": environment}

    def job_finished(self, job: Mapping[str, Any], claimed: Mapping[str, Any] | None) -> None:
        """``job`` as it ended; ``claimed`` as it was when the run that ended it claimed it
        (None for a job canceled by a client, which no run ended)."""
        now = time.time()
        duration_ms = round((_epoch(job["updatedAt"]) - _epoch(job["createdAt"])) * 1000)
        values: list[tuple[str, str, float]] = [
            ("JobSucceeded", "Count", int(job["state"] == "done")),
            ("JobFailed", "Count", int(job["state"] == "failed")),
            ("JobCanceled", "Count", int(job["state"] == "canceled")),
            ("JobDurationMs", "Milliseconds", duration_ms)]
        if claimed is not None:
            values.append(("JobQueueWaitMs", "Milliseconds",
                           round((_epoch(claimed["updatedAt"]) - _epoch(job["createdAt"])) * 1000)))
        doc = build_emf(self.namespace, self.dimensions, values, timestamp_ms=int(now * 1000),
                        properties={"state": job["state"], "attempts": job["attempts"]})
        log.metric("job metrics", **doc)


class LoopMetrics:
    """Emits ``BackgroundLoopErrors`` (Count, 1) each time a background loop's pass fails,
    with the loop's name as a property (not a dimension: alarms watch the service's total)."""

    def __init__(self, namespace: str, service: str, environment: str):
        self.namespace = namespace
        self.dimensions = {"Service": service, "Environment": environment}

    def loop_failed(self, loop: str) -> None:
        doc = build_emf(self.namespace, self.dimensions, [("BackgroundLoopErrors", "Count", 1)],
                        timestamp_ms=int(time.time() * 1000), properties={"loop": loop})
        log.metric("loop metrics", **doc)


class LoadMetrics:
    """Emits the dispatcher's load every few seconds: ``JobsRunning`` (jobs this orchestrator
    runs on workers now, each holding a worker slot), ``JobsWaiting`` (jobs queued here for a
    dispatch thread) and ``DispatchSlotsBusyPercent`` (running / the dispatch threads). The
    worker service scales on ``JobsRunning`` per worker task, the orchestrator on
    ``DispatchSlotsBusyPercent`` as well as on ALB requests per task."""

    def __init__(self, namespace: str, service: str, environment: str):
        self.namespace = namespace
        self.dimensions = {"Service": service, "Environment": environment}

    def sampled(self, running: int, waiting: int, slots: int) -> None:
        doc = build_emf(self.namespace, self.dimensions, [
            ("JobsRunning", "Count", running), ("JobsWaiting", "Count", waiting),
            ("DispatchSlotsBusyPercent", "Percent", round(100 * running / slots, 1))],
            timestamp_ms=int(time.time() * 1000), properties={"dispatchSlots": slots})
        log.metric("load metrics", **doc)
