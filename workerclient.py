"""The orchestrator's client for the worker's streaming ``POST /process``.

``WorkerClient.call`` prepares one job's call; ``WorkerCall.events`` sends it and yields
the worker's NDJSON events (progress lines, then one result line). ``WorkerCall.abort``,
from any thread, stops a call at once (its socket is shut down): that is how a run that
lost its lease, or an orchestrator that is stopping, lets go of the worker.

Every way a call can go wrong becomes a ``WorkerError`` with two messages: ``public``, a
sentence fit for a job's public ``error`` (no URL, errno or exception class), and
``detail`` (``str(exc)``), which names the worker URL and the cause for the log line. It
also says whether the fault is ``transient`` (connection refused or broken, a silent
worker, HTTP 5xx: worth retrying) or permanent (HTTP 4xx, a malformed answer).
``WorkerBusy`` is the worker's back-pressure (503 ``busy``, 429): not a fault, a reason to
wait ``retry_after`` seconds.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

# 503 answers whose code means "up, but full": the worker's job slots, or its connection cap.
BUSY_CODES = frozenset({"busy", "too_many_connections"})


class WorkerError(Exception):
    """The worker could not do the job. ``public`` is for the job's ``error``; ``str()`` is
    the detail for the log. ``transient`` faults are retried."""

    def __init__(self, public: str, detail: str, *, transient: bool):
        super().__init__(detail)
        self.public, self.detail, self.transient = public, detail, transient


class WorkerBusy(WorkerError):
    """The worker is up but has no free slot: wait ``retry_after`` seconds (None: not said)."""

    def __init__(self, detail: str, retry_after: float | None):
        super().__init__("the worker stayed busy", detail, transient=True)
        self.retry_after = retry_after


class CallAborted(Exception):
    """``WorkerCall.abort`` was called: the call ended without an answer."""


class WorkerClient:
    """Makes ``WorkerCall``s to the worker's streaming ``POST /process``."""

    def __init__(self, base_url: str, connect_timeout: float, idle_timeout: float, token: str | None = None):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"WORKER_URL must be an http:// URL, got {base_url!r}")
        self.base_url = base_url
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path.rstrip("/") + "/process"
        self.connect_timeout, self.idle_timeout = connect_timeout, idle_timeout
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}  # the worker's WORKER_TOKEN

    def call(self, job_id: str, payload: dict[str, Any], request_id: str | None) -> WorkerCall:
        return WorkerCall(self, job_id, payload, request_id)

    def process(self, job_id: str, payload: dict[str, Any], request_id: str | None) -> Iterator[dict[str, Any]]:
        """The events of one call that nobody needs to abort."""
        return self.call(job_id, payload, request_id).events()


class WorkerCall:
    """One ``POST /process``: iterate ``events()`` on one thread, ``abort()`` from any other."""

    def __init__(self, client: WorkerClient, job_id: str, payload: dict[str, Any], request_id: str | None):
        self._client = client
        self._body = json.dumps({"jobId": job_id, "payload": payload}).encode("utf-8")
        self._headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson", **client.auth}
        if request_id:
            self._headers["X-Request-Id"] = request_id
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._aborted = False

    def abort(self) -> None:
        """End the call now: a read in progress returns at once and ``events`` raises
        ``CallAborted``. The socket is shut down here and closed by the reading thread."""
        with self._lock:
            self._aborted = True
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by the peer or by the reader: nothing left to stop

    def events(self) -> Iterator[dict[str, Any]]:
        """Send the job and yield its events; the last is a checked result event."""
        c = self._client
        conn = http.client.HTTPConnection(c.host, c.port, timeout=c.connect_timeout)
        try:
            self._connect(conn)
            try:
                conn.sock.settimeout(c.idle_timeout)
                conn.request("POST", c.path, self._body, self._headers)
                resp = conn.getresponse()
            except TimeoutError:
                raise self._error("the worker did not answer",
                                  f"worker at {c.base_url} did not answer within {c.idle_timeout:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                raise self._error("the worker could not be reached",
                                  f"worker unreachable at {c.base_url}: {exc}") from None
            _check_status(resp, c.base_url)
            yield from self._events(resp)
        finally:
            conn.close()

    def _connect(self, conn: http.client.HTTPConnection) -> None:
        c = self._client
        if self._aborted:
            raise CallAborted()
        try:
            conn.connect()
        except TimeoutError:
            raise self._error("the worker could not be reached", f"worker unreachable at {c.base_url}: "
                              f"no connection within {c.connect_timeout:g} s") from None
        except OSError as exc:
            raise self._error("the worker could not be reached", f"worker unreachable at {c.base_url}: {exc}") from None
        with self._lock:
            self._sock = conn.sock
            if self._aborted:  # abort() ran while we connected: it had no socket to shut down
                raise CallAborted()

    def _error(self, public: str, detail: str, transient: bool = True) -> Exception:
        """The error to raise for a failed read or write: ``CallAborted`` if it failed
        because of ``abort()``, else a ``WorkerError``."""
        if self._aborted:
            return CallAborted()
        return WorkerError(public, detail, transient=transient)

    def _events(self, resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
        url = self._client.base_url
        try:
            for line in resp:
                event = _parse_event(line, url)
                yield event
                if event["event"] == "result":
                    return
        except TimeoutError:
            raise self._error("the worker stopped responding mid-job",
                              f"worker at {url} sent nothing for {self._client.idle_timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._error("the connection to the worker broke mid-job",
                              f"connection to worker at {url} broke mid-job: {exc!r}") from None
        raise self._error("the connection to the worker broke mid-job",
                          f"worker at {url} closed the stream before sending a result")


def _parse_event(line: bytes, url: str) -> dict[str, Any]:
    """One NDJSON line as an event; a result event is checked. Bad lines are permanent errors."""
    unreadable = "the worker sent an answer that could not be read"
    try:
        event = json.loads(line)
    except ValueError:
        raise WorkerError(unreadable, f"worker at {url} sent a malformed line: {line[:200]!r}",
                          transient=False) from None
    if not isinstance(event, dict) or "event" not in event:
        raise WorkerError(unreadable, f"worker at {url} sent an event without a type: {line[:200]!r}",
                          transient=False)
    if event["event"] == "result" and (event.get("ok") is not True or not isinstance(event.get("output"), dict)):
        raise WorkerError(unreadable, f"worker at {url} sent a result without ok=true and an output object",
                          transient=False)
    return event


def _check_status(resp: http.client.HTTPResponse, url: str) -> None:
    """Return on 200; else raise ``WorkerBusy`` (back-pressure) or a ``WorkerError``."""
    if resp.status == 200:
        return
    text = resp.read(4096).decode("utf-8", "replace")
    code, message = None, text
    try:
        error = json.loads(text)["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        pass
    detail = f"worker at {url} answered HTTP {resp.status}: {message}"
    if resp.status == 429 or (resp.status == 503 and code in BUSY_CODES):
        raise WorkerBusy(detail, _retry_after(resp.getheader("Retry-After")))
    if resp.status >= 500:
        raise WorkerError(f"the worker failed (HTTP {resp.status})", detail, transient=True)
    raise WorkerError(f"the worker refused the job (HTTP {resp.status})", detail, transient=False)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta form; an HTTP date or garbage counts as unsaid)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())
