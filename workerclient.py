"""The orchestrator's client for the worker's streaming ``POST /process``.

``WorkerClient.process`` sends one job and yields the worker's NDJSON events (progress
lines, then one result line). Every way the call can go wrong becomes a ``WorkerError``
that says whether it is ``transient`` (connection refused or broken, a silent worker,
HTTP 5xx/429: worth retrying) or permanent (HTTP 4xx, a malformed answer).
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any


class WorkerError(Exception):
    """The worker could not do the job. ``transient`` faults are retried."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


class WorkerClient:
    """Calls the worker's streaming ``POST /process`` and yields its events; the last one
    is a checked ``{"event": "result", "ok": true, "output": {...}}``."""

    def __init__(self, base_url: str, connect_timeout: float, idle_timeout: float):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"WORKER_URL must be an http:// URL, got {base_url!r}")
        self.base_url = base_url
        self._host, self._port = parts.hostname, parts.port or 80
        self._path = parts.path.rstrip("/") + "/process"
        self._connect_timeout, self._idle_timeout = connect_timeout, idle_timeout

    def process(self, job_id: str, payload: dict[str, Any], request_id: str | None) -> Iterator[dict[str, Any]]:
        body = json.dumps({"jobId": job_id, "payload": payload}).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
        if request_id:
            headers["X-Request-Id"] = request_id
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
        try:
            try:
                conn.connect()
            except TimeoutError:
                raise WorkerError(f"worker unreachable at {self.base_url}: no connection within "
                                  f"{self._connect_timeout:g} s", transient=True) from None
            except OSError as exc:
                raise WorkerError(f"worker unreachable at {self.base_url}: {exc}", transient=True) from None
            try:
                conn.sock.settimeout(self._idle_timeout)
                conn.request("POST", self._path, body, headers)
                resp = conn.getresponse()
            except TimeoutError:
                raise WorkerError(f"worker at {self.base_url} did not answer within {self._idle_timeout:g} s",
                                  transient=True) from None
            except (OSError, http.client.HTTPException) as exc:
                raise WorkerError(f"worker unreachable at {self.base_url}: {exc}", transient=True) from None
            self._check_status(resp)
            yield from self._events(resp)
        finally:
            conn.close()

    def _check_status(self, resp: http.client.HTTPResponse) -> None:
        if resp.status == 200:
            return
        detail = resp.read(4096).decode("utf-8", "replace")
        try:
            detail = json.loads(detail)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            pass
        transient = resp.status >= 500 or resp.status == 429
        raise WorkerError(f"worker answered HTTP {resp.status}: {detail}", transient=transient)

    def _events(self, resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
        try:
            for line in resp:
                try:
                    event = json.loads(line)
                except ValueError:
                    raise WorkerError(f"worker sent a malformed line: {line[:200]!r}", transient=False) from None
                if not isinstance(event, dict) or "event" not in event:
                    raise WorkerError(f"worker sent an event without a type: {line[:200]!r}", transient=False)
                if event["event"] == "result":
                    _check_result(event)
                    yield event
                    return
                yield event
        except TimeoutError:
            raise WorkerError(f"worker at {self.base_url} sent nothing for {self._idle_timeout:g} s",
                              transient=True) from None
        except (OSError, http.client.HTTPException) as exc:
            raise WorkerError(f"connection to worker at {self.base_url} broke mid-job: {exc!r}",
                              transient=True) from None
        raise WorkerError(f"worker at {self.base_url} closed the stream before sending a result", transient=True)


def _check_result(event: dict[str, Any]) -> None:
    if event.get("ok") is not True or not isinstance(event.get("output"), dict):
        raise WorkerError("worker's result has no ok=true and output object", transient=False)
