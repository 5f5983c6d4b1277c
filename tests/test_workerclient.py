"""Unit tests for workerclient: WorkerClient against scripted fake workers (events, HTTP
errors, malformed streams, broken and silent connections, and which faults are transient)."""

from __future__ import annotations

import socket
import threading

import pytest

from fakeworker import (OUTPUT, PAYLOAD, RESULT, error_json, error_text, fake_workers, line, progress, stream,
                        stream_cut_mid_chunk)
from workerclient import CallAborted, WorkerBusy, WorkerClient, WorkerError


@pytest.fixture
def fakes():
    with fake_workers() as make:
        yield make


def client(url: str, connect_timeout: float = 2.0, idle_timeout: float = 5.0) -> WorkerClient:
    return WorkerClient(url, connect_timeout, idle_timeout)


def run_client(c: WorkerClient, job_id: str = "j", request_id: str | None = "req-1") -> list[dict]:
    return list(c.process(job_id, PAYLOAD, request_id))


def worker_error(c: WorkerClient) -> WorkerError:
    with pytest.raises(WorkerError) as info:
        run_client(c)
    return info.value


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


def test_client_sends_the_worker_token_as_a_bearer_authorization(fakes):
    fake = fakes(stream(RESULT), stream(RESULT))
    run_client(WorkerClient(fake.url, 2.0, 5.0, "worker-token-0123456789abcdef"))
    run_client(client(fake.url))
    with_token, without = fake.requests
    assert with_token["headers"]["Authorization"] == "Bearer worker-token-0123456789abcdef"
    assert "Authorization" not in without["headers"]


@pytest.mark.parametrize(("answer", "detail", "public", "transient"), [
    (error_json(500, "internal error; see the service log for this requestId"),
     "answered HTTP 500: internal error; see the service log for this requestId", "the worker failed (HTTP 500)", True),
    (error_json(503, "this server is shutting down; retry on a new connection", code="shutting_down"),
     "answered HTTP 503: this server is shutting down; retry on a new connection", "the worker failed (HTTP 503)", True),
    (error_text(502, "<html>bad gateway</html>"), "answered HTTP 502: <html>bad gateway</html>",
     "the worker failed (HTTP 502)", True),
    (error_json(400, "payload: seed is required"), "answered HTTP 400: payload: seed is required",
     "the worker refused the job (HTTP 400)", False),
    (error_json(404, "no such path: /process"), "answered HTTP 404: no such path: /process",
     "the worker refused the job (HTTP 404)", False),
], ids=["500", "503-shutting-down", "502-html", "400", "404"])
def test_client_http_errors_keep_the_worker_message_in_the_detail_and_5xx_are_transient(
        fakes, answer, detail, public, transient):
    fake = fakes(answer)
    err = worker_error(client(fake.url))
    assert (str(err), err.public, err.transient, type(err)) == (
        f"worker at {fake.url} {detail}", public, transient, WorkerError)


@pytest.mark.parametrize(("answer", "retry_after"), [
    (error_json(503, "the worker is running its limit of 16 jobs; retry later", code="busy",
                headers={"Retry-After": "1"}), 1.0),
    (error_json(503, "this server has its maximum of connections open", code="too_many_connections",
                headers={"Retry-After": "3"}), 3.0),
    (error_json(429, "slow down"), None),
    (error_json(503, "full", code="busy", headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}), None),
], ids=["busy", "too-many-connections", "429-without-retry-after", "http-date"])
def test_client_busy_answers_are_back_pressure_with_their_retry_after(fakes, answer, retry_after):
    fake = fakes(answer)
    err = worker_error(client(fake.url))
    assert (type(err), err.public, err.transient, err.retry_after) == (
        WorkerBusy, "the worker stayed busy", True, retry_after)
    assert str(err).startswith(f"worker at {fake.url} answered HTTP ")


def test_client_malformed_line_is_permanent(fakes):
    fake = fakes(stream(progress(0.1), b"not json\n"))
    err = worker_error(client(fake.url))
    assert (str(err), err.public, err.transient) == (
        f"worker at {fake.url} sent a malformed line: b'not json\\n'",
        "the worker sent an answer that could not be read", False)


def test_client_event_without_a_type_is_permanent(fakes):
    fake = fakes(stream(b'{"progress": 0.5}\n'))
    err = worker_error(client(fake.url))
    assert (str(err), err.public, err.transient) == (
        f"worker at {fake.url} sent an event without a type: b'{{\"progress\": 0.5}}\\n'",
        "the worker sent an answer that could not be read", False)


def test_client_result_without_ok_true_is_permanent(fakes):
    fake = fakes(stream(line({"event": "result", "ok": False, "output": OUTPUT})))
    err = worker_error(client(fake.url))
    assert (str(err), err.public, err.transient) == (
        f"worker at {fake.url} sent a result without ok=true and an output object",
        "the worker sent an answer that could not be read", False)


def test_client_stream_ended_before_a_result_is_transient(fakes):
    fake = fakes(stream(progress(0.5)))
    err = worker_error(client(fake.url))
    assert (str(err), err.public, err.transient) == (
        f"worker at {fake.url} closed the stream before sending a result",
        "the connection to the worker broke mid-job", True)


def test_client_connection_closed_between_lines_is_transient(fakes):
    fake = fakes(stream(progress(0.5), end=False))
    err = worker_error(client(fake.url))
    assert (str(err), err.public, err.transient) == (
        f"worker at {fake.url} closed the stream before sending a result",
        "the connection to the worker broke mid-job", True)


def test_client_connection_dropped_mid_line_is_transient_and_its_public_message_names_no_exception(fakes):
    fake = fakes(stream_cut_mid_chunk(progress(0.5)))
    err = worker_error(client(fake.url))
    assert (err.public, err.transient) == ("the connection to the worker broke mid-job", True)
    assert str(err).startswith(f"connection to worker at {fake.url} broke mid-job: IncompleteRead("), str(err)


def test_client_worker_that_never_answers_is_transient_after_the_idle_timeout(silent_port):
    url = f"http://127.0.0.1:{silent_port}"
    err = worker_error(client(url, idle_timeout=0.3))
    assert (str(err), err.public, err.transient) == (
        f"worker at {url} did not answer within 0.3 s", "the worker did not answer", True)


def test_client_stream_that_goes_silent_is_transient_after_the_idle_timeout(fakes):
    fake = fakes()
    fake.answers.append(stream(progress(0.5), gate=fake.gate()))
    events: list[dict] = []
    with pytest.raises(WorkerError) as info:
        for event in client(fake.url, idle_timeout=0.3).process("j", PAYLOAD, None):
            events.append(event)
    assert events == [{"event": "progress", "jobId": "j", "step": "s", "progress": 0.5}]
    assert (str(info.value), info.value.public, info.value.transient) == (
        f"worker at {fake.url} sent nothing for 0.3 s", "the worker stopped responding mid-job", True)


def test_client_refused_connection_is_transient_and_only_the_detail_names_the_url_and_errno(refused_port):
    url = f"http://127.0.0.1:{refused_port}"
    err = worker_error(client(url))
    assert (str(err), err.public, err.transient) == (
        f"worker unreachable at {url}: [Errno 111] Connection refused", "the worker could not be reached", True)


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
    assert (err.public, err.transient) == ("the worker could not be reached", True)
    assert str(err) == f"worker unreachable at {url}: no connection within 0.3 s"


# -- abort --------------------------------------------------------------------------------


def test_abort_from_another_thread_ends_a_call_waiting_on_a_silent_stream_at_once(fakes):
    """The idle timeout is 30 s: only abort() can end this call within the test's 10 s."""
    fake = fakes()
    fake.answers.append(stream(progress(0.5), gate=fake.gate()))
    call = client(fake.url, idle_timeout=30).call("j", PAYLOAD, None)
    events = call.events()
    assert next(events) == {"event": "progress", "jobId": "j", "step": "s", "progress": 0.5}
    outcome: list[BaseException] = []

    def read_on() -> None:
        try:
            next(events)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read_on)
    reader.start()
    call.abort()
    reader.join(timeout=10)
    assert [type(exc) for exc in outcome] == [CallAborted]


def test_abort_before_the_call_starts_means_it_never_reaches_the_worker(fakes):
    fake = fakes(stream(RESULT))
    call = client(fake.url).call("j", PAYLOAD, None)
    call.abort()
    with pytest.raises(CallAborted):
        list(call.events())
    assert fake.requests == []


def test_abort_after_the_result_changes_nothing(fakes):
    fake = fakes(stream(RESULT))
    call = client(fake.url).call("j", PAYLOAD, None)
    events = list(call.events())
    call.abort()
    assert [e["event"] for e in events] == ["result"]
