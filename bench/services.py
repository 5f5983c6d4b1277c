"""The kernel's two services as the benchmark runs them: a real ``worker.py`` and a real
``orchestrator.py`` wired to it, each a process on the servers' CPU."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from procs import Pinning, Process


@contextmanager
def stack(log_dir: pathlib.Path, pin: Pinning, worker_env: Mapping[str, str],
          orchestrator_env: Mapping[str, str]) -> Iterator[tuple[Process, Process]]:
    """A healthy worker and an orchestrator using it; both stopped on exit."""
    with Process.script("worker", "worker.py", log_dir, pin, worker_env) as worker:
        worker.wait_healthy()
        env = {"WORKER_URL": worker.url, "SHUTDOWN_GRACE_SECONDS": "0.5", **orchestrator_env}
        with Process.script("orchestrator", "orchestrator.py", log_dir, pin, env) as orchestrator:
            orchestrator.wait_healthy()
            yield worker, orchestrator
