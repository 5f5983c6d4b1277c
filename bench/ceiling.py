"""The ceiling for this stack: a bare stdlib ``ThreadingHTTPServer`` doing the least the
orchestrator's two hot routes must do, and nothing else (no access log, no strict head
parser, no request ids, no limits).

- ``GET /status/<id>``: look the job up in a dict and answer it as JSON, with the fields of
  the orchestrator's status (``PUBLIC_FIELDS``).
- ``POST /generate-scene``: read ``Content-Length`` bytes, parse the JSON, store a new job in
  the dict under a lock, answer 202 ``{"jobId", "statusUrl"}`` with ``Location``.
- ``GET /healthz``: ``{"ok":true}``.

It answers as the orchestrator does on the wire: HTTP/1.1 keep-alive, ``TCP_NODELAY``, the
same listen backlog (1024), and each response in one write.

Run: ``PORT=8090 python bench/ceiling.py``.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STATUS_RE = re.compile(r"^/status/([^/]+)$")


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job(job_id: str, job_input: dict[str, Any]) -> dict[str, Any]:
    """A queued job with the orchestrator's public status fields."""
    stamp = now_iso()
    return {"jobId": job_id, "state": "queued", "progress": 0.0, "result": None, "error": None,
            "createdAt": stamp, "updatedAt": stamp, "input": job_input, "attempts": 0}


class CeilingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # as the orchestrator's: 256 connections arrive at once

    def __init__(self, address: tuple[str, int]):
        self.jobs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        super().__init__(address, CeilingHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A load generator resets its connections when it stops: not an error here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class CeilingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CeilingServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.send_json(200, {"ok": True})
            return
        found = STATUS_RE.match(self.path)
        job = self.server.jobs.get(found.group(1)) if found else None
        if job is None:
            self.send_json(404, {"error": {"code": "not_found", "message": f"no such job or path: {self.path}"}})
        else:
            self.send_json(200, job)

    def do_POST(self) -> None:
        if self.path != "/generate-scene":
            self.send_json(404, {"error": {"code": "not_found", "message": f"no such path: {self.path}"}})
            return
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            job_input = json.loads(raw)
        except ValueError:
            self.send_json(400, {"error": {"code": "invalid_json", "message": "body is not valid JSON"}})
            return
        job_id = str(uuid.uuid4())
        with self.server.lock:
            self.server.jobs[job_id] = new_job(job_id, job_input)
        status_url = f"/status/{job_id}"
        self.send_json(202, {"jobId": job_id, "statusUrl": status_url}, f"Location: {status_url}\r\n")

    def send_json(self, status: int, obj: Any, extra_headers: str = "") -> None:
        """Head and body in one write (split writes meet delayed ACKs on keep-alive)."""
        body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        head = (f"HTTP/1.1 {status} {self.responses[status][0]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{extra_headers}\r\n")
        self.wfile.write(head.encode("latin-1") + body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the ceiling pays for nothing the routes do not need."""


def main() -> int:
    server = CeilingServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8090"))))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
