"""Request framing on a real server, with raw sockets: nothing a client sends can make the
server read part of one request as another (request smuggling), a slow or huge head cannot
hold a thread, connections are capped, and a stopping server says so.

Each smuggling test sends a request that hides a second one, ``GET /boom`` (which would
answer 500), followed by a real ``GET /whoami``; the server must either answer the real
request next (the hidden bytes were read as a body) or refuse the whole and close."""

from __future__ import annotations

import json
import socket
import time

import pytest

from httpapp import RawExchange, assert_still_serving, port, raw, serving_app, server
from httpserver import Limits
from polling import wait_until

HIDDEN = b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n"
REAL = b"GET /whoami HTTP/1.1\r\nHost: t\r\nX-Request-Id: real-one\r\n\r\n"


def assert_refused_and_closed(ex: RawExchange, message: str) -> None:
    assert (ex.status, ex.headers["Connection"], json.loads(ex.body)) == (
        400, "close", {"error": {"code": "bad_request", "message": message}})
    assert ex.server_closed()


def no_unhandled_errors(logs) -> bool:
    return not [x for x in logs.lines() if x["message"] == "unhandled error"]


# -- bodies the handler does not read are drained, never parsed as requests ------------


@pytest.mark.parametrize("first", [
    b"GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(HIDDEN),
    b"GET /missing HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(HIDDEN),
    b"PUT /hello HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(HIDDEN),
    b"DELETE /items/1 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(HIDDEN),
], ids=["get-with-body", "404-with-body", "405-with-body", "unread-body"])
def test_an_unread_body_is_drained_and_the_next_request_is_the_clients(raw, logs, first):
    ex = raw(first + HIDDEN + REAL)
    assert ex.status in (200, 404, 405)
    assert ex.next_response() == (200, b'{"requestId":"real-one"}')
    assert no_unhandled_errors(logs)


def test_an_unread_body_above_the_limit_closes_the_connection_after_the_answer(raw, logs):
    padding = b"x" * 100  # over the test server's 64-byte body limit
    ex = raw(b"GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (len(padding) + len(HIDDEN))
             + padding + HIDDEN)
    assert (ex.status, ex.headers["Connection"]) == (200, "close")
    assert ex.server_closed()
    assert no_unhandled_errors(logs)


# -- ambiguous framing is refused with 400 and the connection closed -------------------


@pytest.mark.parametrize(("head", "message"), [
    (b"GET /hello HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
     "Transfer-Encoding is not accepted in requests; send the body with Content-Length"),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
     "Transfer-Encoding is not accepted in requests; send the body with Content-Length"),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
     "Transfer-Encoding is not accepted in requests; send the body with Content-Length"),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 34\r\n\r\n",
     "header content-length appears more than once"),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
     "header content-length appears more than once"),
    (b"GET /hello HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", "header host appears more than once"),
    (b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Foo: a\rContent-Length: 14\r\n\r\n",
     "header X-Foo holds a control character (CR, LF, NUL, ...)"),
    (b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Foo: a\x00b\r\n\r\n", "header X-Foo holds a control character (CR, LF, NUL, ...)"),
    (b"GET /hello HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n",
     "a header line must be NAME: VALUE with a token name and no space before the colon"),
    (b"GET /hello HTTP/1.1\r\nHost: t\r\nX\x00Foo: a\r\n\r\n",
     "a header line must be NAME: VALUE with a token name and no space before the colon"),
    (b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Foo: a\r\n b\r\n\r\n", "obsolete line folding is not accepted in headers"),
    (b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Foo: a\nContent-Length: 14\r\n\r\n",
     "lines of the request head must end with CRLF"),
    (b"GET /hello HTTP/1.1\nHost: t\n\n", "lines of the request head must end with CRLF"),
    (b"GET /hello HTTP/1.1\r\nNoColonHere\r\n\r\n",
     "a header line must be NAME: VALUE with a token name and no space before the colon"),
], ids=["te-on-get", "cl-and-te", "te-gzip", "two-content-lengths", "duplicate-content-length", "two-hosts",
        "bare-cr-in-value", "nul-in-value", "space-before-colon", "nul-in-name", "obs-fold", "bare-lf-in-head",
        "lf-only-head", "no-colon"])
def test_ambiguous_heads_are_refused_with_400_and_the_connection_closed(raw, logs, port, head, message):
    ex = raw(head + HIDDEN)
    assert_refused_and_closed(ex, message)
    assert no_unhandled_errors(logs)
    assert_still_serving(port)


def test_pipelined_requests_are_answered_in_order_on_one_connection(raw):
    ex = raw(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n"
             b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"n\":2}"
             b"GET /items/3 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (ex.status, ex.body) == (200, b'{"item":"1"}')
    assert ex.next_response("POST") == (200, b'{"n":2}')
    assert ex.next_response() == (200, b'{"item":"3"}')


def test_empty_lines_before_a_request_are_ignored(raw):
    ex = raw(b"\r\n\r\nGET /items/9 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (ex.status, ex.body) == (200, b'{"item":"9"}')


def test_responses_go_out_with_tcp_nodelay(raw):
    """Without it a response written after another on a keep-alive connection waits ~40 ms
    for the client's delayed ACK."""
    ex = raw(b"GET /nodelay HTTP/1.1\r\nHost: t\r\n\r\n")
    assert json.loads(ex.body) == {"nodelay": 1}


# -- bounded resources -------------------------------------------------------------------


def test_a_head_trickled_byte_by_byte_is_cut_off_at_the_head_deadline_not_per_byte():
    with serving_app(Limits(head_timeout_seconds=0.5)) as srv, \
            socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10) as sock:
        started = time.monotonic()
        sent = b""
        received = b""
        for byte in b"GET /hello HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sent += bytes([byte])
            sock.settimeout(0.1)  # one byte every 0.1 s: each byte well inside any per-read timeout
            try:
                received += sock.recv(65536)
            except TimeoutError:
                continue
            if received:
                break
        elapsed = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), received
    assert b'"message":"the request head was not complete within 0.5 s"' in received
    assert elapsed < 5, f"the slow head held the connection for {elapsed:.1f} s"
    assert len(sent) < 200


def test_a_head_over_the_byte_cap_is_431():
    with serving_app(Limits(max_head_bytes=2048)) as srv:
        ex = RawExchange(srv.server_address[1], b"GET /hello HTTP/1.1\r\nX-Big: " + b"v" * 3000 + b"\r\n\r\n")
        try:
            assert (ex.status, json.loads(ex.body)) == (431, {"error": {
                "code": "headers_too_large", "message": "the request head is larger than 2048 bytes"}})
            assert ex.server_closed()
        finally:
            ex.close()


def test_past_max_connections_a_new_connection_gets_a_fast_503_and_is_closed():
    with serving_app(Limits(max_connections=2)) as srv:
        port = srv.server_address[1]
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            for sock in held:  # both are being served (their threads hold the two slots)
                sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
            ex = RawExchange(port, b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (ex.status, ex.headers["Retry-After"], ex.headers["Connection"], json.loads(ex.body)) == (
                503, "1", "close", {"error": {"code": "too_many_connections", "message":
                                              "this server has its maximum of connections open; retry shortly"}})
            assert ex.server_closed()
            ex.close()
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: RawExchange(port, b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n").status == 200, 10,
                   "a slot freed by a closed connection")


def test_a_stopping_server_answers_503_and_closes_a_keep_alive_connection():
    with serving_app() as srv, socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        srv.stopping.set()
        sock.sendall(b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nConnection: close" in head and b"\r\nRetry-After: 1" in head
    assert json.loads(body) == {"error": {"code": "shutting_down",
                                          "message": "this server is shutting down; retry on a new connection"}}


def test_a_client_that_stops_reading_does_not_hold_up_the_others():
    """With one CPU slot, a handler blocked writing to a client that reads nothing must
    give its slot up: pipelined requests pile answers into the socket until it is full."""
    with serving_app(Limits(cpu_slots=1)) as srv:
        port = srv.server_address[1]
        with socket.socket() as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", port))
            stalled.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" * 40)  # 40 MB of answers, never read
            wait_until(lambda: srv.active._marks, 10, "the stalled client's handler blocked on its write")
            ex = RawExchange(port, b"GET /items/5 HTTP/1.1\r\nHost: t\r\n\r\n")
            try:
                assert (ex.status, ex.body) == (200, b'{"item":"5"}')
            finally:
                ex.close()
