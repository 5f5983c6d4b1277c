"""The HTTP server both services run on: ``http.server.ThreadingHTTPServer`` with limits.

``Server`` holds the service's application object and its ``Limits``, counts requests in
progress (so a shutdown can wait for them), and caps open connections: past
``max_connections`` a connection gets a canned 503 at once, with no thread and no read of
its request. ``serve`` runs it until SIGTERM/SIGINT, then stops accepting, marks the server
``stopping`` (requests on connections still open get 503 and ``Connection: close``) and
runs the service's drain. With an accept delay, the server first stays ``draining`` for that
long (serving as usual, so a service can report itself unhealthy) and stops accepting after:
clients that still have its address from DNS keep being served.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from config import Env
from cpugate import FifoGate, NoGate
from logjson import log


@dataclass(frozen=True)
class Limits:
    """What one request or connection may cost a process (README "Reliability")."""

    max_body_bytes: int = 16 * 1024
    max_head_bytes: int = 32 * 1024
    head_timeout_seconds: float = 10.0
    max_connections: int = 512
    cpu_slots: int = 2

    @classmethod
    def from_env(cls, env: Env) -> Limits:
        return cls(
            max_body_bytes=env.integer("MAX_BODY_BYTES", cls.max_body_bytes, minimum=256),
            max_head_bytes=env.integer("MAX_HEADER_BYTES", cls.max_head_bytes, minimum=1024),
            head_timeout_seconds=env.number("REQUEST_HEAD_TIMEOUT_SECONDS", cls.head_timeout_seconds, 0.1),
            max_connections=env.integer("MAX_CONNECTIONS", cls.max_connections, minimum=1),
            cpu_slots=env.integer("CPU_SLOTS", cls.cpu_slots, minimum=0),
        )


class ActiveRequests:
    """Counts requests in progress so a shutdown can wait for them to finish. Entering and
    leaving take no lock (list append and pop are atomic): every request does both, and a
    lock here makes requests queue behind one another; only the rare waiter polls."""

    def __init__(self) -> None:
        self._marks: list[None] = []

    def enter(self) -> None:
        self._marks.append(None)

    def leave(self) -> None:
        self._marks.pop()

    def wait_idle(self, timeout: float) -> bool:
        """True once no request is in progress; False if some still are after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self._marks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True


class ListenError(Exception):
    """The server cannot listen on its address (in use, not ours, no permission); says which."""


class Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer with a deep listen backlog, JSON error logging and a cap on
    connections, holding the service's application object (``app``) and its ``limits``."""

    daemon_threads = True
    # Shutdown waits for requests in progress (ActiveRequests, bounded by a grace period),
    # not for idle keep-alive connections, which would hold it for the whole idle timeout.
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], app: Any,
                 limits: Limits = Limits()):
        self.app = app
        self.limits = limits
        self.active = ActiveRequests()
        # Requests compute in arrival order, at most cpu_slots at once (cpugate); 0: no gate.
        self.gate: FifoGate | NoGate = FifoGate(limits.cpu_slots) if limits.cpu_slots else NoGate()
        self.stopping = threading.Event()
        self.draining = threading.Event()  # signalled, still accepting: health checks say so
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self._refused = _RefusalLog()
        try:
            super().__init__(address, handler)
        except OSError as exc:  # e.g. EADDRINUSE: a second copy, or another program on the port
            raise ListenError(f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}; "
                              "stop what listens there or set PORT (HOST) to another") from None

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a thread of its own, unless ``max_connections`` are open:
        then answer 503 at once, without a thread and without reading the request."""
        if not self._slots.acquire(blocking=False):
            _refuse_connection(request)
            self._refused.note(self.limits.max_connections)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        log.error("connection error", exc=exc, client=str(client_address[0]))


_TOO_MANY_CONNECTIONS = (
    b'{"error":{"code":"too_many_connections","message":"this server has its maximum of connections open;'
    b' retry shortly"}}')
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_TOO_MANY_CONNECTIONS), _TOO_MANY_CONNECTIONS))


def _refuse_connection(sock: socket.socket) -> None:
    """Send the canned 503 without blocking, then close. What the client already sent is
    read and dropped first, so that closing does not reset the connection under the answer."""
    try:
        sock.setblocking(False)
        sock.send(_REFUSAL)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(65536)
    except OSError:
        pass  # nothing more to do for a client that is gone or slow
    finally:
        sock.close()


class _RefusalLog:
    """Logs refused connections at most once every 5 s, with the count since the last line,
    so a flood does not become a flood of log lines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count, self._logged_at = 0, float("-inf")

    def note(self, limit: int) -> None:
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now - self._logged_at < 5:
                return
            count, self._count, self._logged_at = self._count, 0, now
        log.warning("connections refused: too many open", refused=count, maxConnections=limit)


def serve(server: Server, on_stop: Callable[[], None], accept_for_seconds: float = 0.0) -> int:
    """Serve until SIGTERM/SIGINT; keep accepting for ``accept_for_seconds`` more (``draining``;
    a second signal cuts it short), then stop accepting, run ``on_stop`` (the drain) and return
    the exit code 0."""
    signalled, cut_short = threading.Event(), threading.Event()

    def stop_accepting() -> None:
        server.stopping.set()  # open connections: 503 + close from now on
        threading.Thread(target=server.shutdown, daemon=True).start()

    def stop_after_delay() -> None:
        cut_short.wait(accept_for_seconds)
        log.info("no longer accepting")
        stop_accepting()

    def request_stop(signum: int, _frame: Any) -> None:
        if signalled.is_set():
            cut_short.set()
            return
        signalled.set()
        log.info("stopping", signal=signal.Signals(signum).name, acceptForSeconds=accept_for_seconds)
        if accept_for_seconds > 0:
            server.draining.set()
            threading.Thread(target=stop_after_delay, name="accept-delay", daemon=True).start()
        else:
            stop_accepting()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    host, port = server.server_address[:2]
    log.info("listening", host=host, port=port, pid=os.getpid())
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    on_stop()
    log.info("stopped")
    log.flush()
    return 0
