"""The built-in load generator, for machines without wrk: asyncio, one keep-alive
connection per simulated client, closed loop (each connection sends its next request when
the previous answer is in).

For ``duration`` seconds it counts answered requests (``requests``), answers whose status
is not 2xx (``non_2xx``) and socket errors (``socket_errors``: refused or reset
connections, timeouts, answers that are not HTTP/1.1 with a Content-Length); after a
socket error the connection is opened again. Latency is from the first byte written to
the last byte of the answer; p50 and p99 are nearest-rank percentiles. Requests still in
flight at the end are not counted, as wrk does.

One Python process drives at most one core, so on a fast server this client, not the
server, can be the limit: the harness says which client measured.

Run as a program it prints one JSON object:
``python bench/pyload.py URL [--method POST --body JSON] --connections 16 --duration 5``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import stats

REQUEST_TIMEOUT_SECONDS = 10.0


class ProtocolError(Exception):
    """The server's answer is not one this client can frame."""


@dataclass
class Tally:
    requests: int = 0
    non_2xx: int = 0
    socket_errors: int = 0
    latencies: list[float] = field(default_factory=list)


def build_request(url: str, method: str = "GET", body: bytes | None = None) -> tuple[str, int, bytes]:
    """``(host, port, request bytes)`` for one keep-alive request to ``url``."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one answer; return its status and whether the server will close."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if version != "HTTP/1.1" or not rest[:3].isdigit():
        raise ProtocolError(f"not an HTTP/1.1 status line: {lines[0]!r}")
    length, close = None, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = value.strip().lower() == "close"
    if length is None:
        raise ProtocolError("answer without Content-Length")
    await reader.readexactly(length)
    return int(rest[:3]), close


async def _connection(host: str, port: int, request: bytes, tally: Tally, deadline: float,
                      limit: int | None) -> None:
    """One client: requests back to back until the deadline (or ``limit`` requests sent),
    opening the connection again after a socket error or a ``Connection: close``."""
    sent = 0
    while time.perf_counter() < deadline and (limit is None or sent < limit):
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            tally.socket_errors += 1
            sent += 1
            await asyncio.sleep(0)
            continue
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while time.perf_counter() < deadline and (limit is None or sent < limit):
                sent += 1
                started = time.perf_counter()
                writer.write(request)
                async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                    status, close = await read_response(reader)
                tally.latencies.append(time.perf_counter() - started)
                tally.requests += 1
                tally.non_2xx += not 200 <= status < 300
                if close:
                    break
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError, ProtocolError, ValueError):
            tally.socket_errors += 1
        finally:
            writer.close()


async def run(url: str, method: str = "GET", body: bytes | None = None, connections: int = 1,
              duration: float = 5.0, requests_per_connection: int | None = None) -> dict[str, Any]:
    """Load ``url`` for ``duration`` seconds (or until every connection has sent
    ``requests_per_connection`` requests); return the result object."""
    host, port, request = build_request(url, method, body)
    tally = Tally()
    started = time.perf_counter()
    # Each client stops sending at the deadline; what is still in flight then is cancelled.
    tasks = [asyncio.create_task(_connection(host, port, request, tally, started + duration,
                                             requests_per_connection)) for _ in range(connections)]
    _done, pending = await asyncio.wait(tasks, timeout=duration)
    elapsed = time.perf_counter() - started
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return result(tally, elapsed)


def result(tally: Tally, elapsed: float) -> dict[str, Any]:
    """The result object both load generators produce (latencies in milliseconds)."""
    ordered = sorted(tally.latencies)
    return {
        "requests": tally.requests,
        "duration_s": round(elapsed, 3),
        "rps": round(tally.requests / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": _ms(stats.percentile(ordered, 50)),
        "p99_ms": _ms(stats.percentile(ordered, 99)),
        "socket_errors": tally.socket_errors,
        "non_2xx": tally.non_2xx,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Closed-loop keep-alive HTTP load; prints one JSON object.")
    parser.add_argument("url")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", help="JSON request body (sent as application/json)")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    body = args.body.encode("utf-8") if args.body is not None else None
    answer = asyncio.run(run(args.url, args.method, body, args.connections, args.duration))
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
