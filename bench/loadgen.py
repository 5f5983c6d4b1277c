"""One interface over the two load generators: wrk where installed, else the built-in
asyncio client (``pyload.py``). Either runs as its own process pinned to the load
generator's CPU, and answers with the same result object (``LoadResult``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pyload
import wrkload
from procs import Pinning

CLIENTS = ("auto", "wrk", "python")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    socket_errors: int
    non_2xx: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadResult:
        return cls(d["requests"], d["duration_s"], d["rps"], d["p50_ms"], d["p99_ms"], d["socket_errors"],
                   d["non_2xx"])


@dataclass(frozen=True)
class LoadGen:
    """A load generator: ``kind`` is ``wrk`` or ``python``; ``description`` names it for the output."""

    kind: str
    description: str
    pin: Pinning
    wrk: str | None = None

    def run(self, url: str, method: str, body: bytes | None, connections: int, duration: float) -> LoadResult:
        if self.kind == "wrk" and self.wrk is not None:
            argv = wrkload.command(self.wrk, url, connections, duration)
            env = {**os.environ, **wrkload.environment(method, body)}
            out = self._call(argv, env, duration)
            return LoadResult.from_dict(wrkload.parse(out))
        argv = [sys.executable, pyload.__file__, url, "--method", method, "--connections", str(connections),
                "--duration", str(duration)]
        if body is not None:
            argv += ["--body", body.decode("utf-8")]
        return LoadResult.from_dict(json.loads(self._call(argv, dict(os.environ), duration)))

    def _call(self, argv: list[str], env: dict[str, str], duration: float) -> str:
        done = subprocess.run(self.pin.client(argv), env=env, capture_output=True, text=True,
                              timeout=duration + wrkload.TIMEOUT_SECONDS + 30)
        if done.returncode != 0:
            raise RuntimeError(f"{self.kind} load generator exited {done.returncode}: {done.stderr[-500:]}")
        return done.stdout


def choose(client: str, pin: Pinning) -> LoadGen:
    """``auto``: wrk when on PATH, else the built-in client. ``wrk`` without wrk: ValueError."""
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {', '.join(CLIENTS)}, got {client!r}")
    wrk = wrkload.find() if client in ("auto", "wrk") else None
    if client == "wrk" and wrk is None:
        raise ValueError("--client wrk: wrk is not on PATH (Debian/Ubuntu: apt-get install -y wrk)")
    if wrk is not None:
        return LoadGen("wrk", f"{wrkload.version(wrk)}, 1 thread, Lua: bench/wrk_report.lua", pin, wrk)
    return LoadGen("python", "built-in asyncio client (bench/pyload.py), keep-alive, one process", pin)
