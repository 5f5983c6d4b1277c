"""A small HTTP client for end-to-end tests: JSON requests and status polling."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from polling import wait_until

TERMINAL = ("done", "failed")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def request(base_url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
            raw_body: bytes | None = None, timeout: float = 10) -> Reply:
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        sent = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, data, {**sent, **(headers or {})})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def submit(base_url: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    reply = request(base_url, "POST", "/generate-scene", payload, headers)
    assert reply.status == 202, reply.raw
    return reply.json["jobId"]


def poll(base_url: str, job_id: str, timeout: float = 30, interval: float = 0.05,
         until: tuple[str, ...] = TERMINAL, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Snapshots of ``GET /status/<id>`` until the state is in ``until``; the last one
    has that state. Fails after ``timeout`` seconds."""
    seen: list[dict[str, Any]] = []

    def reached() -> bool:
        reply = request(base_url, "GET", f"/status/{job_id}", headers=headers)
        assert reply.status == 200, reply.raw
        seen.append(reply.json)
        return seen[-1]["state"] in until

    wait_until(reached, timeout, f"job {job_id} in {until}", interval)
    return seen
