"""The harness's own HTTP calls to a service (not load): health checks, creating a job and
reading its status over one keep-alive connection, with ``http.client``."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Collection
from typing import Any

JOB_BODY = {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}


def healthy(port: int, path: str = "/healthz", timeout: float = 1.0) -> bool:
    """True when ``GET path`` on 127.0.0.1:``port`` answers 200 now."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Api:
    """JSON requests to one service on 127.0.0.1, reusing a connection (reopened on error)."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.port, self.timeout = port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``(status, parsed JSON body)``; a kept-alive connection the server closed is
        retried once on a new one."""
        data = json.dumps(body).encode() if body is not None else None
        try:
            return self._once(method, path, data)
        except (OSError, http.client.HTTPException):
            self.close()
            return self._once(method, path, data)

    def _once(self, method: str, path: str, data: bytes | None) -> tuple[int, Any]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self._conn.request(method, path, data, headers)
        response = self._conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None

    def create_job(self, body: dict[str, Any] | None = None) -> str:
        status, answer = self.request("POST", "/generate-scene", body or JOB_BODY)
        if status != 202:
            raise RuntimeError(f"POST /generate-scene answered {status}: {answer}")
        return str(answer["jobId"])

    def status(self, job_id: str) -> dict[str, Any]:
        status, answer = self.request("GET", f"/status/{job_id}")
        if status != 200:
            raise RuntimeError(f"GET /status/{job_id} answered {status}: {answer}")
        return dict(answer)

    def wait_state(self, job_id: str, states: Collection[str], timeout: float = 30.0,
                   interval: float = 0.01) -> dict[str, Any]:
        """Poll the job's status until its state is one of ``states``; return that status."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.status(job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} still {job['state']} after {timeout:g} s")
            time.sleep(interval)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
