"""The wrk load generator (Debian package ``wrk``), when installed: one wrk thread, N
keep-alive connections, closed loop, with ``wrk_report.lua`` setting the method and body and
printing the counts and percentiles as one JSON line.

wrk's counts map onto the harness's result object as: ``socket_errors`` = connect + read +
write errors + timeouts; ``non_2xx`` = wrk's status errors, which are answers with a
status of 400 or more (no server here answers 1xx or 3xx).
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import shutil
import subprocess
from typing import Any

LUA = pathlib.Path(__file__).resolve().parent / "wrk_report.lua"
TIMEOUT_SECONDS = 10
MARKER = "BENCH_RESULT "


def find() -> str | None:
    return shutil.which("wrk")


def version(wrk: str) -> str:
    """wrk's version line, e.g. ``wrk debian/4.1.0-3+b2 [epoll]``."""
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    first = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "wrk"
    return re.sub(r"\s+Copyright.*", "", first).strip()


def command(wrk: str, url: str, connections: int, duration: float) -> list[str]:
    """wrk's argv; it takes whole seconds, so ``duration`` is rounded up (at least 1)."""
    seconds = max(1, math.ceil(duration))
    return [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={TIMEOUT_SECONDS}s",
            "-s", str(LUA), url]


def environment(method: str, body: bytes | None) -> dict[str, str]:
    return {"BENCH_METHOD": method, "BENCH_BODY": body.decode("utf-8") if body else ""}


def parse(stdout: str) -> dict[str, Any]:
    """The harness's result object from wrk's output (ValueError if the line is missing)."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            raw = json.loads(line[len(MARKER):])
            break
    else:
        raise ValueError(f"no {MARKER.strip()} line in wrk's output: {stdout[-500:]!r}")
    seconds = raw["duration_us"] / 1e6
    answered = raw["requests"] > 0
    return {
        "requests": raw["requests"],
        "duration_s": round(seconds, 3),
        "rps": round(raw["requests"] / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(raw["p50_us"] / 1000, 3) if answered else None,
        "p99_ms": round(raw["p99_us"] / 1000, 3) if answered else None,
        "socket_errors": raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        "non_2xx": raw["status"],
    }
