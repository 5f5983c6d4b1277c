"""Unit tests for httphead: what a parsed head holds (the refusals are tested over real
sockets in test_httpkit_framing.py and test_httpkit.py)."""

from __future__ import annotations

import socket

import pytest

from httphead import ConnectionReader, HeadError, Headers, HeadTimeout, parse_head


def test_a_head_parses_to_method_target_version_headers_and_framing():
    head = parse_head(b"POST /generate-scene?x=1 HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 12\r\n"
                      b"X-Request-Id:  abc \t\r\nAccept: a\r\nAccept: b\r\n\r\n")
    assert (head.method, head.target, head.version, head.content_length, head.keep_alive) == (
        "POST", "/generate-scene?x=1", "HTTP/1.1", 12, True)
    assert dict(head.headers) == {"host": "a", "content-length": "12", "x-request-id": "abc", "accept": "a, b"}


def test_headers_ignore_the_case_of_names():
    headers = Headers({"x-request-id": "r"})
    assert (headers.get("X-Request-Id"), headers["X-REQUEST-ID"], "X-Request-ID" in headers, headers.get("Nope")) == (
        "r", "r", True, None)


@pytest.mark.parametrize(("version", "connection", "keep_alive"), [
    (b"HTTP/1.1", None, True), (b"HTTP/1.1", b"close", False), (b"HTTP/1.1", b"Keep-Alive, Close", False),
    (b"HTTP/1.0", None, False), (b"HTTP/1.0", b"keep-alive", True),
])
def test_keep_alive_follows_the_version_and_the_connection_header(version, connection, keep_alive):
    extra = b"Connection: %s\r\n" % connection if connection else b""
    assert parse_head(b"GET / " + version + b"\r\n" + extra + b"\r\n").keep_alive is keep_alive


def test_obs_text_in_a_value_is_kept_as_latin_1():
    assert parse_head(b"GET / HTTP/1.1\r\nX-Name: caf\xe9\r\n\r\n").headers["x-name"] == "caf\xe9"


def test_a_head_without_its_empty_line_is_refused():
    with pytest.raises(HeadError) as info:
        parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert (info.value.status, info.value.message) == (400, "the request head must end with an empty line (CRLF CRLF)")


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_the_reader_keeps_bytes_past_the_head_for_the_body_and_the_next_head(pair):
    client, server = pair
    client.sendall(b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n")
    reader = ConnectionReader(server)
    assert reader.read_head(1, 1, 1024) == b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
    assert reader.read_body(3, 1) == b"abc"
    assert reader.read_head(1, 1, 1024) == b"GET /b HTTP/1.1\r\n\r\n"


def test_the_reader_returns_none_when_the_client_closes_or_stays_silent(pair):
    client, server = pair
    reader = ConnectionReader(server)
    assert reader.read_head(0.05, 1, 1024) is None  # idle
    client.close()
    assert reader.read_head(1, 1, 1024) is None  # closed


def test_the_reader_gives_a_started_head_its_deadline(pair):
    client, server = pair
    client.sendall(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HeadTimeout) as info:
        ConnectionReader(server).read_head(1, 0.05, 1024)
    assert str(info.value) == "the request head was not complete within 0.05 s"


def test_the_reader_refuses_a_head_at_one_byte_over_the_cap_and_takes_one_at_the_cap(pair):
    client, server = pair
    head = b"GET / HTTP/1.1\r\nX: " + b"v" * 100 + b"\r\n\r\n"
    client.sendall(head + head)
    reader = ConnectionReader(server)
    assert reader.read_head(1, 1, len(head)) == head
    with pytest.raises(HeadError) as info:
        reader.read_head(1, 1, len(head) - 1)
    assert (info.value.status, info.value.message) == (431, f"the request head is larger than {len(head) - 1} bytes")
