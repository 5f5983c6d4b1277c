"""Unit tests for dispatcher: WorkerClient against scripted fake workers, and Dispatcher
with a MemoryStore (retries, give-up, progress, leases, hand-back, reaper)."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest

import scene
import worker
from dispatcher import DispatchConfig, Dispatcher, WorkerClient, WorkerError
from httpkit import Server
from store import MemoryStore
from conftest import serving_in_thread
from logcapture import capture_logs, wait_for_line

OWNER = "orch-test"
PAYLOAD = {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}
OUTPUT = {"seed": 123, "scene": {"title": "Fake"}, "digest": "sha256:fake"}


# -- logs -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def logs():
    with capture_logs("dispatch-test") as sink:
        yield sink


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"{what} not reached within {timeout} s")


# -- fake workers -----------------------------------------------------------------------

Answer = Callable[[BaseHTTPRequestHandler], None]


def line(obj: dict) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def progress(value: float) -> bytes:
    return line({"event": "progress", "jobId": "j", "step": "s", "progress": value})


RESULT = line({"event": "result", "jobId": "j", "ok": True, "output": OUTPUT, "progressLog": []})


def error_json(status: int, message: str) -> Answer:
    def answer(h: BaseHTTPRequestHandler) -> None:
        body = json.dumps({"error": {"code": "some_code", "message": message}}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return answer


def error_text(status: int, text: str) -> Answer:
    def answer(h: BaseHTTPRequestHandler) -> None:
        body = text.encode()
        h.send_response(status)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return answer


def stream(*lines: bytes, gate: threading.Event | None = None, after_gate: tuple[bytes, ...] = (),
           end: bool = True) -> Answer:
    """A chunked NDJSON answer: ``lines``, then (if ``gate``) wait for it and send
    ``after_gate``; ``end`` sends the last chunk, else the connection just closes."""
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/x-ndjson")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for data in lines:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        if gate is not None:
            gate.wait(30)
            for data in after_gate:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        if end:
            h.wfile.write(b"0\r\n\r\n")
        h.close_connection = True
    return answer


def stream_cut_mid_chunk(*lines: bytes) -> Answer:
    """A chunked answer whose last chunk announces 100 bytes, sends 12 and closes."""
    def answer(h: BaseHTTPRequestHandler) -> None:
        stream(*lines, end=False)(h)
        h.wfile.write(b"64\r\n" + b'{"event":"pr')
    return answer


class FakeWorker:
    """An http.server on 127.0.0.1:0 answering each request with the next scripted
    answer (the last one repeats) and recording what it was sent."""

    def __init__(self, *answers: Answer):
        self.answers = list(answers)
        self.requests: list[dict] = []
        self.gates: list[threading.Event] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    answer = fake.answers[min(len(fake.requests), len(fake.answers)) - 1]
                answer(self)

            def log_message(self, format, *args):  # noqa: A002
                pass

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def gate(self) -> threading.Event:
        event = threading.Event()
        self.gates.append(event)
        return event

    def close(self) -> None:
        for event in self.gates:
            event.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fakes(dispatchers):
    """Makes FakeWorkers and closes them after the test (before its dispatchers stop, so
    a dispatcher thread waiting on a fake's gate is let go first)."""
    made: list[FakeWorker] = []

    def make(*answers: Answer) -> FakeWorker:
        made.append(FakeWorker(*answers))
        return made[-1]

    yield make
    for fake in made:
        fake.close()


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel does) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def refused_port():
    """A port bound without listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def client(url: str, connect_timeout: float = 2.0, idle_timeout: float = 5.0) -> WorkerClient:
    return WorkerClient(url, connect_timeout, idle_timeout)


def run_client(c: WorkerClient, job_id: str = "j", request_id: str | None = "req-1") -> list[dict]:
    return list(c.process(job_id, PAYLOAD, request_id))


def worker_error(c: WorkerClient) -> WorkerError:
    with pytest.raises(WorkerError) as info:
        run_client(c)
    return info.value


# -- WorkerClient -----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://worker:8081", "worker:8081", "http://", "ftp://worker"])
def test_client_rejects_urls_that_are_not_http(url):
    with pytest.raises(ValueError) as info:
        WorkerClient(url, 1, 1)
    assert str(info.value) == f"WORKER_URL must be an http:// URL, got {url!r}"


def test_client_yields_events_up_to_the_result_and_sends_the_job(fakes):
    fake = fakes(stream(progress(0.25), RESULT, progress(0.75)))
    events = run_client(client(fake.url), job_id="job-7", request_id="req-7")
    assert events == [
        {"event": "progress", "jobId": "j", "step": "s", "progress": 0.25},
        {"event": "result", "jobId": "j", "ok": True, "output": OUTPUT, "progressLog": []},
    ]
    [request] = fake.requests
    assert (request["path"], request["body"]) == ("/process", {"jobId": "job-7", "payload": PAYLOAD})
    assert (request["headers"]["Accept"], request["headers"]["Content-Type"], request["headers"]["X-Request-Id"]) == (
        "application/x-ndjson", "application/json", "req-7")


def test_client_appends_process_to_the_url_path_and_omits_an_absent_request_id(fakes):
    fake = fakes(stream(RESULT))
    run_client(client(fake.url + "/base/"), request_id=None)
    [request] = fake.requests
    assert request["path"] == "/base/process"
    assert "X-Request-Id" not in request["headers"]


@pytest.mark.parametrize(("answer", "message", "transient"), [
    (error_json(500, "internal error; see the service log for this requestId"),
     "worker answered HTTP 500: internal error; see the service log for this requestId", True),
    (error_json(503, "the worker is running its limit of 16 jobs; retry later"),
     "worker answered HTTP 503: the worker is running its limit of 16 jobs; retry later", True),
    (error_json(429, "slow down"), "worker answered HTTP 429: slow down", True),
    (error_text(502, "<html>bad gateway</html>"), "worker answered HTTP 502: <html>bad gateway</html>", True),
    (error_json(400, "payload: seed is required"), "worker answered HTTP 400: payload: seed is required", False),
    (error_json(404, "no such path: /process"), "worker answered HTTP 404: no such path: /process", False),
], ids=["500", "503", "429", "502-html", "400", "404"])
def test_client_http_errors_carry_the_worker_message_and_5xx_429_are_transient(fakes, answer, message, transient):
    fake = fakes(answer)
    err = worker_error(client(fake.url))
    assert (str(err), err.transient) == (message, transient)


def test_client_malformed_line_is_permanent(fakes):
    fake = fakes(stream(progress(0.1), b"not json\n"))
    err = worker_error(client(fake.url))
    assert (str(err), err.transient) == ("worker sent a malformed line: b'not json\\n'", False)


def test_client_event_without_a_type_is_permanent(fakes):
    fake = fakes(stream(b'{"progress": 0.5}\n'))
    err = worker_error(client(fake.url))
    assert (str(err), err.transient) == ("worker sent an event without a type: b'{\"progress\": 0.5}\\n'", False)


def test_client_stream_ended_before_a_result_is_transient(fakes):
    fake = fakes(stream(progress(0.5)))
    err = worker_error(client(fake.url))
    assert (str(err), err.transient) == (f"worker at {fake.url} closed the stream before sending a result", True)


def test_client_connection_closed_between_lines_is_transient(fakes):
    fake = fakes(stream(progress(0.5), end=False))
    err = worker_error(client(fake.url))
    assert (str(err), err.transient) == (f"worker at {fake.url} closed the stream before sending a result", True)


def test_client_connection_dropped_mid_line_is_transient(fakes):
    fake = fakes(stream_cut_mid_chunk(progress(0.5)))
    err = worker_error(client(fake.url))
    assert err.transient is True
    assert str(err).startswith(f"connection to worker at {fake.url} broke mid-job: IncompleteRead("), str(err)


def test_client_worker_that_never_answers_is_transient_after_the_idle_timeout(silent_port):
    url = f"http://127.0.0.1:{silent_port}"
    err = worker_error(client(url, idle_timeout=0.3))
    assert (str(err), err.transient) == (f"worker at {url} did not answer within 0.3 s", True)


def test_client_stream_that_goes_silent_is_transient_after_the_idle_timeout(fakes):
    fake = fakes()
    fake.answers.append(stream(progress(0.5), gate=fake.gate()))
    events: list[dict] = []
    with pytest.raises(WorkerError) as info:
        for event in client(fake.url, idle_timeout=0.3).process("j", PAYLOAD, None):
            events.append(event)
    assert events == [{"event": "progress", "jobId": "j", "step": "s", "progress": 0.5}]
    assert (str(info.value), info.value.transient) == (f"worker at {fake.url} sent nothing for 0.3 s", True)


def test_client_refused_connection_is_transient_unreachable(refused_port):
    url = f"http://127.0.0.1:{refused_port}"
    err = worker_error(client(url))
    assert (str(err), err.transient) == (f"worker unreachable at {url}: [Errno 111] Connection refused", True)


def test_client_connect_timeout_reports_the_connect_timeout_not_the_idle_timeout():
    """A full listen backlog drops SYNs, so connect() times out after connect_timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        filler = socket.create_connection(address, timeout=2)  # takes the only backlog slot
        try:
            url = f"http://127.0.0.1:{address[1]}"
            err = worker_error(client(url, connect_timeout=0.3, idle_timeout=7))
        finally:
            filler.close()
    assert err.transient is True
    assert "0.3 s" in str(err), str(err)


# -- Dispatcher -------------------------------------------------------------------------


class RecordingStore(MemoryStore):
    """A MemoryStore that records the progress of every heartbeat."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.heartbeats: list[float] = []

    def heartbeat(self, job_id, owner, progress, lease_ms):
        self.heartbeats.append(progress)
        super().heartbeat(job_id, owner, progress, lease_ms)


@pytest.fixture
def dispatchers():
    """Makes Dispatchers with test-friendly settings (no backoff, no reaper unless asked)
    and stops them after the test."""
    made: list[Dispatcher] = []

    def make(store, url: str, **overrides) -> Dispatcher:
        config = DispatchConfig(worker_url=url, max_concurrent_jobs=2, dispatch_attempts=3, retry_backoff_ms=0,
                                worker_connect_timeout_seconds=2.0, worker_timeout_seconds=5.0, lease_seconds=30.0,
                                max_job_attempts=3, progress_write_interval_ms=0, reaper_interval_seconds=3600.0)
        config = dataclasses.replace(config, **overrides)
        wc = WorkerClient(config.worker_url, config.worker_connect_timeout_seconds, config.worker_timeout_seconds)
        made.append(Dispatcher(store, wc, config, OWNER))
        return made[-1]

    yield make
    for d in made:
        d.stop(5.0)


def create_and_submit(store: MemoryStore, d: Dispatcher, job_id: str, request_id: str | None = "req-1") -> None:
    store.create(job_id, PAYLOAD, OWNER, d.lease_ms)
    assert d.submit(job_id, request_id) is True


def wait_finished(store: MemoryStore, job_id: str, timeout: float = 10.0) -> dict:
    wait_until(lambda: store.get(job_id)["state"] in ("done", "failed"), timeout, f"job {job_id} finished")
    return store.get(job_id)


def test_job_runs_on_a_real_worker_and_is_done_with_its_output(dispatchers):
    app = worker.Worker(worker.WorkerConfig(work_ms=0))
    with serving_in_thread(Server(("127.0.0.1", 0), worker.WorkerHandler, app)) as port:
        store = MemoryStore()
        d = dispatchers(store, f"http://127.0.0.1:{port}")
        d.start()
        create_and_submit(store, d, "job-real")
        job = wait_finished(store, "job-real")
    assert (job["state"], job["progress"], job["error"], job["attempts"], job["leaseExpiresAt"]) == (
        "done", 1.0, None, 1, None)
    assert job["result"] == scene.build_scene("a spooky hallway", 123, "doom")


def test_transient_failure_is_retried_and_then_succeeds(fakes, dispatchers, logs):
    fake = fakes(error_json(500, "boom"), stream(progress(0.5), RESULT))
    store = MemoryStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-retry", "req-retry")
    job = wait_finished(store, "job-retry")
    assert (job["state"], job["result"], job["error"], job["attempts"]) == ("done", OUTPUT, None, 1)
    assert [r["headers"]["X-Request-Id"] for r in fake.requests] == ["req-retry", "req-retry"]
    assert wait_for_line(logs, lambda x: x["message"] == "worker call failed; retrying") == {
        "level": "WARNING", "service": "dispatch-test", "message": "worker call failed; retrying",
        "requestId": "req-retry", "jobId": "job-retry", "reason": "worker answered HTTP 500: boom",
        "attempt": 1, "retryInSeconds": 0.0}


def test_transient_failures_give_up_after_dispatch_attempts(fakes, dispatchers):
    fake = fakes(error_json(503, "busy"))
    store = MemoryStore()
    d = dispatchers(store, fake.url, dispatch_attempts=3)
    d.start()
    create_and_submit(store, d, "job-busy")
    job = wait_finished(store, "job-busy")
    assert (job["state"], job["result"], job["error"]) == (
        "failed", None, "worker answered HTTP 503: busy (gave up after 3 attempts)")
    assert len(fake.requests) == 3


def test_unreachable_worker_fails_the_job_after_dispatch_attempts(dispatchers, refused_port):
    url = f"http://127.0.0.1:{refused_port}"
    store = MemoryStore()
    d = dispatchers(store, url, dispatch_attempts=2)
    d.start()
    create_and_submit(store, d, "job-down")
    job = wait_finished(store, "job-down")
    assert (job["state"], job["error"]) == (
        "failed", f"worker unreachable at {url}: [Errno 111] Connection refused (gave up after 2 attempts)")


def test_permanent_failure_fails_at_once_without_retry(fakes, dispatchers, logs):
    fake = fakes(error_json(400, "payload: seed is required"), stream(RESULT))
    store = MemoryStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-bad", "req-bad")
    job = wait_finished(store, "job-bad")
    assert (job["state"], job["error"]) == ("failed", "worker answered HTTP 400: payload: seed is required")
    assert len(fake.requests) == 1
    line = wait_for_line(logs, lambda x: x["message"] == "job failed")
    assert line["error"].pop("stack").splitlines()[-1] == "dispatcher.WorkerError: worker answered HTTP 400: payload: seed is required"
    assert line == {
        "level": "ERROR", "service": "dispatch-test", "message": "job failed", "requestId": "req-bad",
        "jobId": "job-bad", "workerUrl": fake.url,
        "error": {"type": "WorkerError", "message": "worker answered HTTP 400: payload: seed is required"}}


def test_result_without_ok_true_fails_the_job_without_retry(fakes, dispatchers):
    fake = fakes(stream(line({"event": "result", "ok": False, "output": OUTPUT})))
    store = MemoryStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-notok")
    job = wait_finished(store, "job-notok")
    assert (job["state"], job["error"]) == ("failed", "worker's result has no ok=true and output object")
    assert len(fake.requests) == 1


def test_progress_is_recorded_monotonic_and_capped_below_1_while_running(fakes, dispatchers):
    fake = fakes()
    gate = fake.gate()
    fake.answers.append(stream(progress(0.2), progress(0.1), progress(0.5), progress(1.0), gate=gate,
                               after_gate=(RESULT,)))
    store = RecordingStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-progress")
    wait_until(lambda: store.get("job-progress")["progress"] == 0.99, what="progress 0.99")
    assert store.get("job-progress")["state"] == "running"
    assert store.heartbeats == [0.2, 0.5, 0.99]  # the lower 0.1 is not written
    gate.set()
    job = wait_finished(store, "job-progress")
    assert (job["state"], job["progress"]) == ("done", 1.0)


def test_a_run_below_the_recorded_progress_still_renews_its_lease(fakes, dispatchers):
    """A retry's worker starts again from 0: no progress to record, but the lease must not lapse."""
    fake = fakes()
    gate = fake.gate()
    fake.answers.append(stream(progress(0.5), gate=gate, after_gate=(progress(0.5), RESULT)))
    store = RecordingStore()
    d = dispatchers(store, fake.url, lease_seconds=0.03)  # renew after 10 ms without a write
    d.start()
    create_and_submit(store, d, "job-renew")
    wait_until(lambda: store.heartbeats == [0.5], what="first heartbeat")
    time.sleep(0.05)  # let more than a third of the lease pass before the repeated progress
    gate.set()
    assert wait_finished(store, "job-renew")["state"] == "done"
    assert store.heartbeats == [0.5, 0.5]


def test_progress_writes_are_throttled_by_the_write_interval(fakes, dispatchers):
    fake = fakes(stream(progress(0.2), progress(0.4), progress(0.6), RESULT))
    store = RecordingStore()
    d = dispatchers(store, fake.url, progress_write_interval_ms=60_000)
    d.start()
    create_and_submit(store, d, "job-quiet")
    assert wait_finished(store, "job-quiet")["state"] == "done"
    assert store.heartbeats == []


def test_job_past_max_job_attempts_fails_with_the_gave_up_lease_message(fakes, dispatchers):
    fake = fakes(stream(RESULT))
    store = MemoryStore()
    store.create("job-cursed", PAYLOAD, "dead-0", 0)
    for n in range(1, 4):  # three orchestrators claimed it and died, each leaving its lease to expire
        assert store.claim("job-cursed", f"dead-{n}", 0)["attempts"] == n
    d = dispatchers(store, fake.url, max_job_attempts=3)
    d.start()
    assert d.submit("job-cursed", None)
    job = wait_finished(store, "job-cursed")
    assert (job["state"], job["attempts"], job["error"]) == (
        "failed", 4, "gave up after 3 attempts: the orchestrator running the job stopped each time before "
                     "it finished (lease of 30 s expired)")
    assert fake.requests == []


def test_submit_refuses_a_job_already_queued_here_and_has_room_counts_the_queue(dispatchers):
    store = MemoryStore()
    d = dispatchers(store, "http://127.0.0.1:9", max_queued_jobs=1)  # not started: jobs stay queued
    assert d.has_room() is True
    assert (d.submit("job-a", None), d.submit("job-a", None)) == (True, False)
    assert d.has_room() is False


def test_stop_hands_back_running_and_queued_jobs(fakes, dispatchers, logs):
    fake = fakes()
    gate = fake.gate()
    fake.answers.append(stream(progress(0.3), gate=gate, after_gate=(RESULT,)))
    store = MemoryStore()
    d = dispatchers(store, fake.url, max_concurrent_jobs=1)
    d.start()
    create_and_submit(store, d, "job-running")
    create_and_submit(store, d, "job-waiting")
    wait_until(lambda: store.get("job-running")["progress"] == 0.3, what="job-running in progress")
    d.stop(0.2)
    running, waiting = store.get("job-running"), store.get("job-waiting")
    assert (running["state"], running["leaseExpiresAt"], waiting["state"], waiting["leaseExpiresAt"]) == (
        "running", 0, "queued", 0)
    assert sorted(store.expired(limit=10)) == ["job-running", "job-waiting"]
    handed = [x["jobId"] for x in logs.lines() if x["message"] == "job handed back"]
    assert sorted(handed) == ["job-running", "job-waiting"]
    assert len(fake.requests) == 1


def test_reaper_runs_a_job_whose_lease_expired(fakes, dispatchers, logs):
    fake = fakes(stream(progress(0.5), RESULT))
    store = MemoryStore()
    store.create("job-orphan", PAYLOAD, "dead-orchestrator", 0)
    d = dispatchers(store, fake.url, reaper_interval_seconds=0.05)
    d.start()
    job = wait_finished(store, "job-orphan")
    assert (job["state"], job["owner"], job["attempts"], job["result"]) == ("done", OWNER, 1, OUTPUT)
    line = wait_for_line(logs, lambda x: x["message"] == "recovering job with expired lease")
    assert line == {"level": "INFO", "service": "dispatch-test", "message": "recovering job with expired lease",
                    "jobId": "job-orphan"}
    assert "X-Request-Id" not in fake.requests[0]["headers"]


def test_reaper_leaves_jobs_with_a_live_lease_alone(fakes, dispatchers):
    fake = fakes(stream(RESULT))
    store = MemoryStore()
    store.create("job-live", PAYLOAD, "other-orchestrator", 60_000)
    store.create("job-orphan", PAYLOAD, "dead-orchestrator", 0)
    d = dispatchers(store, fake.url, reaper_interval_seconds=0.05)
    d.start()
    wait_finished(store, "job-orphan")  # the reaper has run since both jobs existed
    live = store.get("job-live")
    assert (live["state"], live["owner"], live["attempts"]) == ("queued", "other-orchestrator", 0)
    assert [r["body"]["jobId"] for r in fake.requests] == ["job-orphan"]


def test_lost_lease_abandons_the_run_without_finishing_the_job(fakes, dispatchers, logs):
    fake = fakes()
    gate = fake.gate()
    fake.answers.append(stream(progress(0.3), gate=gate, after_gate=(progress(0.6), RESULT)))
    store = MemoryStore()
    d = dispatchers(store, fake.url)
    d.start()
    create_and_submit(store, d, "job-stolen", "req-stolen")
    wait_until(lambda: store.get("job-stolen")["progress"] == 0.3, what="job-stolen in progress")
    store.release("job-stolen", OWNER)
    assert store.claim("job-stolen", "thief", 60_000)["owner"] == "thief"
    gate.set()
    line = wait_for_line(logs, lambda x: x["message"].startswith("lease lost"))
    assert line == {"level": "WARNING", "service": "dispatch-test",
                    "message": "lease lost: another orchestrator owns the job now; abandoning this run",
                    "requestId": "req-stolen", "jobId": "job-stolen"}
    job = store.get("job-stolen")
    assert (job["state"], job["owner"], job["progress"], job["result"]) == ("running", "thief", 0.3, None)
