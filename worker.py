"""The worker service: ``POST /process`` does a job's (simulated, deterministic) work.

The request is ``{"jobId": "...", "payload": {"prompt", "seed", "style"}}``. The work
takes ``WORK_MS`` in total, in the phases of ``scene.WORK_PHASES``.

Two answers, chosen by the ``Accept`` header:
- ``application/json`` (default): one JSON object when the work is done,
  ``{"jobId", "ok": true, "output": {...}, "progressLog": [...]}``.
- ``application/x-ndjson``: a chunked stream of JSON lines, ``{"event": "progress", ...}``
  at least every ``PROGRESS_TICK_MS`` while working, then one ``{"event": "result", ...}``
  line carrying the same object as the plain answer. The orchestrator uses this to record
  live progress in the job store, so the worker needs no access to the store.

``/process`` requires ``Authorization: Bearer <WORKER_TOKEN>`` (the orchestrator sends it);
without it the answer is 401 before the body is read or a slot is taken. With no
``WORKER_TOKEN`` the worker runs open, and so only on a loopback ``HOST``: it refuses to
start on any other address. ``/healthz`` is always open.

Run: ``python worker.py`` (configuration from the environment; see README).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cpugate
import httpserver
import logjson
import scene
from config import ConfigError, Env, handle_arguments, service_usage, variables, is_loopback
from httpkit import HTTPError, JsonHandler, Router
from httpserver import Limits
from logjson import log

NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class WorkerConfig:
    host: str = "127.0.0.1"
    port: int = 8081
    work_ms: int = 2000
    progress_tick_ms: int = 1000
    max_concurrent_jobs: int = 16
    shutdown_grace_seconds: float = 25.0
    shutdown_delay_seconds: float = 0.0
    log_level: str = "INFO"
    log_flush_ms: int = 50
    limits: Limits = Limits()
    worker_token: str | None = field(default=None, repr=False)  # a secret: kept out of reprs

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerConfig:
        env = Env(environ)
        host, token = env.text("HOST", cls.host), env.secret("WORKER_TOKEN")
        if token is None and not is_loopback(host):
            raise ConfigError(f"WORKER_TOKEN is required when HOST is not a loopback address (HOST={host}): "
                              "set it to the token the orchestrator sends")
        return cls(
            host=host,
            port=env.port(cls.port),
            work_ms=env.integer("WORK_MS", cls.work_ms),
            progress_tick_ms=env.integer("PROGRESS_TICK_MS", cls.progress_tick_ms, minimum=10),
            max_concurrent_jobs=env.integer("MAX_CONCURRENT_JOBS", cls.max_concurrent_jobs, minimum=1),
            shutdown_grace_seconds=env.number("SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds),
            shutdown_delay_seconds=env.number("SHUTDOWN_DELAY_SECONDS", cls.shutdown_delay_seconds),
            log_level=env.level(),
            log_flush_ms=env.integer("LOG_FLUSH_MS", cls.log_flush_ms, maximum=10_000),
            limits=Limits.from_env(env),
            worker_token=token,
        )


class Worker:
    """The worker's application state: its configuration and a concurrency limit."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.slots = threading.BoundedSemaphore(config.max_concurrent_jobs)

    def run(self, job_id: str, payload: dict[str, Any],
            pause: Callable[[float], None] | None = None) -> Iterator[dict[str, Any]]:
        """Do the work, yielding progress events and finally the result event. ``pause``
        spends the simulated work's time (``time.sleep`` unless given; the handler's raises
        when the client has gone)."""
        pause = pause or time.sleep
        started = time.monotonic()
        output = scene.build_scene(payload["prompt"], payload["seed"], payload["style"])
        phase_s = self.config.work_ms / 1000 / len(scene.WORK_PHASES)
        tick_s = self.config.progress_tick_ms / 1000
        progress_log = []
        for index, step in enumerate(scene.WORK_PHASES):
            phase_end = time.monotonic() + phase_s
            last = index / len(scene.WORK_PHASES)
            while (left := phase_end - time.monotonic()) > 0:
                pause(min(tick_s, left))
                left = phase_end - time.monotonic()  # one reading per tick: done < 1 below
                tick = round((index + 1 - left / phase_s) / len(scene.WORK_PHASES), 4)
                if left > 0 and last < tick < (index + 1) / len(scene.WORK_PHASES):
                    last = tick
                    yield {"event": "progress", "jobId": job_id, "step": step, "progress": tick}
            progress = round((index + 1) / len(scene.WORK_PHASES), 4)
            elapsed_ms = round((time.monotonic() - started) * 1000)
            progress_log.append({"step": step, "progress": progress, "elapsedMs": elapsed_ms})
            yield {"event": "progress", "jobId": job_id, "step": step, "progress": progress}
        yield {"event": "result", "jobId": job_id, "ok": True, "output": output, "progressLog": progress_log}


def parse_process_request(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(jobId, payload)`` from a /process body, or HTTPError 400 naming the problem."""
    unknown = sorted(set(body) - {"jobId", "payload"})
    if unknown:
        raise HTTPError(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}; accepted: jobId, payload")
    job_id = body.get("jobId")
    if not isinstance(job_id, str) or not 0 < len(job_id) <= 100:
        raise HTTPError(400, "invalid_request", "jobId is required and must be a string of 1-100 characters")
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise HTTPError(400, "invalid_request", "payload is required and must be an object with prompt, seed, style")
    try:
        return job_id, scene.parse_input(payload, require_seed=True)
    except ValueError as exc:
        raise HTTPError(400, "invalid_request", f"payload: {exc}") from None


def process(h: WorkerHandler) -> tuple[int, dict[str, Any]] | None:
    job_id, payload = parse_process_request(h.read_json())
    logjson.job_id.set(job_id)
    worker: Worker = h.app
    if not worker.slots.acquire(blocking=False):
        limit = worker.config.max_concurrent_jobs
        raise HTTPError(503, "busy", f"the worker is running its limit of {limit} jobs; retry later",
                        {"Retry-After": "1"})
    try:
        log.info("job started", seed=payload["seed"], style=payload["style"])
        cpugate.leave_if_held()  # the work takes seconds: it must not hold a slot of the CPU gate
        started = time.monotonic()
        events = worker.run(job_id, payload, h.pause)
        if NDJSON in (h.headers.get("Accept") or ""):
            _stream(h, events)
            answer = None
        else:
            result = [e for e in events if e["event"] == "result"][0]
            answer = 200, {k: v for k, v in result.items() if k != "event"}
        log.info("job finished", durationMs=round((time.monotonic() - started) * 1000))
        return answer
    finally:
        worker.slots.release()


def _stream(h: WorkerHandler, events: Iterator[dict[str, Any]]) -> None:
    h.start_chunked(200, NDJSON)
    for event in events:
        h.write_chunk(logjson.dumps(event).encode("utf-8") + b"\n")
    h.end_chunked()


def healthz(h: JsonHandler) -> tuple[int, dict[str, Any]]:
    """200, or 503 while the worker is draining: signalled to stop but still accepting work for
    SHUTDOWN_DELAY_SECONDS, for orchestrators that still have its address from DNS."""
    if h.server.draining.is_set():
        raise HTTPError(503, "draining", "this worker is shutting down: it still accepts work for a "
                        "few seconds, but should be given none")
    return 200, {"ok": True}


ROUTES: dict[tuple[str, str], Callable[..., Any]] = {
    ("POST", "/process"): process,
    ("GET", "/healthz"): healthz,
}


class WorkerHandler(JsonHandler):
    router = Router(ROUTES)
    public_paths = frozenset({"/healthz"})

    def bearer_token(self) -> str | None:
        return self.app.config.worker_token


def usage() -> str:
    """``python worker.py --help``: every variable ``from_env`` reads, with its default."""
    return service_usage("worker.py", "The Ghost Engine worker: POST /process runs a job's work.\nConfigured by "
                        "environment variables only (README \"Configuration\").",
                        [("Environment (default):", variables(WorkerConfig.from_env))])


def main(environ: Mapping[str, str] = os.environ, argv: Sequence[str] = ()) -> int:
    answered = handle_arguments(argv, "worker.py", usage)
    if answered is not None:
        return answered
    logjson.configure("worker")
    try:
        config = WorkerConfig.from_env(environ)
    except ConfigError as exc:
        log.error("invalid configuration", reason=str(exc))
        return 2
    logjson.configure("worker", config.log_level, flush_ms=config.log_flush_ms)
    try:
        server = httpserver.Server((config.host, config.port), WorkerHandler, Worker(config), config.limits)
    except httpserver.ListenError as exc:
        log.error("cannot listen", reason=str(exc))
        return 2

    def drain() -> None:
        if not server.active.wait_idle(config.shutdown_grace_seconds):
            log.warning("shutdown grace period ended with requests still running")

    return httpserver.serve(server, drain, config.shutdown_delay_seconds)


if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
