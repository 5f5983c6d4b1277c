"""Unit tests for httpkit: Router, ActiveRequests, and a real Server with a small JsonHandler app."""

from __future__ import annotations

import http.client
import json
import re
import socket
import types

import pytest

import httpkit
import logjson
from conftest import serving_in_thread
from httpkit import HTTPError, JsonHandler, Router, Server
from logcapture import wait_for_line

HEX32_RE = re.compile(r"^[0-9a-f]{32}$")


# -- Router -----------------------------------------------------------------------------


def _get_job(h, job_id):  # only identity matters
    return None


def _post_job(h):
    return None


def _delete_job(h, job_id):
    return None


ROUTER = Router({
    ("GET", "/jobs/{job_id}"): _get_job,
    ("DELETE", "/jobs/{job_id}"): _delete_job,
    ("POST", "/jobs"): _post_job,
})


def test_router_returns_the_handler_and_path_params():
    assert ROUTER.match("GET", "/jobs/abc-123") == (_get_job, {"job_id": "abc-123"})
    assert ROUTER.match("POST", "/jobs") == (_post_job, {})


def test_router_unknown_path_is_404_naming_the_path():
    with pytest.raises(HTTPError) as info:
        ROUTER.match("GET", "/nope")
    assert (info.value.status, info.value.body(), info.value.headers) == (
        404, {"error": {"code": "not_found", "message": "no such path: /nope"}}, {})


@pytest.mark.parametrize("path", ["/jobs/a/b", "/jobs/", "/jobsx", "/jobs/abc/"])
def test_router_path_param_matches_exactly_one_non_empty_segment(path):
    with pytest.raises(HTTPError) as info:
        ROUTER.match("GET", path)
    assert info.value.status == 404


def test_router_wrong_method_is_405_with_allow_listing_the_methods_sorted():
    with pytest.raises(HTTPError) as info:
        ROUTER.match("PUT", "/jobs/abc")
    assert (info.value.status, info.value.body(), info.value.headers) == (
        405,
        {"error": {"code": "method_not_allowed",
                   "message": "PUT is not allowed on /jobs/abc; allowed: DELETE, GET"}},
        {"Allow": "DELETE, GET"},
    )


# -- ActiveRequests ---------------------------------------------------------------------


def test_active_requests_wait_idle_is_false_while_a_request_runs_and_true_after():
    active = httpkit.ActiveRequests()
    active.enter()
    assert active.wait_idle(0.01) is False
    active.leave()
    assert active.wait_idle(0) is True


# -- a real server with a small app -----------------------------------------------------


class Gone(Exception):
    pass


def hello(h):
    return 200, {"hello": "world"}


def echo(h):
    return 200, h.read_json()


def item(h, item_id):
    return 200, {"item": item_id}


def created(h):
    return 201, {"created": True}, {"Location": "/items/7"}


def boom(h):
    raise RuntimeError("secret detail")


def gone(h):
    raise Gone("it went away")


def whoami(h):
    return 200, {"requestId": logjson.request_id.get()}


class AppHandler(JsonHandler):
    router = Router({
        ("GET", "/hello"): hello,
        ("HEAD", "/hello"): hello,
        ("POST", "/echo"): echo,
        ("GET", "/items/{item_id}"): item,
        ("DELETE", "/items/{item_id}"): item,
        ("POST", "/items"): created,
        ("GET", "/boom"): boom,
        ("GET", "/gone"): gone,
        ("GET", "/whoami"): whoami,
    })
    error_map = {Gone: lambda exc: HTTPError(410, "gone", str(exc))}

    def setup(self) -> None:
        super().setup()
        self.wfile = RecordingWriter(self.wfile, self.server.app.writes)


class RecordingWriter:
    """Wraps the handler's wfile and records each ``write`` call's bytes."""

    def __init__(self, raw, writes: list[bytes]):
        self._raw, self._writes = raw, writes

    def write(self, data: bytes) -> int:
        self._writes.append(bytes(data))
        return self._raw.write(data)

    def __getattr__(self, name):
        return getattr(self._raw, name)


@pytest.fixture(scope="module")
def server():
    srv = Server(("127.0.0.1", 0), AppHandler, types.SimpleNamespace(writes=[]), max_body_bytes=64)
    with serving_in_thread(srv):
        yield srv


@pytest.fixture
def port(server) -> int:
    return server.server_address[1]


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body, headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


class RawExchange:
    """One request sent as raw bytes; the response parsed by http.client."""

    def __init__(self, port: int, data: bytes, method: str = "GET"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking everything; read the answer
        self.resp = http.client.HTTPResponse(self.sock, method=method)
        self.resp.begin()
        self.status, self.headers, self.body = self.resp.status, self.resp.headers, self.resp.read()

    def server_closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed its side; False if it keeps the connection open."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.resp.close()
        self.sock.close()


@pytest.fixture
def raw(port):
    opened: list[RawExchange] = []

    def send(data: bytes, method: str = "GET") -> RawExchange:
        exchange = RawExchange(port, data, method)
        opened.append(exchange)
        return exchange

    yield send
    for exchange in opened:
        exchange.close()


def assert_still_serving(port: int) -> None:
    assert call(port, "GET", "/hello")[::2] == (200, b'{"hello":"world"}')


def test_send_json_writes_status_headers_and_body_in_one_write_with_content_length(server, port, raw):
    server.app.writes.clear()
    ex = raw(b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Request-Id: one-write\r\n\r\n")
    assert (ex.status, ex.body) == (200, b'{"hello":"world"}')
    assert ex.headers["Content-Type"] == "application/json"
    assert ex.headers["Content-Length"] == "17"
    assert ex.headers["Cache-Control"] == "no-store"
    assert ex.headers["X-Request-Id"] == "one-write"
    assert len(server.app.writes) == 1
    head, body = server.app.writes[0].split(b"\r\n\r\n", 1)
    assert body == b'{"hello":"world"}'
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")


def test_keep_alive_serves_two_requests_on_one_connection(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/hello")
        first = conn.getresponse()
        assert (first.status, first.read()) == (200, b'{"hello":"world"}')
        sock = conn.sock
        assert sock is not None, "the server closed a keep-alive connection"
        conn.request("GET", "/items/42")
        second = conn.getresponse()
        assert (second.status, second.read()) == (200, b'{"item":"42"}')
        assert conn.sock is sock
    finally:
        conn.close()


def test_handler_may_return_extra_headers(port):
    status, headers, body = call(port, "POST", "/items", b"")
    assert (status, headers["Location"], body) == (201, "/items/7", b'{"created":true}')


def test_unknown_path_is_404_json(port):
    status, headers, body = call(port, "GET", "/missing?x=1")
    assert (status, headers["Content-Type"], json.loads(body)) == (
        404, "application/json", {"error": {"code": "not_found", "message": "no such path: /missing"}})


def test_wrong_method_is_405_with_allow_header(port):
    status, headers, body = call(port, "POST", "/items/1", b"{}")
    assert (status, headers["Allow"], json.loads(body)) == (
        405, "DELETE, GET",
        {"error": {"code": "method_not_allowed", "message": "POST is not allowed on /items/1; allowed: DELETE, GET"}})


# -- request ids ------------------------------------------------------------------------


def test_request_id_from_x_request_id_is_echoed_and_seen_by_the_handler(port):
    status, headers, body = call(port, "GET", "/whoami", headers={"X-Request-Id": "abc-123_x.y"})
    assert (status, headers["X-Request-Id"], json.loads(body)) == (200, "abc-123_x.y", {"requestId": "abc-123_x.y"})


def test_request_id_taken_from_amzn_trace_id_when_no_x_request_id(port):
    trace = "Root=1-67891233-abcdef012345678912345678;Sampled=1"
    status, headers, body = call(port, "GET", "/whoami", headers={"X-Amzn-Trace-Id": trace})
    assert (headers["X-Request-Id"], json.loads(body)) == (trace, {"requestId": trace})


def test_x_request_id_wins_over_amzn_trace_id(port):
    _, headers, _ = call(port, "GET", "/whoami", headers={"X-Request-Id": "mine", "X-Amzn-Trace-Id": "Root=1-2-3"})
    assert headers["X-Request-Id"] == "mine"


@pytest.mark.parametrize("headers", [
    {},
    {"X-Request-Id": "has spaces in it"},
    {"X-Request-Id": "x" * 201},
    {"X-Request-Id": "quote\"d", "X-Amzn-Trace-Id": "<script>"},
])
def test_request_id_is_generated_when_absent_or_invalid(port, headers):
    _, first_headers, body = call(port, "GET", "/whoami", headers=headers)
    _, second_headers, _ = call(port, "GET", "/whoami", headers=headers)
    rid = first_headers["X-Request-Id"]
    assert HEX32_RE.match(rid), rid
    assert json.loads(body) == {"requestId": rid}
    assert second_headers["X-Request-Id"] != rid


# -- errors at the boundary -------------------------------------------------------------


def test_unhandled_exception_is_500_json_without_details_and_the_connection_keeps_serving(port, logs):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/boom", headers={"X-Request-Id": "req-boom"})
        resp = conn.getresponse()
        body = resp.read()
        assert (resp.status, resp.headers["Content-Type"], json.loads(body)) == (
            500, "application/json",
            {"error": {"code": "internal_error", "message": "internal error; see the service log for this requestId"}})
        assert b"secret" not in body and b"Traceback" not in body
        sock = conn.sock
        conn.request("GET", "/hello")
        assert (conn.getresponse().read(), conn.sock) == (b'{"hello":"world"}', sock)
    finally:
        conn.close()
    line = wait_for_line(logs, lambda x: x["message"] == "unhandled error")
    stack = line["error"].pop("stack")
    assert stack.splitlines()[-1] == "RuntimeError: secret detail"
    assert line == {"level": "ERROR", "service": "test", "message": "unhandled error", "requestId": "req-boom",
                    "error": {"type": "RuntimeError", "message": "secret detail"}}


def test_access_line_is_logged_per_request_with_status_and_duration(port, logs):
    call(port, "GET", "/boom?verbose=1", headers={"X-Request-Id": "req-access"})
    line = wait_for_line(logs, lambda x: x["message"] == "request" and x.get("requestId") == "req-access")
    assert isinstance(line.pop("durationMs"), (int, float))
    assert line == {"level": "INFO", "service": "test", "message": "request", "requestId": "req-access",
                    "method": "GET", "path": "/boom", "status": 500}


def test_error_map_turns_a_mapped_exception_into_its_http_error(port, logs):
    status, _, body = call(port, "GET", "/gone", headers={"X-Request-Id": "req-gone"})
    assert (status, json.loads(body)) == (410, {"error": {"code": "gone", "message": "it went away"}})
    line = wait_for_line(logs, lambda x: x["message"] == "request failed")
    assert line == {"level": "WARNING", "service": "test", "message": "request failed",
                    "requestId": "req-gone", "reason": "it went away", "errorType": "Gone"}


# -- read_json --------------------------------------------------------------------------


def test_read_json_returns_the_object(port):
    status, _, body = call(port, "POST", "/echo", b'{"a":[1,"\xc3\xa9"],"b":null}')
    assert (status, json.loads(body)) == (200, {"a": [1, "é"], "b": None})


def test_read_json_accepts_a_body_of_exactly_the_limit(port):
    payload = b'{"k":"' + b"x" * 56 + b'"}'
    assert len(payload) == 64
    status, _, body = call(port, "POST", "/echo", payload)
    assert (status, body) == (200, payload)


def test_read_json_without_content_length_is_411(raw):
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (ex.status, json.loads(ex.body)) == (411, {"error": {
        "code": "length_required", "message": "a JSON body with a Content-Length header is required"}})
    assert ex.server_closed()


def test_read_json_with_chunked_transfer_encoding_is_411(raw):
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert (ex.status, json.loads(ex.body)) == (411, {"error": {
        "code": "length_required",
        "message": "send the body with a Content-Length header, not Transfer-Encoding"}})
    assert ex.server_closed()


def test_read_json_with_non_numeric_content_length_is_400(raw):
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1e3\r\n\r\n{}")
    assert (ex.status, json.loads(ex.body)) == (400, {"error": {
        "code": "bad_request", "message": "Content-Length must be a non-negative integer, got '1e3'"}})
    assert ex.server_closed()


def test_read_json_with_a_non_ascii_digit_content_length_is_400_not_500(raw, port):
    """'\\xb2' (superscript two) passes str.isdigit() but int() rejects it."""
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: \xb2\r\n\r\n{}")
    assert (ex.status, json.loads(ex.body)) == (400, {"error": {
        "code": "bad_request", "message": "Content-Length must be a non-negative integer, got '²'"}})
    assert ex.server_closed()


def test_read_json_over_the_limit_is_413_and_the_connection_is_closed(raw, port):
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
    assert (ex.status, ex.headers["Connection"], json.loads(ex.body)) == (413, "close", {"error": {
        "code": "payload_too_large", "message": "body is 100 bytes; the limit is 64 bytes"}})
    assert ex.server_closed()
    assert_still_serving(port)


def test_read_json_over_the_limit_answers_before_the_body_is_sent(raw):
    """The limit is checked on the header: a client that has sent only the headers of a
    huge body already gets its 413."""
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n")
    assert (ex.status, json.loads(ex.body)["error"]["code"]) == (413, "payload_too_large")


@pytest.mark.parametrize(("payload", "message"), [
    (b'{"a":"\xff"}', "body is not valid UTF-8 (byte 6)"),
    (b'{"a":', "body is not valid JSON: Expecting value: line 1 column 6 (char 5)"),
    (b"", "body is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
    (b'{"a":NaN}', "body is not valid JSON: NaN is not allowed in JSON"),
    (b'{"a":Infinity}', "body is not valid JSON: Infinity is not allowed in JSON"),
    (b'{"a":-Infinity}', "body is not valid JSON: -Infinity is not allowed in JSON"),
    (b"[1,2]", "body must be a JSON object, got list"),
    (b'"text"', "body must be a JSON object, got str"),
    (b"null", "body must be a JSON object, got NoneType"),
    (b"[" * 60, "body is not valid JSON: Expecting value: line 1 column 61 (char 60)"),
])
def test_read_json_rejects_bad_bodies_with_400(raw, port, payload, message):
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
    assert (ex.status, json.loads(ex.body)) == (400, {"error": {"code": "invalid_json", "message": message}})
    assert ex.server_closed()
    assert_still_serving(port)


# -- HEAD -------------------------------------------------------------------------------


def test_head_gets_headers_without_a_body_and_the_connection_stays_in_step(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("HEAD", "/hello")
        head = conn.getresponse()
        assert (head.status, head.headers["Content-Length"], head.read()) == (200, "17", b"")
        conn.request("GET", "/hello")  # a stray body after HEAD would be read as this status line
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b'{"hello":"world"}')
    finally:
        conn.close()


def test_head_on_a_get_only_path_is_405_without_a_body(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"HEAD /items/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert (lines[0], rest) == (b"HTTP/1.1 405 Method Not Allowed", b"")
    assert b"Allow: DELETE, GET" in lines


# -- errors raised by the stdlib itself -------------------------------------------------

MANY_HEADERS = b"".join(b"X-H%d: v\r\n" % i for i in range(101))


@pytest.mark.parametrize(("request_bytes", "status", "code", "message"), [
    (b"GARBAGE\r\n\r\n", 400, "bad_request", "Bad request syntax ('GARBAGE')"),
    (b"GET /hello HTTP/1.1 extra\r\n\r\n", 400, "bad_request", "Bad request version ('extra')"),
    (b"POST /\r\n\r\n", 400, "bad_request", "Bad HTTP/0.9 request type ('POST')"),
    (b"GET /hello HTTP/2.0\r\n\r\n", 505, "http_version_not_supported", "Invalid HTTP version (2.0)"),
    (b"FOO /hello HTTP/1.1\r\nHost: t\r\n\r\n", 501, "not_implemented", "Unsupported method ('FOO')"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long", "Request-URI Too Long"),
    (b"GET /hello HTTP/1.1\r\n" + MANY_HEADERS + b"\r\n", 431, "headers_too_large", "Too many headers"),
    (b"GET /hello HTTP/1.1\r\nX-Long: " + b"v" * 70000 + b"\r\n\r\n", 431, "headers_too_large", "Line too long"),
], ids=["syntax", "version", "http09-post", "http2", "unknown-method", "long-uri", "many-headers", "long-header"])
def test_stdlib_errors_answer_the_json_error_shape_and_close(raw, port, logs, request_bytes, status, code, message):
    ex = raw(request_bytes)
    assert (ex.status, ex.headers["Content-Type"], json.loads(ex.body)) == (
        status, "application/json", {"error": {"code": code, "message": message}})
    assert ex.headers["Content-Length"] == str(len(ex.body))
    assert ex.headers["Connection"] == "close"
    assert HEX32_RE.match(ex.headers["X-Request-Id"])
    assert ex.server_closed()
    line = wait_for_line(logs, lambda x: x.get("status") == status)
    assert line["requestId"] == ex.headers["X-Request-Id"]
    assert line["reason"] == message
    assert_still_serving(port)


def test_no_plain_text_reaches_stderr(port, raw, logs, capfd):
    raw(b"GARBAGE\r\n\r\n")
    call(port, "GET", "/hello")
    call(port, "GET", "/boom")
    wait_for_line(logs, lambda x: x.get("path") == "/boom")
    assert capfd.readouterr().err == ""
