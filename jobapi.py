"""The job API's handlers: submit (idempotent, optionally waiting), status (optionally
waiting for a change), the status events stream, and cancel.

- ``POST /generate-scene`` with ``Idempotency-Key: <key>``: the job's id is derived from the
  key, so the store's create-if-absent decides, in one conditional write, which request
  created the job; a retry with the same body (compared as a canonical JSON document) gets
  the same job back marked ``Idempotent-Replayed: true``, another body 422. ``Prefer:
  wait=N`` (RFC 7240) answers 201 with the ended job if it ends within N seconds (at most
  ``MAX_WAIT_SECONDS``; more is clamped), else the usual 202.
- ``GET /status/{jobId}?wait=N[&since=<updatedAt>]`` answers when the job has ended (or its
  ``updatedAt`` differs from ``since``), else after N seconds with the job as it is.
- ``GET /status/{jobId}/events``: Server-Sent Events, one ``status`` event at once and one
  per change, a comment every ``sse_heartbeat_seconds``, ending after the final event.
- ``POST /jobs/{jobId}/cancel``: 200 with the canceled job; 409 if it had ended already.
- ``GET /jobs?state=&limit=&cursor=``: jobs newest first, a page at a time (its query and
  cursors: ``joblist``).

Waiting of every kind goes through ``watch.JobWatch``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import urllib.parse
import uuid
from typing import Any

import joblist
import logjson
import scene
from httpkit import HTTPError, JsonHandler
from logjson import log
from store import IllegalTransition, JobNotFound
from watch import TERMINAL, TooManyWaiting

PUBLIC_FIELDS = ("jobId", "state", "progress", "result", "error", "createdAt", "updatedAt", "input", "attempts")
JSON_SAFE_SEED_BOUND = 2**53  # chosen seeds survive JavaScript clients' float64 numbers
MAX_WAIT_SECONDS = 50  # under the ALB's 60 s idle timeout
# Job ids: version 4 UUIDs, or version 5 derived from an Idempotency-Key in this namespace.
_JOB_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[45][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6c1f2a4e-3b7d-5e8f-9a0b-1c2d3e4f5a6b")
_IDEMPOTENCY_KEY_RE = re.compile(r"[\x20-\x7e]{1,255}")
_STAMP_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def public_view(job: dict[str, Any]) -> dict[str, Any]:
    """What ``GET /status`` shows of a job (no lease internals)."""
    return {k: job.get(k) for k in PUBLIC_FIELDS}


# -- submit -----------------------------------------------------------------------------


def generate_scene(h: JsonHandler) -> tuple[int, dict[str, Any], dict[str, str]]:
    key = _idempotency_key(h)
    body = h.read_json()
    try:
        job_input = scene.parse_input(body, require_seed=False)
    except ValueError as exc:
        raise HTTPError(400, "invalid_request", str(exc)) from None
    if job_input["seed"] is None:
        job_input["seed"] = secrets.randbelow(JSON_SAFE_SEED_BOUND)
    job_id = request_hash = None
    if key is not None:
        job_id = str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, key))
        request_hash = hashlib.sha256(scene.canonical(body)).hexdigest()
    job_id, replayed = h.app.dispatcher.create(job_input, logjson.request_id.get(), job_id, request_hash)
    logjson.job_id.set(job_id)
    if replayed:
        log.info("job replayed for its idempotency key")
    else:
        log.info("job accepted", seed=job_input["seed"], style=job_input["style"])
    status_url = f"/status/{job_id}"
    headers = {"Location": status_url, **({"Idempotent-Replayed": "true"} if replayed else {})}
    wait = _preferred_wait(h)
    if wait is not None:
        try:
            with h.app.watch.admit():
                job = h.app.watch.wait(job_id, None, wait)
            headers["Preference-Applied"] = f"wait={wait:g}"
            if job is not None and job["state"] in TERMINAL:
                return 201, public_view(job), headers
        except TooManyWaiting:
            pass  # a preference, not a demand: the usual answer, without Preference-Applied
    return 202, {"jobId": job_id, "statusUrl": status_url}, headers


def _idempotency_key(h: JsonHandler) -> str | None:
    key = h.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY_RE.fullmatch(key):
        raise HTTPError(400, "invalid_request",
                        "Idempotency-Key must be 1 to 255 printable ASCII characters (a UUID is a good choice)")
    return key


def _preferred_wait(h: JsonHandler) -> float | None:
    """``wait=N`` from ``Prefer`` (RFC 7240), clamped to MAX_WAIT_SECONDS; preferences it
    does not understand (or a malformed wait) are ignored, as the RFC asks."""
    prefer = h.headers.get("prefer")
    if prefer is None:  # the usual submit: nothing to parse
        return None
    for preference in prefer.split(","):
        name, _, value = preference.split(";", 1)[0].strip().partition("=")
        if name.strip().lower() == "wait" and value.strip().isdigit():
            return float(min(int(value.strip()), MAX_WAIT_SECONDS))
    return None


def idempotency_key_reused(_exc: BaseException) -> HTTPError:
    return HTTPError(422, "idempotency_key_reused",
                     "this Idempotency-Key was used with another request body; use a new key for a new job")


# -- status -----------------------------------------------------------------------------


def job_status(h: JsonHandler, job_id: str) -> tuple[int, dict[str, Any]]:
    if "?" not in h.path:  # the polling clients' hot path: nothing to parse
        return 200, public_view(_job(h, job_id))
    params = _query(h, {"wait", "since"})
    if "wait" not in params:
        if "since" in params:
            raise HTTPError(400, "invalid_request", "since needs wait: ?wait=N&since=<updatedAt>")
        return 200, public_view(_job(h, job_id))
    wait = _wait_seconds(params["wait"])
    since = params.get("since")
    if since is not None and not _STAMP_RE.fullmatch(since):
        raise HTTPError(400, "invalid_request", f"since must be a job's updatedAt, like 2026-11-28T09:29:33.250Z, "
                                                f"got {since!r}")
    _job(h, job_id)  # 404 before waiting
    with h.app.watch.admit():
        job = h.app.watch.wait(job_id, since, wait)
    if job is None:
        raise HTTPError(404, "not_found", f"no job with id {job_id!r}")
    return 200, public_view(job)


def _job(h: JsonHandler, job_id: str) -> dict[str, Any]:
    job = h.app.store.get(job_id) if _JOB_ID_RE.match(job_id) else None
    if job is None:
        raise HTTPError(404, "not_found", f"no job with id {job_id!r}")
    return job


def _query(h: JsonHandler, accepted: set[str]) -> dict[str, str]:
    """The query parameters, each at most once and each one of ``accepted``; else 400."""
    pairs = urllib.parse.parse_qsl(h.path.partition("?")[2], keep_blank_values=True)
    names = [name for name, _ in pairs]
    unknown = sorted(set(names) - accepted)
    if unknown:
        raise HTTPError(400, "invalid_request",
                        f"unknown query parameter(s): {', '.join(unknown)}; accepted: {', '.join(sorted(accepted))}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise HTTPError(400, "invalid_request", f"query parameter(s) given more than once: {', '.join(repeated)}")
    return dict(pairs)


def _wait_seconds(raw: str) -> float:
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_WAIT_SECONDS:  # also NaN
        raise HTTPError(400, "invalid_request",
                        f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS}, got {raw!r}")
    return wait


def too_many_waiting(_exc: BaseException) -> HTTPError:
    return HTTPError(503, "too_many_waiting", "too many requests are waiting on jobs; retry shortly",
                     {"Retry-After": "1"})


# -- events -----------------------------------------------------------------------------


def job_events(h: JsonHandler, job_id: str) -> None:
    """The job's status as Server-Sent Events until it ends (README "Progress events")."""
    _query(h, set())
    job: dict[str, Any] | None = _job(h, job_id)
    since = h.headers.get("last-event-id")  # a reconnecting client: changes after the one it saw
    heartbeat = h.app.config.sse_heartbeat_seconds
    with h.app.watch.admit():
        h.start_chunked(200, "text/event-stream", {"X-Accel-Buffering": "no"})
        while job is not None:
            if job["updatedAt"] != since:
                since = job["updatedAt"]
                data = logjson.dumps(public_view(job))
                h.write_chunk(f"event: status\nid: {since}\ndata: {data}\n\n".encode())
            elif job["state"] not in TERMINAL:
                h.write_chunk(b": still running\n\n")  # keeps proxies (and the ALB) from closing it
            if job["state"] in TERMINAL:
                break  # after its final event, or at once for a client that has seen it
            job = h.app.watch.wait(job_id, since, heartbeat)
        h.end_chunked()


# -- cancel -----------------------------------------------------------------------------


def cancel_job(h: JsonHandler, job_id: str) -> tuple[int, dict[str, Any]]:
    if not _JOB_ID_RE.match(job_id):
        raise HTTPError(404, "not_found", f"no job with id {job_id!r}")
    logjson.job_id.set(job_id)
    try:
        job = h.app.dispatcher.cancel(job_id)
    except JobNotFound:
        raise HTTPError(404, "not_found", f"no job with id {job_id!r}") from None
    except IllegalTransition as exc:
        raise HTTPError(409, "conflict", f"the job is already {exc.from_state}; only a queued or running job "
                                         "can be canceled") from None
    return 200, public_view(job)


# -- list -------------------------------------------------------------------------------


def list_jobs(h: JsonHandler) -> tuple[int, dict[str, Any]]:
    try:
        query = joblist.parse_query(h.path)
    except ValueError as exc:
        raise HTTPError(400, "invalid_request", str(exc)) from None
    jobs, last = h.app.store.list_jobs(query.state, query.limit, query.before)
    cursor = None if last is None else joblist.encode_cursor(last, query.state)
    return 200, {"jobs": [public_view(job) for job in jobs], "nextCursor": cursor}
