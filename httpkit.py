"""Request handling shared by the orchestrator and the worker (the server is ``httpserver``).

Both services need the same things of a request: a route table, one JSON error shape for
every 4xx/5xx, request ids, JSON access lines, bounded JSON bodies and responses written in
a single ``write``. Keeping that here means the two service modules hold only their own
behaviour.

Hardening (README "Reliability"): request heads are read and parsed strictly by
``httphead`` (no request smuggling), within a deadline and a size cap; a body that a
handler does not read is drained or the connection closed, so the next request on a
keep-alive connection starts where the client's does; each process serves at most
``max_connections`` connections and refuses more with a fast 503; after SIGTERM a request
on an open connection gets 503 and ``Connection: close``.

Authentication (README "Security"): a service whose ``bearer_token()`` is set answers 401
to any request for a route outside its ``public_paths`` that does not carry
``Authorization: Bearer <that token>``. The check runs after routing and before the
handler, so an unauthenticated request never reads a body or takes a work slot.
"""

from __future__ import annotations

import email.utils
import hmac
import http
import os
import re
import select
import socket
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

import cpugate
import jsonbody
import logjson
from httphead import ConnectionReader, HeadError, Headers, HeadTimeout, parse_head
from httpserver import Server
from logjson import log

JSON_TYPE = "application/json"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:;=/+\-]{1,200}$")
_JSON_MEDIA_TYPE = re.compile(r"application/json\s*(;\s*charset\s*=\s*\"?utf-8\"?\s*)?", re.I)
# Codes for errors raised outside our handlers (the stdlib's own send_error, if ever called).
_STATUS_CODES = {400: "bad_request", 408: "request_timeout", 500: "internal_error", 503: "service_unavailable"}


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
    """Maps ``(method, "/path/{param}")`` to handlers; unknown path 404, wrong method 405.

    A path with a GET handler also answers HEAD with it (RFC 9110: HEAD is GET without the
    body; ``send_body`` leaves the body out), unless the table names a HEAD handler itself."""

    def __init__(self, table: Mapping[tuple[str, str], Handler]):
        by_pattern: dict[str, dict[str, Handler]] = {}
        for (method, pattern), handler in table.items():
            by_pattern.setdefault(pattern, {})[method] = handler
        for methods in by_pattern.values():
            if "GET" in methods:
                methods.setdefault("HEAD", methods["GET"])
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


def check_bearer(authorization: str | None, token: str) -> None:
    """Pass if ``authorization`` is ``Bearer <token>``, else raise HTTPError 401 with
    ``WWW-Authenticate`` (RFC 6750). The comparison takes the same time wherever the
    values differ, and neither value ever goes into a message."""
    if authorization is None:
        raise HTTPError(401, "unauthorized", "this route needs Authorization: Bearer <token>",
                        {"WWW-Authenticate": "Bearer"})
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode("latin-1"),
                                                             token.encode("latin-1")):
        raise HTTPError(401, "unauthorized", "the Authorization header does not hold the bearer token this "
                        "route needs", {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (RFC 9110 13.1.2): ``*`` or any
    listed tag, compared weakly (a ``W/`` prefix is ignored)."""
    if if_none_match is None:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


class JsonHandler(BaseHTTPRequestHandler):
    """Request handler for JSON services. Subclasses set ``router`` and ``error_map``, and
    ``bearer_token``/``public_paths`` to require a token.

    ``self.server.app`` is the service's application object; handlers are called as
    ``handler(request_handler, **path_params)`` and return ``(status, body)`` or
    ``(status, body, headers)``, or ``None`` when they wrote the response themselves."""

    protocol_version = "HTTP/1.1"
    server_version = "ghost-engine"
    sys_version = ""
    # Idle keep-alive connections close after this; longer than the ALB's 60 s idle timeout,
    # so the ALB, not us, closes idle connections (else it may reuse one we just closed: 502).
    timeout = 75
    server: Server  # app, limits, active-request count, stopping
    headers: Headers  # type: ignore[assignment]  # httphead's strict parse, not email.message.Message
    router: Router
    error_map: Mapping[type[BaseException], Callable[[BaseException], HTTPError]] = {}
    # Literal paths served without a token even when bearer_token() gives one.
    public_paths: frozenset[str] = frozenset()

    def bearer_token(self) -> str | None:
        """The token every route outside ``public_paths`` requires; None requires none.
        A service returns it from its configuration (``self.app``)."""
        return None

    def setup(self) -> None:
        super().setup()
        # Every response is one write; without this, a write after a write on a keep-alive
        # connection waits for the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = ConnectionReader(self.connection)
        self.command, self.path, self.request_version, self.headers = "", "", "HTTP/1.1", Headers()
        self._unread = 0

    def handle_one_request(self) -> None:
        """Read one request head strictly, dispatch it, then keep the stream in step."""
        limits = self.server.limits
        try:
            raw = self.reader.read_head(self.timeout, limits.head_timeout_seconds, limits.max_head_bytes)
            if raw is None:
                self.close_connection = True
                return
            head = parse_head(raw)
        except HeadError as exc:
            self._refuse(HTTPError(exc.status, exc.code, exc.message))
            return
        except HeadTimeout as exc:
            self._refuse(HTTPError(408, "request_timeout", str(exc)))
            return
        except OSError:  # reset or closed by the client mid-head
            self.close_connection = True
            return
        self.command, self.path, self.request_version = head.method, head.target, head.version
        self.requestline = f"{head.method} {head.target} {head.version}"
        self.headers, self._unread = head.headers, head.content_length
        # A body we would neither read nor drain leaves the stream out of step: say so now.
        self.close_connection = not head.keep_alive or head.content_length > limits.max_body_bytes
        if self.server.stopping.is_set():
            self.close_connection = True
            self._refuse(HTTPError(503, "shutting_down", "this server is shutting down; retry on a new connection",
                                   {"Retry-After": "1"}))
        else:
            self._dispatch()
        self._skip_unread_body()

    def _skip_unread_body(self) -> None:
        """Drain a body the handler did not read, so the next request starts in step; when
        that is not possible (too large, Expect: 100-continue, too slow), close instead."""
        if not self._unread or self.close_connection:
            return
        if self.headers.get("expect") is not None:
            self.close_connection = True
            return
        try:
            self.reader.read_body(self._unread, self.server.limits.head_timeout_seconds)
            self._unread = 0
        except (HeadTimeout, OSError):
            self.close_connection = True

    def _refuse(self, exc: HTTPError) -> None:
        """Answer a request we will not dispatch (malformed, too slow, shutting down) and close."""
        self.close_connection = True
        token = logjson.request_id.set(self._request_id())
        try:
            self.send_json(exc.status, exc.body(), exc.headers)
        except OSError:
            pass  # the client is gone; nothing to tell it
        log.info("request", method=self.command or None, path=self.path.split("?", 1)[0] or None,
                 status=exc.status, reason=exc.message)
        logjson.request_id.reset(token)

    @property
    def app(self) -> Any:
        return self.server.app

    # -- dispatch -------------------------------------------------------------------

    def _dispatch(self) -> None:
        started = time.perf_counter()
        self.status_sent = 0
        rid_token = logjson.request_id.set(self._request_id())
        job_token = logjson.job_id.set(None)
        path = self.path.partition("?")[0]
        self.server.active.enter()
        self.server.gate.enter()
        try:
            self._route(path)
        finally:
            # The access line is part of the request: a drain that waits for idle also waits for it.
            log.access(self.command, path, self.status_sent, round((time.perf_counter() - started) * 1000, 2))
            self.server.active.leave()
            cpugate.leave_if_held()
            logjson.job_id.reset(job_token)
            logjson.request_id.reset(rid_token)

    def _route(self, path: str) -> None:
        try:
            handler, params = self.router.match(self.command, path)
            token = self.bearer_token()
            if token is not None and path not in self.public_paths:
                check_bearer(self.headers.get("authorization"), token)
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
        self.send_json(exc.status, exc.body(), exc.headers)

    def _request_id(self) -> str:
        for name in ("x-request-id", "x-amzn-trace-id"):
            value = dict.get(self.headers, name)
            if value and _REQUEST_ID_RE.match(value):
                return value
        return os.urandom(16).hex()  # 32 hex digits, as uuid4().hex, without building a UUID

    # -- request body ---------------------------------------------------------------

    def read_json(self) -> dict[str, Any]:
        """The request body as a JSON object of valid Unicode text without duplicate keys,
        sent as ``application/json`` within the server's ``max_body_bytes``; else HTTPError."""
        media_type = self.headers.get("content-type")
        if media_type is None or not _JSON_MEDIA_TYPE.fullmatch(media_type.strip()):
            raise HTTPError(415, "unsupported_media_type",
                            f"send the body as Content-Type: application/json, got {media_type!r}")
        if "content-length" not in self.headers:
            raise HTTPError(411, "length_required", "a JSON body with a Content-Length header is required")
        length, limit = self._unread, self.server.limits.max_body_bytes
        if length > limit:
            raise HTTPError(413, "payload_too_large", f"body is {length} bytes; the limit is {limit} bytes")
        try:
            return jsonbody.decode(self._read_body(length))
        except jsonbody.BodyError as exc:
            raise HTTPError(400, "invalid_json", str(exc)) from None

    def _read_body(self, length: int) -> bytes:
        expect = self.headers.get("expect")
        if expect is not None:
            if expect.lower() != "100-continue":
                self.close_connection = True
                raise HTTPError(417, "expectation_failed", f"Expect: {expect!r} is not supported; only 100-continue")
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            raw = self.reader.read_body(length, self.server.limits.head_timeout_seconds)
        except HeadTimeout as exc:
            self.close_connection = True
            raise HTTPError(408, "request_timeout", str(exc)) from None
        self._unread = 0
        return raw

    # -- responses ------------------------------------------------------------------

    def send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        """Encode once and send status line, headers and body in a single write."""
        self.send_body(status, JSON_TYPE, logjson.dumps(obj).encode("utf-8"), headers)

    def send_body(self, status: int, content_type: str, body: bytes,
                  headers: Mapping[str, str] | None = None) -> None:
        """Send an encoded body in a single write (none for HEAD or 304, which still state
        its length). ``headers`` may replace the default ``Cache-Control: no-store``."""
        self.status_sent = status
        omit = self.command == "HEAD" or status == 304
        self._write(self._head(status, content_type, len(body), headers) + (b"" if omit else body))

    def _write(self, data: bytes) -> None:
        """Write in one call. Holding a slot of the CPU gate, write only what the socket takes
        at once; if a client is slow to read, give the slot up before waiting on it. (The
        socket has a timeout, so its descriptor is non-blocking: os.write never waits, where
        socket.send would first wait for room, for as long as the timeout.)"""
        sent = 0
        if cpugate.holding():
            try:
                sent = os.write(self.connection.fileno(), data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent == len(data):
                return
            cpugate.leave_if_held()
        self.wfile.write(data[sent:])

    def _head(self, status: int, content_type: str, length: int | None,
              headers: Mapping[str, str] | None = None) -> bytes:
        extra = headers or {}
        framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
        rid = logjson.request_id.get()
        rid_line = f"X-Request-Id: {rid}\r\n" if rid else ""
        text = (f"HTTP/1.1 {status} {_phrase(status, '')}\r\nDate: {_http_date()}\r\n"
                f"Content-Type: {content_type}\r\nCache-Control: {extra.get('Cache-Control', 'no-store')}\r\n"
                f"{framing}\r\n{rid_line}")
        for name, value in extra.items():
            if name != "Cache-Control":
                text += f"{name}: {value}\r\n"
        if self.close_connection:
            text += "Connection: close\r\n"
        return (text + "\r\n").encode("latin-1")

    def start_chunked(self, status: int, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        """Begin a chunked response; follow with ``write_chunk`` and ``end_chunked``. A
        stream is long: the rest of the request runs without a slot of the CPU gate."""
        self.status_sent = status
        cpugate.leave_if_held()
        self.wfile.write(self._head(status, content_type, None, headers))

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` while the client waits for this response, but raise
        ``ConnectionResetError`` as soon as it closes the connection: work nobody will read
        stops at once, not at its next write. (Bytes of a pipelined request make the socket
        readable too; then only a write can tell, so it sleeps the rest.)"""
        deadline = time.monotonic() + seconds
        poller = select.poll()
        poller.register(self.connection, select.POLLIN | select.POLLRDHUP)
        while (left := deadline - time.monotonic()) > 0:
            if not poller.poll(left * 1000):
                return
            try:
                if not self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                    raise ConnectionResetError("the client closed the connection")
            except BlockingIOError:
                continue
            time.sleep(max(deadline - time.monotonic(), 0))
            return

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the stdlib would send itself get our JSON shape, and the connection closes."""
        self._refuse(HTTPError(code, _STATUS_CODES.get(code, "error"), message or _phrase(code, "error")))

    def log_message(self, format: str, *args: Any) -> None:
        """Route the stdlib's own messages (timeouts, errors) to JSON lines."""
        log.info(format % args if args else format)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Access lines are written by ``_dispatch`` with timings; the stdlib's are off."""


_date_cache: tuple[int, str] = (-1, "")


def _http_date() -> str:
    """The Date header's value, formatted once a second rather than on every response."""
    global _date_cache
    now = int(time.time())
    second, text = _date_cache  # one tuple: read and replaced atomically
    if second != now:
        text = email.utils.formatdate(now, usegmt=True)
        _date_cache = (now, text)
    return text


def _phrase(status: int, default: str) -> str:
    """The standard reason phrase of an HTTP status, or ``default``."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return default
