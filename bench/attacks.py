#!/usr/bin/env python3
"""Resource attacks on a running orchestrator, measured: how many connections stay open, the
server's memory (RSS) and threads, and how a legitimate client fares meanwhile.

Usage: python bench/attacks.py [--source DIR] [--slowloris N] [--trickle-seconds S]
                               [--big-headers N] [--json FILE]

Two attacks, each on a fresh orchestrator (memory mode) started from ``--source`` (a
checkout of this repository; default: this one), so a before/after comparison is two runs:

- slowloris: N connections each send a request line, then one header byte a second, for
  ``--trickle-seconds``; a per-read idle timeout resets on every byte, a head deadline does not.
- big headers: N connections each send 99 header lines of 65,000 bytes and never end the
  head; a parser that keeps what it reads holds ~6 MB per connection.

Every half second the script samples the server's VmRSS and thread count from /proc, counts
the attack connections still open, and times one ``GET /healthz`` on a new connection
(the legitimate client). Prints one JSON document (and writes it to ``--json``).
Linux only (/proc). Exit status: 0 measured, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER_VALUE = b"v" * 65_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Orchestrator:
    """An orchestrator process from ``source`` on a free port, its stdout discarded."""

    def __init__(self, source: pathlib.Path):
        self.port = free_port()
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "WORKER_URL": "http://127.0.0.1:9",
               "LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen([sys.executable, "orchestrator.py"], cwd=source, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if probe(self.port) is not None:
                return
            time.sleep(0.05)
        raise SystemExit("attacks.py: the orchestrator did not start")

    def sample(self) -> tuple[int, int]:
        """(VmRSS in KiB, threads) of the server process."""
        fields = dict(line.split(":", 1) for line in pathlib.Path(f"/proc/{self.proc.pid}/status")
                      .read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["Threads"])

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def probe(port: int) -> float | None:
    """Seconds a GET /healthz on a new connection took, or None if it failed within 5 s."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            resp.read()
    except OSError:
        return None
    return time.monotonic() - started


class Watch:
    """Samples RSS, threads, open attack connections and a probe every half second."""

    def __init__(self, server: Orchestrator, open_count: Any):
        self.server, self.open_count = server, open_count
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def tick(self) -> None:
        rss, threads = self.server.sample()
        latency = probe(self.server.port)
        self.samples.append({"t": round(time.monotonic() - self.started, 1), "rssMiB": round(rss / 1024, 1),
                             "threads": threads, "open": self.open_count(),
                             "probeMs": None if latency is None else round(latency * 1000, 1)})

    def summary(self, baseline_rss_kib: int) -> dict[str, Any]:
        probes = [s["probeMs"] for s in self.samples if s["probeMs"] is not None]
        return {
            "rssBeforeMiB": round(baseline_rss_kib / 1024, 1),
            "rssPeakMiB": max(s["rssMiB"] for s in self.samples),
            "rssEndMiB": self.samples[-1]["rssMiB"],
            "threadsPeak": max(s["threads"] for s in self.samples),
            "probesOk": len(probes), "probesFailed": len(self.samples) - len(probes),
            "probeP50Ms": round(statistics.median(probes), 1) if probes else None,
            "probeMaxMs": max(probes) if probes else None,
            "openAt": {f"{mark}s": next((s["open"] for s in self.samples if s["t"] >= mark), None)
                       for mark in (5, 15, 30, 60, 90)},
        }


def slowloris(source: pathlib.Path, connections: int, seconds: float) -> dict[str, Any]:
    server = Orchestrator(source)
    try:
        baseline = server.sample()[0]
        selector = selectors.DefaultSelector()
        socks: list[socket.socket] = []
        for _ in range(connections):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", server.port))
            socks.append(sock)
        time.sleep(0.5)
        alive: set[socket.socket] = set()
        for sock in socks:
            try:
                sock.send(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
                alive.add(sock)
                selector.register(sock, selectors.EVENT_READ)
            except OSError:
                sock.close()
        watch = Watch(server, lambda: len(alive))
        next_byte = time.monotonic()
        all_closed_at = None
        while time.monotonic() - watch.started < seconds:
            for key, _ in selector.select(timeout=0.1) if alive else ():  # answered (408) or closed
                _drop(selector, alive, key.fileobj)  # type: ignore[arg-type]
            if not alive and all_closed_at is None:
                all_closed_at = round(time.monotonic() - watch.started, 1)
            if not alive:
                time.sleep(0.1)
            if time.monotonic() >= next_byte:
                next_byte += 1.0
                for sock in list(alive):
                    try:
                        sock.send(b"a")
                    except OSError:
                        _drop(selector, alive, sock)
                watch.tick()
        for sock in list(alive):
            _drop(selector, alive, sock)
        return {"attack": "slowloris", "connections": connections, "seconds": seconds,
                "allClosedBy": "the client" if all_closed_at is None else f"the server at {all_closed_at} s",
                **watch.summary(baseline), "samples": watch.samples}
    finally:
        server.stop()


def _drop(selector: selectors.BaseSelector, alive: set[socket.socket], sock: socket.socket) -> None:
    alive.discard(sock)
    try:
        selector.unregister(sock)
    except (KeyError, ValueError):
        pass
    sock.close()


def big_headers(source: pathlib.Path, connections: int, hold_seconds: float = 20) -> dict[str, Any]:
    server = Orchestrator(source)
    open_now = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def attacker() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            with lock:
                open_now[0] += 1
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
                for i in range(99):
                    sock.sendall(b"X-Big-%d: " % i + HEADER_VALUE + b"\r\n")
                stop.wait(hold_seconds + 10)  # never end the head
            except OSError:
                pass  # the server refused the head and closed
            finally:
                with lock:
                    open_now[0] -= 1

    try:
        baseline = server.sample()[0]
        threads = [threading.Thread(target=attacker, daemon=True) for _ in range(connections)]
        for thread in threads:
            thread.start()
        watch = Watch(server, lambda: open_now[0])
        while time.monotonic() - watch.started < hold_seconds:
            watch.tick()
            time.sleep(0.5)
        stop.set()
        return {"attack": "big headers", "connections": connections, "headerBytesPerConnection": 99 * 65_000,
                **watch.summary(baseline), "samples": watch.samples}
    finally:
        server.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=pathlib.Path, default=ROOT, help="checkout to run (default: this one)")
    parser.add_argument("--slowloris", type=int, default=2000, help="slowloris connections (default 2000)")
    parser.add_argument("--trickle-seconds", type=float, default=90, help="slowloris duration (default 90)")
    parser.add_argument("--big-headers", type=int, default=40, help="big-header connections (default 40)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not (args.source / "orchestrator.py").is_file():
        parser.error(f"--source {args.source} holds no orchestrator.py")
    attacks: list[dict[str, Any]] = []
    if args.slowloris:
        attacks.append(slowloris(args.source, args.slowloris, args.trickle_seconds))
    if args.big_headers:
        attacks.append(big_headers(args.source, args.big_headers))
    text = json.dumps({"source": str(args.source.resolve()), "attacks": attacks}, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    summary = [{k: v for k, v in a.items() if k != "samples"} for a in attacks]
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
