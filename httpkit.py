"""HTTP plumbing shared by the orchestrator and the worker.

Both services are ``http.server.ThreadingHTTPServer`` apps with the same needs: a route
table, one JSON error shape for every 4xx/5xx (including the errors the stdlib raises
itself), request ids, JSON access lines, bounded JSON bodies, responses written in a
single ``write``, and a SIGTERM drain.
Keeping that here means the two service modules hold only their own behaviour.
"""

from __future__ import annotations

import http
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import logjson
from logjson import log

JSON_TYPE = "application/json"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:;=/+\-]{1,200}$")
# Codes for the errors the stdlib sends on its own (bad request line, long URI, ...).
_STATUS_CODES = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
    411: "length_required", 413: "payload_too_large", 414: "uri_too_long",
    431: "headers_too_large", 500: "internal_error", 501: "not_implemented",
    503: "service_unavailable", 505: "http_version_not_supported",
}


class HTTPError(Exception):
    """Raised anywhere in a handler; the boundary turns it into the JSON error shape."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


Handler = Callable[..., Any]


class Router:
    """Maps ``(method, "/path/{param}")`` to handlers; unknown path 404, wrong method 405."""

    def __init__(self, table: Mapping[tuple[str, str], Handler]):
        by_pattern: dict[str, dict[str, Handler]] = {}
        for (method, pattern), handler in table.items():
            by_pattern.setdefault(pattern, {})[method] = handler
        self._routes = [(self._compile(p), methods) for p, methods in by_pattern.items()]

    @staticmethod
    def _compile(pattern: str) -> re.Pattern[str]:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        return re.compile(f"^{regex}$")

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        for regex, methods in self._routes:
            found = regex.match(path)
            if found is None:
                continue
            if method not in methods:
                allow = ", ".join(sorted(methods))
                raise HTTPError(405, "method_not_allowed",
                                f"{method} is not allowed on {path}; allowed: {allow}", {"Allow": allow})
            return methods[method], found.groupdict()
        raise HTTPError(404, "not_found", f"no such path: {path}")


class JsonHandler(BaseHTTPRequestHandler):
    """Request handler for JSON services. Subclasses set ``router`` and ``error_map``.

    ``self.server.app`` is the service's application object; handlers are called as
    ``handler(request_handler, **path_params)`` and return ``(status, body)`` or
    ``(status, body, headers)``, or ``None`` when they wrote the response themselves."""

    protocol_version = "HTTP/1.1"
    server_version = "ghost-engine"
    sys_version = ""
    # Idle keep-alive connections close after this; longer than the ALB's 60 s idle timeout,
    # so the ALB, not us, closes idle connections (else it may reuse one we just closed: 502).
    timeout = 75
    server: Server  # the Server below: app, limits, active-request count
    router: Router
    error_map: Mapping[type[BaseException], Callable[[BaseException], HTTPError]] = {}

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def app(self) -> Any:
        return self.server.app

    # -- dispatch -------------------------------------------------------------------

    def _dispatch(self) -> None:
        started = time.perf_counter()
        self.status_sent = 0
        rid_token = logjson.request_id.set(self._request_id())
        job_token = logjson.job_id.set(None)
        self.server.active.enter()
        try:
            self._route()
        finally:
            self.server.active.leave()
            path = self.path.split("?", 1)[0]
            log.info("request", method=self.command, path=path, status=self.status_sent,
                     durationMs=round((time.perf_counter() - started) * 1000, 2))
            logjson.job_id.reset(job_token)
            logjson.request_id.reset(rid_token)

    def _route(self) -> None:
        try:
            handler, params = self.router.match(self.command, self.path.split("?", 1)[0])
            answer = handler(self, **params)
            if answer is not None:
                self.send_json(*answer)
        except HTTPError as exc:
            self._send_http_error(exc)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.close_connection = True
            log.info("client went away", reason=str(exc))
        except Exception as exc:  # the boundary: log it, answer 500, keep serving
            mapped = self._mapped(exc)
            if mapped is not None:
                level = "ERROR" if mapped.status == 500 else "WARNING"
                log.log(level, "request failed", reason=str(exc), errorType=type(exc).__name__)
                self._send_http_error(mapped)
            else:
                log.error("unhandled error", exc=exc)
                self._send_http_error(HTTPError(500, "internal_error",
                                                "internal error; see the service log for this requestId"))

    def _mapped(self, exc: Exception) -> HTTPError | None:
        for exc_type, to_http in self.error_map.items():
            if isinstance(exc, exc_type):
                return to_http(exc)
        return None

    def _send_http_error(self, exc: HTTPError) -> None:
        if exc.status in (400, 411, 413):
            self.close_connection = True  # the body may be unread: the stream is out of step
        self.send_json(exc.status, exc.body(), exc.headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _request_id(self) -> str:
        for name in ("X-Request-Id", "X-Amzn-Trace-Id"):
            value = self.headers.get(name)
            if value and _REQUEST_ID_RE.match(value):
                return value
        return uuid.uuid4().hex

    # -- request body ---------------------------------------------------------------

    def read_json(self) -> dict[str, Any]:
        """The request body as a JSON object, within the server's ``max_body_bytes``; else HTTPError."""
        if self.headers.get("Transfer-Encoding"):
            raise HTTPError(411, "length_required", "send the body with a Content-Length header, not Transfer-Encoding")
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            raise HTTPError(411, "length_required", "a JSON body with a Content-Length header is required")
        if not (raw_length.isascii() and raw_length.isdigit()):
            raise HTTPError(400, "bad_request", f"Content-Length must be a non-negative integer, got {raw_length!r}")
        length, limit = int(raw_length), self.server.max_body_bytes
        if length > limit:
            raise HTTPError(413, "payload_too_large", f"body is {length} bytes; the limit is {limit} bytes")
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError as exc:
            raise HTTPError(400, "invalid_json", f"body is not valid UTF-8 (byte {exc.start})") from None
        except (ValueError, RecursionError) as exc:
            raise HTTPError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "invalid_json", f"body must be a JSON object, got {type(body).__name__}")
        return body

    # -- responses ------------------------------------------------------------------

    def send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        """Encode once and send status line, headers and body in a single write."""
        body = logjson.dumps(obj).encode("utf-8")
        self.status_sent = status
        self.wfile.write(self._head(status, JSON_TYPE, len(body), headers)
                         + (b"" if self.command == "HEAD" else body))

    def _head(self, status: int, content_type: str, length: int | None,
              headers: Mapping[str, str] | None = None) -> bytes:
        phrase = _phrase(status, "")
        lines = [f"HTTP/1.1 {status} {phrase}", f"Date: {self.date_time_string()}",
                 f"Content-Type: {content_type}", "Cache-Control: no-store"]
        if length is None:
            lines.append("Transfer-Encoding: chunked")
        else:
            lines.append(f"Content-Length: {length}")
        rid = logjson.request_id.get()
        if rid:
            lines.append(f"X-Request-Id: {rid}")
        lines.extend(f"{k}: {v}" for k, v in (headers or {}).items())
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def start_chunked(self, status: int, content_type: str) -> None:
        """Begin a chunked response; follow with ``write_chunk`` and ``end_chunked``."""
        self.status_sent = status
        self.wfile.write(self._head(status, content_type, None))

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the stdlib raises itself (bad request line, long URI/headers, unknown
        method) get the same JSON shape as ours, and the connection is closed."""
        self.close_connection = True
        self.status_sent = code
        if logjson.request_id.get() is None:
            logjson.request_id.set(uuid.uuid4().hex)
        text = message or _phrase(code, "error")
        try:
            self.send_json(code, {"error": {"code": _STATUS_CODES.get(code, "error"), "message": text}})
        except OSError:
            pass  # the client is gone; nothing to tell it
        log.info("request", method=self.command, status=code, reason=text)

    def log_message(self, format: str, *args: Any) -> None:
        """Route the stdlib's own messages (timeouts, errors) to JSON lines."""
        log.info(format % args if args else format)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Access lines are written by ``_dispatch`` with timings; the stdlib's are off."""


def _phrase(status: int, default: str) -> str:
    """The standard reason phrase of an HTTP status, or ``default``."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return default


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


class ActiveRequests:
    """Counts requests in progress so a shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self._count = 0
        self._cond = threading.Condition()

    def enter(self) -> None:
        with self._cond:
            self._count += 1

    def leave(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._count == 0, timeout)


DEFAULT_MAX_BODY_BYTES = 16 * 1024


class Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer with a deep listen backlog and JSON error logging, holding the
    service's application object (``app``) and its request body limit."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: type[JsonHandler], app: Any,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.active = ActiveRequests()
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        log.error("connection error", exc=exc, client=str(client_address[0]))


def serve(server: Server, on_stop: Callable[[], None]) -> int:
    """Serve until SIGTERM/SIGINT, then stop accepting, run ``on_stop`` (the drain) and
    return the exit code 0."""
    stopping = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            log.info("stopping", signal=signal.Signals(signum).name)
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    host, port = server.server_address[:2]
    log.info("listening", host=host, port=port, pid=os.getpid())
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    on_stop()
    log.info("stopped")
    return 0
