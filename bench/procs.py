"""Processes the benchmark starts, and the CPU pinning that keeps load and servers apart.

On a 2-core machine a load generator and a server left to the scheduler share both cores,
and two identical servers then measure 0.6-1.4x apart. With ``taskset`` present the
servers run on the first CPU this process may use and the load generator on the second;
without it (or with fewer than two CPUs) nothing is pinned and the output says so.

``Process`` runs one Python program (a script of the repository, or ``-m moto.server``) with
its output in a log file (so the services' JSON lines cost what they cost in production: a
real write per line), and is always stopped, SIGTERM then, after 3 s, SIGKILL.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

import api

ROOT = pathlib.Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Pinning:
    """Which CPU the servers and the load generator run on (None: unpinned)."""

    server_cpu: int | None = None
    client_cpu: int | None = None
    taskset: str | None = None

    @classmethod
    def detect(cls, enabled: bool = True) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        taskset = shutil.which("taskset")
        if not enabled or taskset is None or len(cpus) < 2:
            return cls()
        return cls(cpus[0], cpus[1], taskset)

    def server(self, argv: Sequence[str]) -> list[str]:
        return self._on(self.server_cpu, argv)

    def client(self, argv: Sequence[str]) -> list[str]:
        return self._on(self.client_cpu, argv)

    def _on(self, cpu: int | None, argv: Sequence[str]) -> list[str]:
        if cpu is None or self.taskset is None:
            return list(argv)
        return [self.taskset, "-c", str(cpu), *argv]

    def describe(self) -> str:
        if self.server_cpu is None:
            reason = "disabled" if shutil.which("taskset") else "taskset not found"
            return f"none ({reason}): load generator and servers share the CPUs"
        return f"servers on CPU {self.server_cpu}, load generator on CPU {self.client_cpu} (taskset)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A Python program (a script of this repository, or ``-m module``) serving HTTP on a
    free port, pinned to the servers' CPU unless ``on_client_cpu`` (helpers such as moto,
    which are not what is measured)."""

    def __init__(self, name: str, args: Sequence[str], log_dir: pathlib.Path, pin: Pinning,
                 env: Mapping[str, str] | None = None, port: int | None = None, on_client_cpu: bool = False):
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}-{self.port}.log"
        full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "PYTHONUNBUFFERED": "1",
                    **(env or {})}
        argv = [sys.executable, *args]
        argv = pin.client(argv) if on_client_cpu else pin.server(argv)
        self.started = time.perf_counter()
        with open(self.log_path, "wb") as log:  # the child holds its own descriptor
            self.proc = subprocess.Popen(argv, env=full_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    @classmethod
    def script(cls, name: str, script: str, log_dir: pathlib.Path, pin: Pinning,
               env: Mapping[str, str] | None = None) -> Process:
        """``script`` (a path relative to the repository root) on the servers' CPU."""
        return cls(name, [str(ROOT / script)], log_dir, pin, env)

    def wait_healthy(self, timeout: float = 30.0, interval: float = 0.01, path: str = "/healthz") -> float:
        """Poll ``GET path`` until it answers 200; return seconds since the start."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            if api.healthy(self.port, path):
                return time.perf_counter() - self.started
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not healthy within {timeout:g} s: {self.log_tail()}")
            time.sleep(interval)

    def rss_kib(self) -> int | None:
        """Resident memory (VmRSS) in KiB, or None where /proc is not there."""
        try:
            status = pathlib.Path(f"/proc/{self.proc.pid}/status").read_text(encoding="ascii")
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
