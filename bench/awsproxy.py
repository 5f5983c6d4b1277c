"""Counts the DynamoDB requests a service sends: a proxy between it and the moto server
that forwards every request unchanged and counts it by operation (the ``X-Amz-Target``
header, e.g. ``DynamoDB_20120810.UpdateItem`` -> ``UpdateItem``) and by job (the ``jobId``
in the request's ``Key`` or ``Item``; requests about no one job, such as the reaper's
``Query``, count under ``None``).

Counting on the wire rather than in the service's process means the service under test
runs unchanged, and retries botocore makes are counted too.
"""

from __future__ import annotations

import collections
import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def job_of(body: bytes) -> str | None:
    """The job a DynamoDB request is about, or None."""
    try:
        request = json.loads(body)
        return str((request.get("Key") or request.get("Item"))["jobId"]["S"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class CountingProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.counts: collections.Counter[tuple[str | None, str]] = collections.Counter()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def note(self, job_id: str | None, operation: str) -> None:
        with self.lock:
            self.counts[(job_id, operation)] += 1

    def take(self) -> collections.Counter[tuple[str | None, str]]:
        """The counts so far, and start again from zero."""
        with self.lock:
            counts, self.counts = self.counts, collections.Counter()
        return counts


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CountingProxy

    def setup(self) -> None:
        super().setup()
        self.upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=30)

    def finish(self) -> None:
        super().finish()
        self.upstream.close()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        operation = (self.headers.get("X-Amz-Target") or "unknown").rsplit(".", 1)[-1]
        self.server.note(job_of(body), operation)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        self.upstream.request("POST", self.path, body, headers)
        answer = self.upstream.getresponse()
        self._relay(answer.status, answer.getheaders(), answer.read())

    def _relay(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() not in HOP_BY_HOP]
        lines.append(f"Content-Length: {len(body)}")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the counts are the output."""
