"""Unit tests for orchestrator: configuration, the public view of a job, the route table,
and the handlers in-process (a real server thread, a MemoryStore and a fake dispatcher)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys

import pytest

import dynamostore
import jobapi
import orchestrator
import store
from config import ConfigError
from conftest import ROOT, serving_in_thread
from dispatcher import DispatchConfig, Dispatcher
from httpkit import HTTPError
from httpserver import Server
from orchestrator import OrchestratorConfig
from polling import wait_until
from watch import JobWatch, ObservedStore
from workerclient import WorkerClient

WORKER_TOKEN = "worker-token-0123456789abcdef"
API_TOKEN = "api-token-0123456789abcdef"
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


# -- configuration ----------------------------------------------------------------------


def test_config_defaults_select_the_memory_store_and_write_every_progress_step():
    config = OrchestratorConfig.from_env({})
    assert (config.host, config.port, config.log_level, config.jobs_table_name, config.job_ttl_days,
            config.memory_max_jobs, config.limits.max_body_bytes, config.shutdown_grace_seconds, config.environment,
            config.metrics_namespace) == ("127.0.0.1", 8080, "INFO", None, 7, 10000, 16384, 20.0, "local", "GhostEngine")
    assert config.dispatch == DispatchConfig(
        worker_url="http://127.0.0.1:8081", max_concurrent_jobs=8, max_queued_jobs=1000, retry_budget_seconds=120.0,
        busy_budget_seconds=300.0, retry_backoff_ms=500, retry_backoff_max_ms=10_000,
        worker_connect_timeout_seconds=2.0, worker_timeout_seconds=10.0, lease_seconds=30.0,
        max_job_attempts=3, progress_write_interval_ms=0, reaper_interval_seconds=5.0)


def test_config_with_a_table_writes_progress_at_most_once_a_second_by_default():
    config = OrchestratorConfig.from_env({"JOBS_TABLE_NAME": "ghost-engine-jobs-dev"})
    assert (config.jobs_table_name, config.dispatch.progress_write_interval_ms) == ("ghost-engine-jobs-dev", 1000)


@pytest.mark.parametrize(("environ", "expected"), [
    ({"JOBS_TABLE_NAME": ""}, (None, 0)),
    ({"PROGRESS_WRITE_INTERVAL_MS": "250"}, (None, 250)),
    ({"JOBS_TABLE_NAME": "t", "PROGRESS_WRITE_INTERVAL_MS": "0"}, ("t", 0)),
])
def test_config_progress_write_interval_can_be_set_either_way(environ, expected):
    config = OrchestratorConfig.from_env(environ)
    assert (config.jobs_table_name, config.dispatch.progress_write_interval_ms) == expected


def test_config_reads_every_variable():
    config = OrchestratorConfig.from_env({
        "HOST": "0.0.0.0", "PORT": "9000", "LOG_LEVEL": "debug", "JOBS_TABLE_NAME": "jobs", "JOB_TTL_DAYS": "2",
        "MEMORY_MAX_JOBS": "50", "MAX_BODY_BYTES": "4096", "SHUTDOWN_GRACE_SECONDS": "3",
        "WORKER_URL": "http://worker.ghost-engine-dev.local:8081", "MAX_CONCURRENT_JOBS": "4",
        "MAX_QUEUED_JOBS": "20", "WORKER_RETRY_BUDGET_SECONDS": "30", "WORKER_BUSY_BUDGET_SECONDS": "60",
        "RETRY_BACKOFF_MS": "0", "RETRY_BACKOFF_MAX_MS": "2000",
        "WORKER_CONNECT_TIMEOUT_SECONDS": "0.5", "WORKER_TIMEOUT_SECONDS": "3.5", "JOB_LEASE_SECONDS": "12",
        "MAX_JOB_ATTEMPTS": "2", "PROGRESS_WRITE_INTERVAL_MS": "100", "REAPER_INTERVAL_SECONDS": "0.05",
        "ENVIRONMENT": "dev", "METRICS_NAMESPACE": "GhostEngineTest",
    })
    assert (config.host, config.port, config.log_level, config.jobs_table_name, config.job_ttl_days,
            config.memory_max_jobs, config.limits.max_body_bytes, config.shutdown_grace_seconds, config.environment,
            config.metrics_namespace) == ("0.0.0.0", 9000, "DEBUG", "jobs", 2, 50, 4096, 3.0, "dev", "GhostEngineTest")
    assert config.dispatch == DispatchConfig(
        worker_url="http://worker.ghost-engine-dev.local:8081", max_concurrent_jobs=4, max_queued_jobs=20,
        retry_budget_seconds=30.0, busy_budget_seconds=60.0, retry_backoff_ms=0, retry_backoff_max_ms=2000,
        worker_connect_timeout_seconds=0.5, worker_timeout_seconds=3.5,
        lease_seconds=12.0, max_job_attempts=2, progress_write_interval_ms=100, reaper_interval_seconds=0.05)


@pytest.mark.parametrize(("environ", "message"), [
    ({"PORT": "eighty"}, "PORT must be an integer, got 'eighty'"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"),
    ({"JOB_TTL_DAYS": "0"}, "JOB_TTL_DAYS must be >= 1, got 0"),
    ({"MEMORY_MAX_JOBS": "0"}, "MEMORY_MAX_JOBS must be >= 1, got 0"),
    ({"MAX_BODY_BYTES": "100"}, "MAX_BODY_BYTES must be >= 256, got 100"),
    ({"MAX_CONCURRENT_JOBS": "0"}, "MAX_CONCURRENT_JOBS must be >= 1, got 0"),
    ({"MAX_QUEUED_JOBS": "none"}, "MAX_QUEUED_JOBS must be an integer, got 'none'"),
    ({"WORKER_RETRY_BUDGET_SECONDS": "-1"}, "WORKER_RETRY_BUDGET_SECONDS must be >= 0.0, got -1"),
    ({"WORKER_BUSY_BUDGET_SECONDS": "forever"}, "WORKER_BUSY_BUDGET_SECONDS must be a number, got 'forever'"),
    ({"RETRY_BACKOFF_MS": "-5"}, "RETRY_BACKOFF_MS must be >= 0, got -5"),
    ({"RETRY_BACKOFF_MAX_MS": "1.5"}, "RETRY_BACKOFF_MAX_MS must be an integer, got '1.5'"),
    ({"WORKER_CONNECT_TIMEOUT_SECONDS": "0"}, "WORKER_CONNECT_TIMEOUT_SECONDS must be >= 0.1, got 0"),
    ({"WORKER_TIMEOUT_SECONDS": "ten"}, "WORKER_TIMEOUT_SECONDS must be a number, got 'ten'"),
    ({"JOB_LEASE_SECONDS": "-3"}, "JOB_LEASE_SECONDS must be >= 0.0, got -3"),
    ({"MAX_JOB_ATTEMPTS": "0"}, "MAX_JOB_ATTEMPTS must be >= 1, got 0"),
    ({"PROGRESS_WRITE_INTERVAL_MS": "-1"}, "PROGRESS_WRITE_INTERVAL_MS must be >= 0, got -1"),
    ({"REAPER_INTERVAL_SECONDS": "0.01"}, "REAPER_INTERVAL_SECONDS must be >= 0.05, got 0.01"),
    ({"SHUTDOWN_GRACE_SECONDS": "-1"}, "SHUTDOWN_GRACE_SECONDS must be >= 0.0, got -1"),
])
def test_config_errors_name_the_variable(environ, message):
    with pytest.raises(ConfigError) as info:
        OrchestratorConfig.from_env(environ)
    assert str(info.value) == message


@pytest.mark.parametrize(("environ", "message"), [
    ({"JOB_LEASE_SECONDS": "2", "WORKER_TIMEOUT_SECONDS": "1"},
     "JOB_LEASE_SECONDS must be at least 3, got 2: renewals fall due every third of the lease and need the rest "
     "to reach the store"),
    ({"JOB_LEASE_SECONDS": "10"},
     "WORKER_TIMEOUT_SECONDS (10) must be less than JOB_LEASE_SECONDS (10): a silent worker must be noticed within "
     "one lease"),
    ({"JOBS_TABLE_NAME": "t", "JOB_LEASE_SECONDS": "3", "WORKER_TIMEOUT_SECONDS": "2"},
     "PROGRESS_WRITE_INTERVAL_MS (1000) must be less than a third of JOB_LEASE_SECONDS (3 s): progress writes are "
     "lease renewals"),
], ids=["lease-too-short", "worker-timeout-not-below-lease", "dynamodb-default-progress-interval-too-long"])
def test_config_refuses_lease_settings_that_make_a_live_job_look_dead(environ, message):
    with pytest.raises(ConfigError) as info:
        OrchestratorConfig.from_env(environ)
    assert str(info.value) == message


def test_config_reads_both_tokens_and_keeps_them_out_of_its_repr():
    config = OrchestratorConfig.from_env({"WORKER_TOKEN": WORKER_TOKEN, "API_TOKEN": API_TOKEN})
    assert (config.worker_token, config.api_token) == (WORKER_TOKEN, API_TOKEN)
    assert WORKER_TOKEN not in repr(config) and API_TOKEN not in repr(config)
    assert (OrchestratorConfig.from_env({}).worker_token, OrchestratorConfig.from_env({}).api_token) == (None, None)


def test_config_refuses_an_api_token_equal_to_the_worker_token():
    with pytest.raises(ConfigError) as info:
        OrchestratorConfig.from_env({"WORKER_TOKEN": WORKER_TOKEN, "API_TOKEN": WORKER_TOKEN})
    assert str(info.value) == (
        "API_TOKEN and WORKER_TOKEN must differ: an API client must not be able to call the worker")


def test_config_rejects_a_port_above_65535():
    """Otherwise bind() raises OverflowError at start-up: a traceback, not the one-line
    configuration error and exit 2."""
    with pytest.raises(ConfigError) as info:
        OrchestratorConfig.from_env({"PORT": "70000"})
    assert "PORT" in str(info.value)


def test_build_wires_a_memory_store_and_a_dispatcher_with_a_unique_owner():
    config = OrchestratorConfig.from_env({"WORKER_URL": "http://127.0.0.1:9"})
    first, second = orchestrator.build(config), orchestrator.build(config)
    assert isinstance(first.store, ObservedStore) and first.store.shared is False
    assert (first.watch.poll_seconds, first.watch.max_waiting) == (None, 256)  # every write is seen here
    assert isinstance(first.dispatcher, Dispatcher)
    assert first.dispatcher.client.base_url == "http://127.0.0.1:9"
    assert first.dispatcher.lease_ms == 30000
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}-{os.getpid()}-[0-9a-f]{{8}}", first.dispatcher.owner)
    assert first.dispatcher.owner != second.dispatcher.owner


def test_build_rejects_a_worker_url_that_is_not_http():
    with pytest.raises(ValueError) as info:
        orchestrator.build(OrchestratorConfig.from_env({"WORKER_URL": "worker:8081"}))
    assert str(info.value) == "WORKER_URL must be an http:// URL, got 'worker:8081'"


# -- public view, routes, error map -----------------------------------------------------

JOB = {
    "jobId": "0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f", "state": "running", "progress": 0.5, "result": None,
    "error": None, "createdAt": "2026-11-28T09:00:00.000Z", "updatedAt": "2026-11-28T09:00:01.000Z",
    "input": {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}, "attempts": 1,
    "owner": "host-1-abcd", "leaseExpiresAt": 1796000000000, "activeShard": "active", "ttl": 1796600000,
}


def test_public_view_shows_the_job_without_lease_internals():
    assert jobapi.public_view(JOB) == {
        "jobId": "0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f", "state": "running", "progress": 0.5, "result": None,
        "error": None, "createdAt": "2026-11-28T09:00:00.000Z", "updatedAt": "2026-11-28T09:00:01.000Z",
        "input": {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}, "attempts": 1,
    }


def test_public_view_has_every_public_key_even_when_missing():
    assert jobapi.public_view({"jobId": "j", "state": "queued"}) == {
        "jobId": "j", "state": "queued", "progress": None, "result": None, "error": None,
        "createdAt": None, "updatedAt": None, "input": None, "attempts": None}


def test_router_matches_status_ids_and_answers_405_with_allow():
    router = orchestrator.OrchestratorHandler.router
    assert router.match("GET", "/status/abc") == (jobapi.job_status, {"job_id": "abc"})
    assert router.match("GET", "/jobs") == (jobapi.list_jobs, {})
    with pytest.raises(HTTPError) as info:
        router.match("POST", "/jobs")
    assert (info.value.status, info.value.headers) == (405, {"Allow": "GET, HEAD"})
    with pytest.raises(HTTPError) as info:
        router.match("GET", "/generate-scene")
    assert (info.value.status, info.value.headers) == (405, {"Allow": "POST"})


def test_a_store_outage_maps_to_503_store_unavailable_naming_no_table_or_cause():
    exc = store.StoreUnavailable("DynamoDB table jobs-x: ThrottlingException: slow down")
    [to_http] = [f for t, f in orchestrator.OrchestratorHandler.error_map.items() if isinstance(exc, t)]
    mapped = to_http(exc)
    assert (mapped.status, mapped.body(), mapped.headers) == (
        503, {"error": {"code": "store_unavailable", "message": "the job store is unavailable; retry shortly"}},
        {"Retry-After": "1"})


def test_a_missing_table_maps_to_500_store_misconfigured_without_naming_the_table():
    exc = store.StoreMisconfigured("DynamoDB table jobs-x does not exist in us-east-1")
    [to_http] = [f for t, f in orchestrator.OrchestratorHandler.error_map.items() if isinstance(exc, t)]
    mapped = to_http(exc)
    assert (mapped.status, mapped.body(), mapped.headers) == (
        500, {"error": {"code": "store_misconfigured",
                        "message": "the job store is not set up; see the service log for this requestId"}}, {})


def test_open_store_picks_dynamodb_only_when_a_table_is_named():
    assert isinstance(orchestrator.open_store(OrchestratorConfig()), store.MemoryStore)
    dynamo = orchestrator.open_store(OrchestratorConfig(jobs_table_name="jobs-x", job_ttl_days=2))
    assert isinstance(dynamo, dynamostore.DynamoStore)
    assert (dynamo.table_name, dynamo.ttl_seconds) == ("jobs-x", 172800)


# -- handlers, in-process ---------------------------------------------------------------


class UnstartedDispatcher(Dispatcher):
    """A real Dispatcher whose threads never start: ``create`` records jobs in the store and
    queues them, and ``submitted`` lists what was queued, in order."""

    def __init__(self, job_store: store.JobStore, max_queued_jobs: int = 1000):
        super().__init__(job_store, WorkerClient("http://127.0.0.1:9", 1, 1),
                         DispatchConfig(max_queued_jobs=max_queued_jobs), owner="orch-test")
        self.submitted: list[tuple[str, str | None]] = []

    def submit(self, job_id: str, request_id: str | None) -> bool:
        self.submitted.append((job_id, request_id))
        return super().submit(job_id, request_id)


@contextlib.contextmanager
def serving(job_store, dispatcher=None, config: OrchestratorConfig | None = None):
    dispatcher = dispatcher or UnstartedDispatcher(job_store)
    app = orchestrator.Orchestrator(config or OrchestratorConfig(), job_store, dispatcher, JobWatch(job_store, None, 256))
    srv = Server(("127.0.0.1", 0), orchestrator.OrchestratorHandler, app)
    with serving_in_thread(srv) as port:
        yield port


def call(port: int, method: str, path: str, body: object = None, headers: dict[str, str] | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.headers, json.loads(resp.read())
    finally:
        conn.close()


def test_generate_scene_records_a_queued_job_submits_it_and_answers_202_with_location():
    job_store = store.MemoryStore()
    dispatcher = UnstartedDispatcher(job_store)
    with serving(job_store, dispatcher) as port:
        status, headers, body = call(port, "POST", "/generate-scene",
                                     {"prompt": "a spooky hallway", "seed": 123, "style": "doom"},
                                     {"X-Request-Id": "req-gen"})
    job_id = body["jobId"]
    assert UUID4_RE.match(job_id)
    assert (status, body, headers["Location"]) == (
        202, {"jobId": job_id, "statusUrl": f"/status/{job_id}"}, f"/status/{job_id}")
    assert dispatcher.submitted == [(job_id, "req-gen")]
    job = job_store.get(job_id)
    assert (job["state"], job["input"], job["owner"], job["attempts"]) == (
        "queued", {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}, "orch-test", 0)


def test_generate_scene_without_a_seed_records_a_chosen_json_safe_seed():
    job_store = store.MemoryStore()
    with serving(job_store) as port:
        seeds = [job_store.get(call(port, "POST", "/generate-scene", {"prompt": "p"})[2]["jobId"])["input"]["seed"]
                 for _ in range(5)]
    assert all(isinstance(s, int) and 0 <= s < 2**53 for s in seeds), seeds
    assert len(set(seeds)) == 5


def test_generate_scene_rejects_invalid_input_with_400_naming_the_field():
    job_store = store.MemoryStore()
    dispatcher = UnstartedDispatcher(job_store)
    with serving(job_store, dispatcher) as port:
        status, _, body = call(port, "POST", "/generate-scene", {"prompt": "p", "seed": 1.5})
    assert (status, body) == (400, {"error": {"code": "invalid_request", "message": "seed must be an integer, got 1.5"}})
    assert (len(job_store), dispatcher.submitted) == (0, [])


def test_generate_scene_is_503_queue_full_when_the_dispatcher_has_no_room():
    job_store = store.MemoryStore()
    with serving(job_store, UnstartedDispatcher(job_store, max_queued_jobs=1)) as port:
        assert call(port, "POST", "/generate-scene", {"prompt": "p"})[0] == 202
        status, headers, body = call(port, "POST", "/generate-scene", {"prompt": "p"})
    assert (status, headers["Retry-After"], body) == (503, "5", {"error": {
        "code": "queue_full", "message": "too many jobs are waiting; retry in a few seconds"}})
    assert len(job_store) == 1


def test_generate_scene_is_503_when_the_memory_store_is_full_of_active_jobs():
    job_store = store.MemoryStore(max_jobs=1)
    dispatcher = UnstartedDispatcher(job_store)
    with serving(job_store, dispatcher) as port:
        assert call(port, "POST", "/generate-scene", {"prompt": "p"})[0] == 202
        status, headers, body = call(port, "POST", "/generate-scene", {"prompt": "p"})
    assert (status, headers["Retry-After"], body) == (503, "1", {"error": {
        "code": "store_full", "message": "this orchestrator holds its maximum of active jobs; retry shortly"}})
    assert len(dispatcher.submitted) == 1


def test_status_shows_the_public_view_of_the_job():
    job_store = store.MemoryStore()
    job_store.create("0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f", {"prompt": "p", "seed": 9, "style": None}, "orch-test", 30000)
    with serving(job_store) as port:
        status, _, body = call(port, "GET", "/status/0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f")
    assert status == 200
    assert TIMESTAMP_RE.match(body.pop("createdAt")) and TIMESTAMP_RE.match(body.pop("updatedAt"))
    assert body == {"jobId": "0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f", "state": "queued", "progress": 0.0,
                    "result": None, "error": None, "input": {"prompt": "p", "seed": 9, "style": None}, "attempts": 0}


@pytest.mark.parametrize("job_id", ["not-a-uuid", "0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e70", "0D4C3F0E-8F5A-4B8E-9C1D-2A3B4C5D6E7F"])
def test_status_of_an_unknown_or_malformed_id_is_404(job_id):
    job_store = store.MemoryStore()
    job_store.create("0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f", {"prompt": "p", "seed": 9, "style": None}, "o", 30000)
    with serving(job_store) as port:
        status, _, body = call(port, "GET", f"/status/{job_id}")
    assert (status, body) == (404, {"error": {"code": "not_found", "message": f"no job with id {job_id!r}"}})


class ClockedStore(store.MemoryStore):
    """A MemoryStore whose jobs are created a second apart, from 2027-01-15T08:00:00Z."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        super().__init__(clock=lambda: self.now)

    def create(self, *args, **kwargs):
        job = super().create(*args, **kwargs)
        self.now += 1
        return job


def test_list_jobs_answers_public_views_newest_first_and_a_cursor_to_the_rest():
    job_store = ClockedStore()
    ids = [f"0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7{i}" for i in range(3)]
    for i, job_id in enumerate(ids):
        job_store.create(job_id, {"prompt": "p", "seed": i, "style": None}, "orch-test", 30000)
    with serving(job_store) as port:
        status, headers, first = call(port, "GET", "/jobs?limit=2")
        second = call(port, "GET", f"/jobs?limit=2&cursor={first['nextCursor']}")
    assert (status, headers["Content-Type"], [j["jobId"] for j in first["jobs"]]) == (
        200, "application/json", [ids[2], ids[1]])
    assert first["jobs"][0] == {
        "jobId": ids[2], "state": "queued", "progress": 0.0, "result": None, "error": None,
        "createdAt": "2027-01-15T08:00:02.000Z", "updatedAt": "2027-01-15T08:00:02.000Z",
        "input": {"prompt": "p", "seed": 2, "style": None}, "attempts": 0}
    assert first["nextCursor"] == ("auijew3X1Vt7ImsiOiIyMDI3LTAxLTE1VDA4OjAwOjAxLjAwMFojMGQ0YzNmMGUtOGY1YS00YjhlLTljMWQt"
                                   "MmEzYjRjNWQ2ZTcxIiwicyI6bnVsbH0")
    assert second[::2] == (200, {"jobs": [jobapi.public_view(job_store.get(ids[0]))], "nextCursor": None})


def test_list_jobs_filters_by_state_and_an_empty_store_lists_nothing():
    job_store = store.MemoryStore()
    with serving(job_store) as port:
        assert call(port, "GET", "/jobs")[::2] == (200, {"jobs": [], "nextCursor": None})
        job_store.create("0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f", {"prompt": "p", "seed": 9, "style": None}, "o", 1)
        assert call(port, "GET", "/jobs?state=failed")[::2] == (200, {"jobs": [], "nextCursor": None})
        assert [j["jobId"] for j in call(port, "GET", "/jobs?state=queued")[2]["jobs"]] == [
            "0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f"]


def test_list_jobs_refuses_bad_parameters_with_400_naming_them():
    with serving(store.MemoryStore()) as port:
        status, _, body = call(port, "GET", "/jobs?limit=500&state=done")
        unknown = call(port, "GET", "/jobs?offset=20")
    assert (status, body) == (400, {"error": {"code": "invalid_request",
                                              "message": "limit must be an integer from 1 to 100, got '500'"}})
    assert unknown[::2] == (400, {"error": {"code": "invalid_request", "message": (
        "unknown query parameter 'offset'; accepted: state, limit, cursor")}})


def test_list_jobs_is_503_when_the_store_is_unavailable():
    class Down(store.MemoryStore):
        def list_jobs(self, state, limit, before):
            raise store.StoreUnavailable("DynamoDB table jobs-x: ThrottlingException: slow down")

    with serving(Down()) as port:
        status, headers, body = call(port, "GET", "/jobs")
    assert (status, headers["Retry-After"], body) == (503, "1", {"error": {
        "code": "store_unavailable", "message": "the job store is unavailable; retry shortly"}})


def test_healthz_answers_ok():
    with serving(store.MemoryStore()) as port:
        assert call(port, "GET", "/healthz")[::2] == (200, {"ok": True})


class ReadinessStub(UnstartedDispatcher):
    def __init__(self, job_store: store.JobStore, answer: tuple[bool, dict]):
        super().__init__(job_store)
        self.answer = answer

    def readiness(self):
        return self.answer


PARTS_OK = {"reaper": {"ok": True, "lastSuccessSecondsAgo": 1.5, "consecutiveFailures": 0},
            "leaseKeeper": {"ok": True, "lastSuccessSecondsAgo": 0.2, "consecutiveFailures": 0},
            "dispatch": {"ok": True, "threadsAlive": 8}}


def test_readyz_answers_200_with_each_loop_when_all_work():
    job_store = store.MemoryStore()
    with serving(job_store, ReadinessStub(job_store, (True, PARTS_OK))) as port:
        assert call(port, "GET", "/readyz")[::2] == (200, {"ok": True, "loops": PARTS_OK})


def test_readyz_answers_503_naming_the_failing_loops_and_no_cause():
    parts = {**PARTS_OK, "reaper": {"ok": False, "lastSuccessSecondsAgo": None, "consecutiveFailures": 4},
             "dispatch": {"ok": False, "threadsAlive": 7}}
    job_store = store.MemoryStore()
    with serving(job_store, ReadinessStub(job_store, (False, parts))) as port:
        status, _, body = call(port, "GET", "/readyz")
    assert (status, body) == (503, {
        "ok": False, "error": {"code": "not_ready", "message": "not ready: dispatch, reaper not working; see the "
                                                               "service log"},
        "loops": parts})


def test_readyz_of_a_started_orchestrator_turns_200_after_the_first_loop_passes():
    app = orchestrator.build(OrchestratorConfig.from_env({"WORKER_URL": "http://127.0.0.1:9"}))
    app.dispatcher.start()
    try:
        srv = Server(("127.0.0.1", 0), orchestrator.OrchestratorHandler, app)
        with serving_in_thread(srv) as port:
            status, _, body = wait_until(lambda: (r := call(port, "GET", "/readyz"))[0] == 200 and r, 10, "ready")
    finally:
        app.dispatcher.stop(1.0)
    assert (body["ok"], sorted(body["loops"]), body["loops"]["dispatch"]) == (
        True, ["dispatch", "leaseKeeper", "reaper"], {"ok": True, "threadsAlive": 8})


def test_memory_mode_never_imports_boto3():
    """boto3 is the one runtime dependency and is loaded only for the DynamoDB store."""
    code = ("import sys, orchestrator; orchestrator.build(orchestrator.OrchestratorConfig()); "
            "print(sorted(m for m in ('boto3', 'botocore', 'dynamostore') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr


def test_with_an_api_token_the_job_routes_need_it_and_health_stays_open():
    job_store = store.MemoryStore()
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    with serving(job_store, config=OrchestratorConfig(api_token=API_TOKEN)) as port:
        refused = call(port, "POST", "/generate-scene", {"prompt": "p"})
        status_refused = call(port, "GET", "/status/0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f")
        list_refused = call(port, "GET", "/jobs")
        accepted = call(port, "POST", "/generate-scene", {"prompt": "p"}, bearer)
        shown = call(port, "GET", accepted[2]["statusUrl"], headers=bearer)
        health = call(port, "GET", "/healthz")
    missing = {"error": {"code": "unauthorized", "message": "this route needs Authorization: Bearer <token>"}}
    assert (refused[0], refused[1]["WWW-Authenticate"], refused[2]) == (401, "Bearer", missing)
    assert (status_refused[0], status_refused[2]) == (401, missing)
    assert (list_refused[0], list_refused[2]) == (401, missing)
    assert (accepted[0], shown[0], shown[2]["state"], health[::2]) == (202, 200, "queued", (200, {"ok": True}))
    assert len(job_store) == 1


def test_the_public_paths_are_health_readiness_the_api_description_and_the_console_files():
    assert orchestrator.OrchestratorHandler.public_paths == {
        "/healthz", "/readyz", "/openapi.json",
        "/", "/console", "/console/app.js", "/console/app.css", "/console/icon.svg", "/favicon.ico"}
