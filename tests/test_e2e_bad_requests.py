"""End to end: every bad request gets the one JSON error shape, and the service keeps serving."""

from __future__ import annotations

import json
import socket

import pytest

from apiclient import request


@pytest.fixture(scope="module")
def orch(tmp_path_factory):
    from conftest import Service

    tmp = tmp_path_factory.mktemp("bad")
    # No worker needed: every request here is rejected before dispatch, or only reads.
    svc = Service("orchestrator.py", tmp, {"WORKER_URL": "http://127.0.0.1:9"})
    yield svc
    svc.stop()


def raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; return status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def assert_error(status: int, headers: dict[str, str], body: bytes, expected_status: int, code: str) -> dict:
    assert status == expected_status, body
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    doc = json.loads(body)
    assert list(doc) == ["error"] and list(doc["error"]) == ["code", "message"]
    assert doc["error"]["code"] == code
    assert doc["error"]["message"]
    assert b"Traceback" not in body and b"<html" not in body.lower()
    return doc["error"]


GOOD = {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({}, "invalid_request", "prompt is required and must be a non-empty string"),
        ({"prompt": "   "}, "invalid_request", "prompt is required and must be a non-empty string"),
        ({"prompt": 7}, "invalid_request", "prompt is required and must be a non-empty string"),
        ({"prompt": "x" * 1001}, "invalid_request", "prompt is 1001 characters; the limit is 1000"),
        ({**GOOD, "seed": "123"}, "invalid_request", 'seed must be an integer, got "123"'),
        ({**GOOD, "seed": True}, "invalid_request", "seed must be an integer, got true"),
        ({**GOOD, "seed": 1.5}, "invalid_request", "seed must be an integer, got 1.5"),
        ({**GOOD, "seed": 2**63}, "invalid_request",
         "seed must fit a signed 64-bit integer (-9223372036854775808..9223372036854775807), got 9223372036854775808"),
        ({**GOOD, "style": 5}, "invalid_request", "style must be a string, got 5"),
        ({**GOOD, "style": "s" * 65}, "invalid_request", "style is 65 characters; the limit is 64"),
        ({**GOOD, "colour": "red", "size": 3}, "invalid_request",
         "unknown field(s): colour, size; accepted: prompt, seed, style"),
        ({"prompt": 7, "seed": 1.5, "style": 5, "size": 3}, "invalid_request",
         "unknown field(s): size; accepted: prompt, seed, style; prompt is required and must be a non-empty string;"
         " seed must be an integer, got 1.5; style must be a string, got 5"),
    ],
)
def test_invalid_job_fields_are_rejected_with_a_message_naming_them(orch, body, code, message):
    reply = request(orch.url, "POST", "/generate-scene", body)
    error = assert_error(reply.status, reply.headers, reply.raw, 400, code)
    assert error["message"] == message


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b'{"prompt": "caf\xe9"}', 400, "invalid_json"),  # latin-1, not UTF-8
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"prompt": "x", "seed": NaN}', 400, "invalid_json"),
        (b"[" * 8000 + b"]" * 8000, 400, "invalid_json"),  # deep nesting within the size limit
        (b"[" * 100_000 + b"]" * 100_000, 413, "payload_too_large"),
        (b"", 400, "invalid_json"),
    ],
)
def test_malformed_bodies_are_rejected(orch, raw, status, code):
    reply = request(orch.url, "POST", "/generate-scene", raw_body=raw, headers={"Content-Type": "application/json"})
    assert_error(reply.status, reply.headers, reply.raw, status, code)


def test_oversized_body_is_refused_from_its_content_length_without_reading_it(orch):
    status, headers, body = raw_exchange(orch.port, b"POST /generate-scene HTTP/1.1\r\nHost: x\r\n"
                                         b"Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n{")
    error = assert_error(status, headers, body, 413, "payload_too_large")
    assert error["message"] == "body is 999999999 bytes; the limit is 16384 bytes"
    assert headers["connection"] == "close"


def test_a_chunked_body_is_refused(orch):
    status, headers, body = raw_exchange(orch.port, b"POST /generate-scene HTTP/1.1\r\nHost: x\r\n"
                                         b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert_error(status, headers, body, 400, "bad_request")
    assert headers["connection"] == "close"


def test_a_post_without_content_length_is_411(orch):
    status, headers, body = raw_exchange(orch.port, b"POST /generate-scene HTTP/1.1\r\nHost: x\r\n"
                                         b"Content-Type: application/json\r\nConnection: close\r\n\r\n")
    assert_error(status, headers, body, 411, "length_required")


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"prompt": "\\ud800"}', "prompt is not valid Unicode text (it holds an unpaired surrogate)"),
    (b'{"prompt": "ok", "style": "\\udcff"}', "style is not valid Unicode text (it holds an unpaired surrogate)"),
    (b'{"prompt": "a", "prompt": "b"}', "body has the key 'prompt' more than once"),
])
def test_text_that_is_not_unicode_and_duplicate_keys_are_rejected_naming_the_field(orch, raw, message):
    reply = request(orch.url, "POST", "/generate-scene", raw_body=raw, headers={"Content-Type": "application/json"})
    assert assert_error(reply.status, reply.headers, reply.raw, 400, "invalid_json")["message"] == message


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_post_that_is_not_json_is_415(orch, content_type):
    """What a form on another origin could send without a CORS preflight."""
    headers = {"Content-Type": content_type} if content_type else {}
    reply = request(orch.url, "POST", "/generate-scene", raw_body=json.dumps(GOOD).encode(), headers=headers)
    assert_error(reply.status, reply.headers, reply.raw, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "allow"),
    [
        ("GET", "/nope", 404, "not_found", None),
        ("GET", "/status/6f1c1d1e-0000-4000-8000-000000000000", 404, "not_found", None),
        ("GET", "/status/not-a-uuid", 404, "not_found", None),
        ("GET", "/generate-scene", 405, "method_not_allowed", "POST"),
        ("DELETE", "/status/6f1c1d1e-0000-4000-8000-000000000000", 405, "method_not_allowed", "GET, HEAD"),
        ("POST", "/healthz", 405, "method_not_allowed", "GET, HEAD"),
        ("PUT", "/generate-scene", 405, "method_not_allowed", "POST"),
    ],
)
def test_unknown_paths_and_wrong_methods(orch, method, path, status, code, allow):
    reply = request(orch.url, method, path)
    assert_error(reply.status, reply.headers, reply.raw, status, code)
    assert reply.headers.get("allow") == allow


def test_head_on_a_get_route_is_answered_without_a_body(orch):
    """Before: 405. A load balancer or uptime probe may check with HEAD."""
    reply = request(orch.url, "HEAD", "/healthz")
    assert (reply.status, reply.headers["content-length"], reply.raw) == (200, "11", b"")
    unknown = request(orch.url, "HEAD", "/status/6f1c1d1e-0000-4000-8000-000000000000")
    assert (unknown.status, unknown.raw) == (404, b"")
    assert request(orch.url, "HEAD", "/generate-scene").headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET /healthz HTTP/9.9\r\n\r\n", 505, "http_version_not_supported"),
        (b"FROB /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 501, "not_implemented"),
        (b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 431, "headers_too_large"),
        (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(120)) + b"\r\n",
         431, "headers_too_large"),
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"v" * 70_000 + b"\r\n\r\n", 431, "headers_too_large"),
    ],
)
def test_malformed_heads_have_the_same_json_shape(orch, raw, status, code):
    got_status, headers, body = raw_exchange(orch.port, raw)
    assert_error(got_status, headers, body, status, code)
    assert headers["connection"] == "close"


def test_service_keeps_serving_after_the_battery_and_its_log_is_strict_utf8_json(orch):
    reply = request(orch.url, "GET", "/healthz")
    assert (reply.status, reply.json) == (200, {"ok": True})
    orch.lines_when(lambda ls: len(ls) > 40, "the battery's lines")
    raw_lines = orch.log_path.read_bytes().splitlines()
    for raw_line in raw_lines:
        json.loads(raw_line.decode("utf-8", errors="strict"))
    for line in orch.lines():
        assert "Traceback" not in json.dumps(line) or line["level"] == "ERROR"
    assert not [x for x in orch.lines() if x["level"] == "ERROR"]
