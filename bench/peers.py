"""The servers the HTTP benchmark compares, started fresh for each round, each on the
servers' CPU with its output in a log file:

- ``orchestrator``: ``orchestrator.py`` in memory mode with its defaults (JSON access log
  included), and a real ``worker.py`` whose ``WORK_MS`` is an hour, so that the job whose
  status is read is ``running``. Two bounds are raised so that the POST benchmark measures
  accepting jobs, not refusing them: ``MAX_QUEUED_JOBS`` and ``MEMORY_MAX_JOBS`` (every job
  posted stays queued behind the hour-long ones).
- ``ceiling``: ``bench/ceiling.py``, a bare stdlib ``ThreadingHTTPServer``.
- ``fastapi``: ``bench/fastapi_peer.py``, uvicorn + FastAPI, when importable.

Each peer gets one job created through its own ``POST /generate-scene``; its
``/status/<id>`` is the path the GET benchmark reads.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import api
import fastapi_peer
import services
from procs import Pinning, Process

NAMES = ("orchestrator", "ceiling", "fastapi")
LONG_WORK_MS = 3_600_000
UNBOUNDED = "100000000"


@dataclass
class Peer:
    """A started server: where it listens, the status path of its job, and what stops it."""

    name: str
    port: int
    status_path: str
    processes: contextlib.ExitStack

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.processes.close()


def start_orchestrator(log_dir: pathlib.Path, pin: Pinning) -> Peer:
    """The orchestrator and its worker, with one job running (it runs for an hour)."""
    with contextlib.ExitStack() as processes:
        _worker, orchestrator = processes.enter_context(services.stack(
            log_dir, pin, {"WORK_MS": str(LONG_WORK_MS)},
            {"MAX_QUEUED_JOBS": UNBOUNDED, "MEMORY_MAX_JOBS": UNBOUNDED}))
        client = api.Api(orchestrator.port)
        job_id = client.create_job()
        client.wait_state(job_id, {"running"})
        client.close()
        return Peer("orchestrator", orchestrator.port, f"/status/{job_id}", processes.pop_all())


def _start_script(name: str, script: str, log_dir: pathlib.Path, pin: Pinning) -> Peer:
    """One of bench/'s servers, with one job created."""
    with contextlib.ExitStack() as processes:
        process = processes.enter_context(Process.script(name, script, log_dir, pin))
        process.wait_healthy()
        client = api.Api(process.port)
        job_id = client.create_job()
        client.close()
        return Peer(name, process.port, f"/status/{job_id}", processes.pop_all())


def start_ceiling(log_dir: pathlib.Path, pin: Pinning) -> Peer:
    return _start_script("ceiling", "bench/ceiling.py", log_dir, pin)


def start_fastapi(log_dir: pathlib.Path, pin: Pinning) -> Peer:
    return _start_script("fastapi", "bench/fastapi_peer.py", log_dir, pin)


STARTERS: dict[str, Callable[[pathlib.Path, Pinning], Peer]] = {
    "orchestrator": start_orchestrator, "ceiling": start_ceiling, "fastapi": start_fastapi}


def describe(names: list[str]) -> dict[str, str]:
    """How each peer runs, for the output (the FastAPI peer's speed depends on its extras)."""
    said = {
        "orchestrator": (f"orchestrator.py, memory mode, its defaults (a JSON access line per request), "
                         f"with worker.py WORK_MS={LONG_WORK_MS}; MAX_QUEUED_JOBS and MEMORY_MAX_JOBS {UNBOUNDED}"),
        "ceiling": "bench/ceiling.py: bare ThreadingHTTPServer, HTTP/1.1 keep-alive, TCP_NODELAY, one write, no log",
    }
    if "fastapi" in names:
        v = fastapi_peer.versions()
        http = f"httptools {v['httptools']}" if v["httptools"] else "h11"
        loop = f"uvloop {v['uvloop']}" if v["uvloop"] else "asyncio"
        said["fastapi"] = (f"bench/fastapi_peer.py: FastAPI {v['fastapi']}, pydantic {v['pydantic']}, uvicorn "
                           f"{v['uvicorn']} defaults (one process, access log on), http: {http}, loop: {loop}")
    return {name: said[name] for name in names}


def available() -> tuple[list[str], dict[str, str]]:
    """The peers that can run here, and why the others cannot."""
    skipped = {}
    reason = fastapi_peer.missing()
    if reason is not None:
        skipped["fastapi"] = reason
    return [n for n in NAMES if n not in skipped], skipped
