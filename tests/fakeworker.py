"""Scripted fake workers for unit tests of the worker client and the dispatcher: an
http.server that answers each ``POST /process`` with the next scripted answer (NDJSON
streams, JSON or text errors, streams that stall at a gate or break mid-chunk)."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAYLOAD = {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}
OUTPUT = {"seed": 123, "scene": {"title": "Fake"}, "digest": "sha256:fake"}

Answer = Callable[[BaseHTTPRequestHandler], None]


def line(obj: dict) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def progress(value: float) -> bytes:
    return line({"event": "progress", "jobId": "j", "step": "s", "progress": value})


RESULT = line({"event": "result", "jobId": "j", "ok": True, "output": OUTPUT, "progressLog": []})


def error_json(status: int, message: str, code: str = "some_code", headers: dict[str, str] | None = None) -> Answer:
    return error_text(status, json.dumps({"error": {"code": code, "message": message}}), "application/json",
                      headers)


def error_text(status: int, text: str, content_type: str = "text/html",
               headers: dict[str, str] | None = None) -> Answer:
    def answer(h: BaseHTTPRequestHandler) -> None:
        body = text.encode()
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)
    return answer


def stream(*lines: bytes, gate: threading.Event | None = None, after_gate: tuple[bytes, ...] = (),
           end: bool = True) -> Answer:
    """A chunked NDJSON answer: ``lines``, then (if ``gate``) wait for it and send
    ``after_gate``; ``end`` sends the last chunk, else the connection just closes."""
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/x-ndjson")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for data in lines:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        if gate is not None:
            gate.wait(30)
            for data in after_gate:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        if end:
            h.wfile.write(b"0\r\n\r\n")
        h.close_connection = True
    return answer


def stream_cut_mid_chunk(*lines: bytes) -> Answer:
    """A chunked answer whose last chunk announces 100 bytes, sends 12 and closes."""
    def answer(h: BaseHTTPRequestHandler) -> None:
        stream(*lines, end=False)(h)
        h.wfile.write(b"64\r\n" + b'{"event":"pr')
    return answer


class _QuietServer(ThreadingHTTPServer):
    """Scripted answers may outlive the client (it stops reading at the result): a broken
    pipe then is expected, not a traceback for the runner's output."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeWorker:
    """An http.server on 127.0.0.1:0 answering each request with the next scripted
    answer (the last one repeats) and recording what it was sent."""

    def __init__(self, *answers: Answer):
        self.answers = list(answers)
        self.requests: list[dict] = []
        self.gates: list[threading.Event] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    answer = fake.answers[min(len(fake.requests), len(fake.answers)) - 1]
                answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def gate(self) -> threading.Event:
        event = threading.Event()
        self.gates.append(event)
        return event

    def close(self) -> None:
        for event in self.gates:
            event.set()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def fake_workers() -> Iterator[Callable[..., FakeWorker]]:
    """Yields a factory of FakeWorkers; closes them all (releasing their gates) on exit."""
    made: list[FakeWorker] = []

    def make(*answers: Answer) -> FakeWorker:
        made.append(FakeWorker(*answers))
        return made[-1]

    try:
        yield make
    finally:
        for fake in made:
            fake.close()
