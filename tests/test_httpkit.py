"""Unit tests for httpkit: Router, and a real Server with a small JsonHandler app."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import re
import socket

import pytest

import jsonbody
from httpapp import RawExchange, assert_still_serving, call, port, raw, server
from httpkit import HTTPError, Router
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
                   "message": "PUT is not allowed on /jobs/abc; allowed: DELETE, GET, HEAD"}},
        {"Allow": "DELETE, GET, HEAD"},
    )


def test_router_answers_head_with_the_get_handler_unless_the_table_names_one():
    assert ROUTER.match("HEAD", "/jobs/abc-123") == (_get_job, {"job_id": "abc-123"})
    with pytest.raises(HTTPError) as info:
        ROUTER.match("HEAD", "/jobs")  # POST only: no GET to answer HEAD with
    assert (info.value.status, info.value.headers) == (405, {"Allow": "POST"})


# -- a real server with a small app (tests/httpapp.py) ----------------------------------


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


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PATCH", "QUERY"])
def test_a_standard_method_a_path_lacks_is_405_not_501(port, method):
    status, headers, body = call(port, method, "/items/1")
    assert (status, headers["Allow"], json.loads(body)["error"]["code"]) == (405, "DELETE, GET, HEAD", "method_not_allowed")


def test_wrong_method_is_405_with_allow_header(port):
    status, headers, body = call(port, "POST", "/items/1", b"{}")
    assert (status, headers["Allow"], json.loads(body)) == (
        405, "DELETE, GET, HEAD",
        {"error": {"code": "method_not_allowed",
                   "message": "POST is not allowed on /items/1; allowed: DELETE, GET, HEAD"}})


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

JSON = b"Content-Type: application/json\r\n"


def post_echo(payload: bytes, headers: bytes = JSON) -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n\r\n%s" % (headers, len(payload), payload)


def test_read_json_returns_the_object(port):
    status, _, body = call(port, "POST", "/echo", b'{"a":[1,"\xc3\xa9"],"b":null}')
    assert (status, json.loads(body)) == (200, {"a": [1, "é"], "b": None})


def test_read_json_accepts_a_body_of_exactly_the_limit(port):
    payload = b'{"k":"' + b"x" * 56 + b'"}'
    assert len(payload) == 64
    status, _, body = call(port, "POST", "/echo", payload)
    assert (status, body) == (200, payload)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON;charset=\"UTF-8\""])
def test_read_json_accepts_json_with_or_without_a_utf8_charset(port, content_type):
    assert call(port, "POST", "/echo", b"{}", {"Content-Type": content_type})[::2] == (200, b"{}")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/json; charset=latin-1",
                                          "application/jsonp"])
def test_read_json_refuses_other_media_types_with_415(raw, port, content_type):
    """A browser on another origin may send a form or text/plain POST without a preflight:
    only application/json is accepted, so it cannot submit jobs."""
    header = b"" if content_type is None else b"Content-Type: %s\r\n" % content_type.encode()
    ex = raw(post_echo(b"{}", header))
    assert (ex.status, json.loads(ex.body)) == (415, {"error": {
        "code": "unsupported_media_type",
        "message": f"send the body as Content-Type: application/json, got {content_type!r}"}})


def test_read_json_without_content_length_is_411_and_the_connection_stays_in_step(raw, port):
    """No Content-Length and no Transfer-Encoding means no body (RFC 9112): nothing is out of step."""
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\n" + JSON + b"\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (ex.status, json.loads(ex.body)) == (411, {"error": {
        "code": "length_required", "message": "a JSON body with a Content-Length header is required"}})
    assert ex.next_response() == (200, b'{"hello":"world"}')


def test_a_chunked_body_is_refused_with_400_and_the_connection_closed(raw):
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\n" + JSON + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert (ex.status, ex.headers["Connection"], json.loads(ex.body)) == (400, "close", {"error": {
        "code": "bad_request",
        "message": "Transfer-Encoding is not accepted in requests; send the body with Content-Length"}})
    assert ex.server_closed()


@pytest.mark.parametrize(("length", "shown"), [(b"1e3", "'1e3'"), (b"\xb2", "'\u00b2'"), (b"-1", "'-1'"),
                                               (b"+5", "'+5'"), (b"1" * 19, repr("1" * 19))])
def test_a_content_length_that_is_not_a_plain_integer_is_400_and_closes(raw, length, shown):
    """'\\xb2' (superscript two) passes str.isdigit() but is not a digit of HTTP."""
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\n" + JSON + b"Content-Length: " + length + b"\r\n\r\n{}")
    assert (ex.status, json.loads(ex.body)) == (400, {"error": {
        "code": "bad_request", "message": f"Content-Length must be a non-negative integer, got {shown}"}})
    assert ex.server_closed()


def test_read_json_over_the_limit_is_413_and_the_connection_is_closed(raw, port):
    ex = raw(post_echo(b"x" * 100))
    assert (ex.status, ex.headers["Connection"], json.loads(ex.body)) == (413, "close", {"error": {
        "code": "payload_too_large", "message": "body is 100 bytes; the limit is 64 bytes"}})
    assert ex.server_closed()
    assert_still_serving(port)


def test_read_json_over_the_limit_answers_before_the_body_is_sent(raw):
    """The limit is checked on the header: a client that has sent only the headers of a
    huge body already gets its 413."""
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\n" + JSON + b"Content-Length: 1000000000\r\n\r\n")
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
    (b'{"a":1,"a":2}', "body has the key 'a' more than once"),
    (b'{"x":{"b":1,"b":1}}', "body has the key 'b' more than once"),
    (b'{"a":"\\ud800"}', "a is not valid Unicode text (it holds an unpaired surrogate)"),
    (b'{"p":{"q":["ok","\\udcff"]}}', "p.q[1] is not valid Unicode text (it holds an unpaired surrogate)"),
    (b'{"\\udcff":1}', "'\\udcff' is not valid Unicode text (it holds an unpaired surrogate)"),
])
def test_read_json_rejects_bad_bodies_with_400_and_keeps_the_connection_in_step(raw, payload, message):
    """The whole body was read, so the next request on the connection is served."""
    ex = raw(post_echo(payload) + b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (ex.status, json.loads(ex.body)) == (400, {"error": {"code": "invalid_json", "message": message}})
    assert ex.next_response() == (200, b'{"hello":"world"}')


def test_a_surrogate_pair_escape_is_valid_text(port):
    status, _, body = call(port, "POST", "/echo", b'{"a":"\\ud83d\\udc7b"}')
    assert (status, json.loads(body)) == (200, {"a": "\U0001f47b"})


def test_expect_100_continue_gets_the_interim_answer_before_the_body_is_sent(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\n" + JSON + b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"{}")
        resp = http.client.HTTPResponse(sock, method="POST")
        resp.begin()
        assert (resp.status, resp.read()) == (200, b"{}")


def test_an_expectation_other_than_100_continue_is_417_and_closes(raw):
    ex = raw(b"POST /echo HTTP/1.1\r\nHost: t\r\n" + JSON + b"Content-Length: 2\r\nExpect: 200-ok\r\n\r\n")
    assert (ex.status, json.loads(ex.body)) == (417, {"error": {
        "code": "expectation_failed", "message": "Expect: '200-ok' is not supported; only 100-continue"}})
    assert ex.server_closed()


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



def test_send_body_may_replace_no_store_and_304_states_the_length_but_sends_no_body(server, raw):
    """A revalidated 304 carries no body (RFC 9110 15.4.5) but keeps the representation's
    Content-Length; the next response on the connection must not be read as its body."""
    server.app.writes.clear()
    ex = raw(b"GET /doc HTTP/1.1\r\nHost: t\r\n\r\n"
             b'GET /doc HTTP/1.1\r\nHost: t\r\nIf-None-Match: "doc-v1"\r\n\r\n'
             b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (ex.status, ex.headers["Cache-Control"], ex.headers["ETag"], ex.headers["Content-Length"], ex.body) == (
        200, "no-cache", '"doc-v1"', "9", b'{"doc":1}')
    assert ex.headers.get_all("Cache-Control") == ["no-cache"]
    assert ex.next_response() == (304, b"")
    assert ex.next_response() == (200, b'{"hello":"world"}')
    not_modified = server.app.writes[1]
    assert not_modified.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    assert b"\r\nContent-Length: 9\r\n" in not_modified and not_modified.endswith(b"\r\n\r\n")


def test_head_on_a_path_with_only_a_get_handler_is_answered_by_it_without_the_body(port):
    """Before: 405. HEAD is GET without the body (RFC 9110 9.3.2): same status and headers,
    Content-Length of the body it would have sent, and nothing after the head."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"HEAD /items/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert (lines[0], rest) == (b"HTTP/1.1 200 OK", b"")
    assert b"Content-Length: 12" in lines  # len(b'{"item":"1"}')


# -- malformed heads ----------------------------------------------------------------------

MANY_HEADERS = b"".join(b"X-H%d: v\r\n" % i for i in range(101))


@pytest.mark.parametrize(("request_bytes", "status", "code", "message"), [
    (b"GARBAGE\r\n\r\n", 400, "bad_request", "the request line must be METHOD SP TARGET SP HTTP-VERSION"),
    (b"GET /hello HTTP/1.1 extra\r\n\r\n", 400, "bad_request",
     "the request line must be METHOD SP TARGET SP HTTP-VERSION"),
    (b"POST /\r\n\r\n", 400, "bad_request", "the request line must be METHOD SP TARGET SP HTTP-VERSION"),
    (b"GET /hello HTTP/2.0\r\n\r\n", 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are supported"),
    (b"GET /hello HTTP/1.1x\r\n\r\n", 400, "bad_request", "the HTTP version must look like HTTP/1.1"),
    (b"FOO /hello HTTP/1.1\r\nHost: t\r\n\r\n", 501, "not_implemented", "method FOO is not supported"),
    (b"G@T /hello HTTP/1.1\r\n\r\n", 400, "bad_request", "the method must be a token"),
    (b"GET http://evil/hello HTTP/1.1\r\n\r\n", 400, "bad_request",
     "the request target must be a path starting with / (origin form)"),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long",
     "the request target is longer than 8192 bytes"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 431, "headers_too_large",
     "the request head is larger than 32768 bytes"),
    (b"GET /hello HTTP/1.1\r\n" + MANY_HEADERS + b"\r\n", 431, "headers_too_large", "more than 100 header fields"),
    (b"GET /hello HTTP/1.1\r\nX-Long: " + b"v" * 70000 + b"\r\n\r\n", 431, "headers_too_large",
     "the request head is larger than 32768 bytes"),
], ids=["syntax", "version", "http09-post", "http2", "bad-version", "unknown-method", "bad-method", "absolute-uri",
        "long-uri", "huge-uri", "many-headers", "long-header"])
def test_malformed_heads_answer_the_json_error_shape_and_close(raw, port, logs, request_bytes, status, code, message):
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


def test_the_shared_body_decoder_gives_each_thread_its_own_answer():
    """jsonbody decodes with one decoder shared by every request thread; bodies decoded at
    once on 8 threads (valid ones, and ones refused for a duplicate key) each get their own
    result, as decoded alone."""
    def decode(i: int) -> object:
        raw = (b'{"k%d":{"a":%d,"b":[%d]},"n":%d}' % (i, i, i, i) if i % 3
               else b'{"k%d":1,"z":{"d":1,"d":2}}' % i)
        try:
            return jsonbody.decode(raw)
        except jsonbody.BodyError as exc:
            return str(exc)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(decode, range(20_000)))
    assert results == [decode(i) for i in range(20_000)]
    assert results[1] == {"k1": {"a": 1, "b": [1]}, "n": 1}
    assert results[3] == "body has the key 'd' more than once"
