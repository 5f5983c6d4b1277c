"""Unit tests for worker: configuration, /process request parsing, the work's event
sequence (with a fake clock and a real one), and the HTTP handler in a thread."""

from __future__ import annotations

import http.client
import itertools
import json

import pytest

import scene
import worker
from config import ConfigError
from conftest import serving_in_thread
from httpkit import HTTPError
from httpserver import Server
from logcapture import wait_for_line
from worker import Worker, WorkerConfig

PAYLOAD = {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}
TOKEN = "worker-token-0123456789abcdef"


# -- configuration ----------------------------------------------------------------------


def test_config_defaults():
    config = WorkerConfig.from_env({})
    assert (config.host, config.port, config.work_ms, config.progress_tick_ms, config.max_concurrent_jobs,
            config.shutdown_grace_seconds, config.shutdown_delay_seconds, config.log_level) == (
        "127.0.0.1", 8081, 2000, 1000, 16, 25.0, 0.0, "INFO")


def test_config_reads_every_variable():
    config = WorkerConfig.from_env({
        "HOST": "0.0.0.0", "PORT": "9001", "WORK_MS": "0", "PROGRESS_TICK_MS": "10",
        "MAX_CONCURRENT_JOBS": "2", "SHUTDOWN_GRACE_SECONDS": "0.5", "SHUTDOWN_DELAY_SECONDS": "15",
        "LOG_LEVEL": "warning", "WORKER_TOKEN": TOKEN,
    })
    assert config == WorkerConfig(host="0.0.0.0", port=9001, work_ms=0, progress_tick_ms=10,
                                  max_concurrent_jobs=2, shutdown_grace_seconds=0.5, shutdown_delay_seconds=15.0,
                                  log_level="WARNING", worker_token=TOKEN)


def test_config_keeps_the_token_out_of_its_repr():
    assert TOKEN not in repr(WorkerConfig.from_env({"WORKER_TOKEN": TOKEN}))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_config_without_a_token_is_open_on_a_loopback_host(host):
    assert WorkerConfig.from_env({"HOST": host}).worker_token is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.40.3.7", "worker.ghost-engine-dev.local"])
def test_config_without_a_token_refuses_any_other_host_naming_worker_token(host):
    with pytest.raises(ConfigError) as info:
        WorkerConfig.from_env({"HOST": host})
    assert str(info.value) == (f"WORKER_TOKEN is required when HOST is not a loopback address (HOST={host}): "
                               "set it to the token the orchestrator sends")


@pytest.mark.parametrize(("environ", "message"), [
    ({"PORT": "http"}, "PORT must be an integer, got 'http'"),
    ({"WORK_MS": "2s"}, "WORK_MS must be an integer, got '2s'"),
    ({"WORK_MS": "-1"}, "WORK_MS must be >= 0, got -1"),
    ({"PROGRESS_TICK_MS": "9"}, "PROGRESS_TICK_MS must be >= 10, got 9"),
    ({"MAX_CONCURRENT_JOBS": "0"}, "MAX_CONCURRENT_JOBS must be >= 1, got 0"),
    ({"SHUTDOWN_GRACE_SECONDS": "-1"}, "SHUTDOWN_GRACE_SECONDS must be >= 0.0, got -1"),
    ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'VERBOSE'"),
])
def test_config_errors_name_the_variable(environ, message):
    with pytest.raises(ConfigError) as info:
        WorkerConfig.from_env(environ)
    assert str(info.value) == message


def test_config_rejects_a_port_above_65535():
    """Otherwise bind() raises OverflowError at start-up and the worker dies with a traceback
    instead of the one-line configuration error (exit 2)."""
    with pytest.raises(ConfigError) as info:
        WorkerConfig.from_env({"PORT": "70000"})
    assert "PORT" in str(info.value)


# -- parse_process_request --------------------------------------------------------------


def test_parse_process_request_returns_job_id_and_validated_payload():
    assert worker.parse_process_request({"jobId": "j-1", "payload": {"prompt": "p", "seed": 0}}) == (
        "j-1", {"prompt": "p", "seed": 0, "style": None})


@pytest.mark.parametrize(("body", "message"), [
    ({"jobId": "j", "payload": PAYLOAD, "extra": 1, "x": 2},
     "unknown field(s): extra, x; accepted: jobId, payload"),
    ({"payload": PAYLOAD}, "jobId is required and must be a string of 1-100 characters"),
    ({"jobId": "", "payload": PAYLOAD}, "jobId is required and must be a string of 1-100 characters"),
    ({"jobId": "j" * 101, "payload": PAYLOAD}, "jobId is required and must be a string of 1-100 characters"),
    ({"jobId": 7, "payload": PAYLOAD}, "jobId is required and must be a string of 1-100 characters"),
    ({"jobId": "j"}, "payload is required and must be an object with prompt, seed, style"),
    ({"jobId": "j", "payload": [PAYLOAD]}, "payload is required and must be an object with prompt, seed, style"),
    ({"jobId": "j", "payload": {"prompt": "p"}}, "payload: seed is required"),
    ({"jobId": "j", "payload": {"prompt": "p", "seed": 1, "size": 3}},
     "payload: unknown field(s): size; accepted: prompt, seed, style"),
    ({"jobId": "j", "payload": {"prompt": "", "seed": 1}},
     "payload: prompt is required and must be a non-empty string"),
])
def test_parse_process_request_errors_are_400_naming_the_problem(body, message):
    with pytest.raises(HTTPError) as info:
        worker.parse_process_request(body)
    assert (info.value.status, info.value.body()) == (400, {"error": {"code": "invalid_request", "message": message}})


def test_parse_process_request_accepts_a_100_character_job_id():
    assert worker.parse_process_request({"jobId": "j" * 100, "payload": PAYLOAD})[0] == "j" * 100


# -- Worker.run -------------------------------------------------------------------------


class FakeTime:
    """Stands in for the ``time`` module inside ``worker``: ``sleep`` advances the clock
    exactly; each ``monotonic`` reading advances it by ``drift`` (time spent between
    two readings, e.g. while another thread holds the GIL)."""

    def __init__(self, start: float = 1000.0, drift: float = 0.0):
        self.now, self.drift = start, drift

    def monotonic(self) -> float:
        value = self.now
        self.now += self.drift
        return value

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_run_yields_a_tick_inside_each_long_phase_then_the_phase_end_then_the_result(monkeypatch):
    monkeypatch.setattr(worker, "time", FakeTime())
    events = list(Worker(WorkerConfig(work_ms=2000, progress_tick_ms=125)).run("job-1", PAYLOAD))
    progress = [(e["event"], e["jobId"], e["step"], e["progress"]) for e in events[:-1]]
    assert progress == [
        ("progress", "job-1", "interpret prompt", 0.0625), ("progress", "job-1", "interpret prompt", 0.125),
        ("progress", "job-1", "seed generator", 0.1875), ("progress", "job-1", "seed generator", 0.25),
        ("progress", "job-1", "lay out rooms", 0.3125), ("progress", "job-1", "lay out rooms", 0.375),
        ("progress", "job-1", "connect doors", 0.4375), ("progress", "job-1", "connect doors", 0.5),
        ("progress", "job-1", "place entities", 0.5625), ("progress", "job-1", "place entities", 0.625),
        ("progress", "job-1", "light scene", 0.6875), ("progress", "job-1", "light scene", 0.75),
        ("progress", "job-1", "dress materials", 0.8125), ("progress", "job-1", "dress materials", 0.875),
        ("progress", "job-1", "bake digest", 0.9375), ("progress", "job-1", "bake digest", 1.0),
    ]
    result = events[-1]
    assert list(result) == ["event", "jobId", "ok", "output", "progressLog"]
    assert (result["event"], result["jobId"], result["ok"]) == ("result", "job-1", True)
    assert result["output"]["digest"] == "sha256:03fbeb1896a09bced23d0f6623db3cb77dc6ad44a61553c484011bcd7ef13f62"
    assert result["progressLog"] == [
        {"step": "interpret prompt", "progress": 0.125, "elapsedMs": 250},
        {"step": "seed generator", "progress": 0.25, "elapsedMs": 500},
        {"step": "lay out rooms", "progress": 0.375, "elapsedMs": 750},
        {"step": "connect doors", "progress": 0.5, "elapsedMs": 1000},
        {"step": "place entities", "progress": 0.625, "elapsedMs": 1250},
        {"step": "light scene", "progress": 0.75, "elapsedMs": 1500},
        {"step": "dress materials", "progress": 0.875, "elapsedMs": 1750},
        {"step": "bake digest", "progress": 1.0, "elapsedMs": 2000},
    ]


def test_run_with_zero_work_ms_yields_only_the_phase_ends(monkeypatch):
    monkeypatch.setattr(worker, "time", FakeTime())
    events = list(Worker(WorkerConfig(work_ms=0)).run("j", PAYLOAD))
    assert [e["progress"] for e in events[:-1]] == [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    assert events[-1]["event"] == "result"


def test_run_progress_stays_strictly_increasing_and_within_1_when_the_clock_moves_between_readings(monkeypatch):
    """A thread can lose the CPU for a GIL switch interval (5 ms) between two lines. Here
    every clock reading is 5 ms after the previous one: a tick computed after its
    phase's deadline passed must not overshoot the phase end (or 1.0)."""
    monkeypatch.setattr(worker, "time", FakeTime(start=0.0, drift=0.005))
    events = list(Worker(WorkerConfig(work_ms=1000, progress_tick_ms=50)).run("j", PAYLOAD))
    values = [e["progress"] for e in events[:-1]]
    assert [v for v in values if not 0 < v <= 1.0] == []
    assert [(a, b) for a, b in itertools.pairwise(values) if b <= a] == []
    assert values[-1] == 1.0


def test_run_in_real_time_reports_increasing_progress_with_ticks_in_every_phase():
    events = list(Worker(WorkerConfig(work_ms=400, progress_tick_ms=10)).run("job-rt", PAYLOAD))
    progress_events, result = events[:-1], events[-1]
    values = [e["progress"] for e in progress_events]
    assert all(b > a for a, b in itertools.pairwise(values)), values
    assert values[-1] == 1.0
    for index, step in enumerate(scene.WORK_PHASES):
        inside = [e["progress"] for e in progress_events
                  if e["step"] == step and index / 8 < e["progress"] < (index + 1) / 8]
        assert inside, f"no tick inside phase {step!r}: {values}"
    assert result["output"] == scene.build_scene("a spooky hallway", 123, "doom")
    assert [(p["step"], p["progress"]) for p in result["progressLog"]] == [
        ("interpret prompt", 0.125), ("seed generator", 0.25), ("lay out rooms", 0.375), ("connect doors", 0.5),
        ("place entities", 0.625), ("light scene", 0.75), ("dress materials", 0.875), ("bake digest", 1.0)]
    elapsed = [p["elapsedMs"] for p in result["progressLog"]]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= 400


# -- the HTTP service -------------------------------------------------------------------


@pytest.fixture(scope="module")
def service():
    app = Worker(WorkerConfig(work_ms=40, progress_tick_ms=10, max_concurrent_jobs=1))
    srv = Server(("127.0.0.1", 0), worker.WorkerHandler, app)
    with serving_in_thread(srv):
        yield srv


def call(srv: Server, method: str, path: str, body: object = None, headers: dict[str, str] | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def test_healthz_answers_ok(service):
    status, _, body = call(service, "GET", "/healthz")
    assert (status, json.loads(body)) == (200, {"ok": True})


def test_process_answers_one_json_object_by_default(service):
    status, headers, body = call(service, "POST", "/process", {"jobId": "job-plain", "payload": PAYLOAD})
    answer = json.loads(body)
    assert (status, headers["Content-Type"], list(answer)) == (
        200, "application/json", ["jobId", "ok", "output", "progressLog"])
    assert (answer["jobId"], answer["ok"]) == ("job-plain", True)
    assert answer["output"] == scene.build_scene("a spooky hallway", 123, "doom")
    assert [p["progress"] for p in answer["progressLog"]] == [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]


def test_process_streams_ndjson_events_when_asked(service, logs):
    status, headers, body = call(service, "POST", "/process", {"jobId": "job-stream", "payload": PAYLOAD},
                                 {"Accept": "application/x-ndjson", "X-Request-Id": "req-stream"})
    assert (status, headers["Content-Type"], headers["Transfer-Encoding"], headers["X-Request-Id"]) == (
        200, "application/x-ndjson", "chunked", "req-stream")
    events = [json.loads(line) for line in body.decode().splitlines()]
    assert {e["event"] for e in events[:-1]} == {"progress"}
    assert [e["progress"] for e in events[:-1]][-1] == 1.0
    result = events[-1]
    assert [p["progress"] for p in result.pop("progressLog")] == [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    assert result == {"event": "result", "jobId": "job-stream", "ok": True,
                      "output": scene.build_scene("a spooky hallway", 123, "doom")}
    started = wait_for_line(logs, lambda x: x["message"] == "job started")
    assert started == {"level": "INFO", "service": "test", "message": "job started", "requestId": "req-stream",
                       "jobId": "job-stream", "seed": 123, "style": "doom"}
    finished = wait_for_line(logs, lambda x: x["message"] == "job finished")
    assert isinstance(finished.pop("durationMs"), int)
    assert finished == {"level": "INFO", "service": "test", "message": "job finished",
                        "requestId": "req-stream", "jobId": "job-stream"}


def test_process_rejects_an_invalid_payload_with_400(service):
    status, _, body = call(service, "POST", "/process", {"jobId": "j", "payload": {"prompt": "p", "seed": "1"}})
    assert (status, json.loads(body)) == (
        400, {"error": {"code": "invalid_request", "message": "payload: seed must be an integer, got \"1\""}})


def test_process_is_503_with_retry_after_while_every_slot_is_busy(service):
    assert service.app.slots.acquire(blocking=False)
    try:
        status, headers, body = call(service, "POST", "/process", {"jobId": "j", "payload": PAYLOAD})
    finally:
        service.app.slots.release()
    assert (status, headers["Retry-After"], json.loads(body)) == (503, "1", {"error": {
        "code": "busy", "message": "the worker is running its limit of 1 jobs; retry later"}})
    assert call(service, "POST", "/process", {"jobId": "j", "payload": PAYLOAD})[0] == 200


def test_process_frees_its_slot_after_a_bad_request(service):
    call(service, "POST", "/process", {"jobId": "j", "payload": {"prompt": "p"}})
    assert service.app.slots.acquire(blocking=False)
    service.app.slots.release()


def test_get_on_process_is_405_allowing_post(service):
    status, headers, _ = call(service, "GET", "/process")
    assert (status, headers["Allow"]) == (405, "POST")


# -- the HTTP service with WORKER_TOKEN --------------------------------------------------


@pytest.fixture(scope="module")
def guarded():
    app = Worker(WorkerConfig(work_ms=40, progress_tick_ms=10, max_concurrent_jobs=1, worker_token=TOKEN))
    srv = Server(("127.0.0.1", 0), worker.WorkerHandler, app)
    with serving_in_thread(srv):
        yield srv


def test_process_with_the_token_runs_the_job(guarded):
    status, _, body = call(guarded, "POST", "/process", {"jobId": "j-auth", "payload": PAYLOAD},
                           {"Authorization": f"Bearer {TOKEN}"})
    assert (status, json.loads(body)["ok"]) == (200, True)


@pytest.mark.parametrize(("headers", "www_authenticate", "message"), [
    ({}, "Bearer", "this route needs Authorization: Bearer <token>"),
    ({"Authorization": "Bearer worker-token-0123456789abcdeX"}, 'Bearer error="invalid_token"',
     "the Authorization header does not hold the bearer token this route needs"),
])
def test_process_without_the_token_is_401_and_never_takes_a_slot(guarded, logs, headers, www_authenticate, message):
    """Checked before the body is read or a slot taken: with the only slot busy, the answer
    is still 401 (not 503 busy), and no job starts."""
    assert guarded.app.slots.acquire(blocking=False)
    try:
        status, response_headers, body = call(guarded, "POST", "/process", {"jobId": "j-flood", "payload": PAYLOAD},
                                              headers)
    finally:
        guarded.app.slots.release()
    assert (status, response_headers["WWW-Authenticate"], json.loads(body)) == (
        401, www_authenticate, {"error": {"code": "unauthorized", "message": message}})
    assert [x for x in logs.lines() if x["message"] == "job started"] == []


def test_healthz_stays_open_with_a_token(guarded):
    assert call(guarded, "GET", "/healthz")[::2] == (200, b'{"ok":true}')
