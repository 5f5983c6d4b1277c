"""Strict HTTP/1.1 request heads: read one within a deadline and a size cap, then parse it.

Why not the standard library's parser: ``http.client.parse_headers`` hands the head to the
``email`` package, which is lenient where a proxy in front of us may not be (it splits lines
on a bare CR, accepts whitespace before the colon and obs-fold, keeps the first of two
``Content-Length`` headers). Two parsers disagreeing about where a request ends is how
requests get smuggled. This module accepts only what RFC 9112 allows and refuses the rest
with a ``HeadError`` (400, or 414/431/501/505), after which the server closes the
connection. It is also a fraction of the stdlib parser's cost per request.

``ConnectionReader`` owns the read side of one connection: it waits for the next request
up to the keep-alive idle timeout, then gives the whole head ``head_timeout`` seconds from
its first byte (a client trickling one byte a second cannot hold a thread for longer), and
keeps bytes past the head (a body, a pipelined request) for the next read.
"""

from __future__ import annotations

import re
import socket
import time
from typing import NamedTuple

MAX_HEADER_COUNT = 100
MAX_TARGET_BYTES = 8 * 1024
# The standard methods that take a path (RFC 9110's but CONNECT, PATCH, and QUERY, the IETF's
# safe method with a body): a route without one answers 405 + Allow; any other method is 501.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY"})
# Headers that must appear at most once: two of them are ambiguous, and ambiguity in
# framing (Content-Length, Transfer-Encoding, Host) is what smuggling exploits.
SINGLETONS = frozenset({"content-length", "transfer-encoding", "host", "content-type", "authorization",
                        "idempotency-key", "expect"})

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# The common, valid shapes in one match each; anything else goes through the checks that
# name what is wrong (_request_line, _field).
_PLAIN_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (/[\x21-\x7e]*) (HTTP/1\.[01])")
_PLAIN_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*")
# A field value: visible ASCII, obs-text (0x80-0xFF), space and tab; nothing else (no CR, LF, NUL).
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_TARGET = re.compile(rb"/[\x21-\x7e]*|\*")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
_RECV_BYTES = 64 * 1024


class HeadError(Exception):
    """The request head is malformed or too large; answer ``status`` and close."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Headers(dict[str, str]):
    """Request headers by lower-case name; ``get``/``[]``/``in`` ignore the name's case."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class Head(NamedTuple):
    """A parsed request head. ``content_length`` is 0 when the header is absent. (A tuple:
    one is built per request, and a frozen dataclass costs several times as much.)"""

    method: str
    target: str
    version: str
    headers: Headers
    content_length: int
    keep_alive: bool


def parse_head(data: bytes) -> Head:
    """Parse a head that ends with an empty line; ``HeadError`` for anything RFC 9112 refuses."""
    if not data.endswith(b"\r\n\r\n"):
        raise HeadError(400, "bad_request", "the request head must end with an empty line (CRLF CRLF)")
    lines = data[:-4].split(b"\r\n")
    plain = _PLAIN_REQUEST_LINE.fullmatch(lines[0])
    if plain and len(plain[2]) <= MAX_TARGET_BYTES and plain[1].decode("ascii") in METHODS:
        method, target, version = plain[1].decode("ascii"), plain[2].decode("ascii"), plain[3].decode("ascii")
    else:
        method, target, version = _request_line(lines[0])
    if len(lines) - 1 > MAX_HEADER_COUNT:
        raise HeadError(431, "headers_too_large", f"more than {MAX_HEADER_COUNT} header fields")
    headers = Headers()
    for line in lines[1:]:
        field = _PLAIN_FIELD.fullmatch(line)
        if field:
            name, value = field[1].lower().decode("ascii"), field[2].decode("latin-1")
        else:
            name, value = _field(line)
        if dict.__contains__(headers, name):
            if name in SINGLETONS:
                raise HeadError(400, "bad_request", f"header {name} appears more than once")
            value = f"{dict.__getitem__(headers, name)}, {value}"
        dict.__setitem__(headers, name, value)
    return Head(method, target, version, headers, _content_length(headers), _keep_alive(version, headers))


def _request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split(b" ")
    if len(parts) != 3 or not all(parts):
        raise HeadError(400, "bad_request", "the request line must be METHOD SP TARGET SP HTTP-VERSION")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HeadError(400, "bad_request", "the method must be a token")
    version_match = _VERSION.fullmatch(version)
    if version_match is None:
        raise HeadError(400, "bad_request", "the HTTP version must look like HTTP/1.1")
    if version_match.group(1) != b"1":
        raise HeadError(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are supported")
    if len(target) > MAX_TARGET_BYTES:
        raise HeadError(414, "uri_too_long", f"the request target is longer than {MAX_TARGET_BYTES} bytes")
    if not _TARGET.fullmatch(target):
        raise HeadError(400, "bad_request", "the request target must be a path starting with / (origin form)")
    name = method.decode("ascii")
    if name not in METHODS:
        raise HeadError(501, "not_implemented", f"method {name} is not supported")
    return name, target.decode("ascii"), version.decode("ascii")


def _field(line: bytes) -> tuple[str, str]:
    """``(lower-case name, value)`` of one header line."""
    if line[:1] in (b" ", b"\t"):
        raise HeadError(400, "bad_request", "obsolete line folding is not accepted in headers")
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        raise HeadError(400, "bad_request",
                        "a header line must be NAME: VALUE with a token name and no space before the colon")
    value = value.strip(b" \t")
    if not _FIELD_VALUE.fullmatch(value):
        raise HeadError(400, "bad_request",
                        f"header {name.decode('ascii')} holds a control character (CR, LF, NUL, ...)")
    return name.decode("ascii").lower(), value.decode("latin-1")


def _content_length(headers: Headers) -> int:
    if dict.__contains__(headers, "transfer-encoding"):
        raise HeadError(400, "bad_request",
                        "Transfer-Encoding is not accepted in requests; send the body with Content-Length")
    raw = dict.get(headers, "content-length")
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise HeadError(400, "bad_request", f"Content-Length must be a non-negative integer, got {raw!r}")
    return int(raw)


def _keep_alive(version: str, headers: Headers) -> bool:
    connection = dict.get(headers, "connection")
    if connection is None:
        return version == "HTTP/1.1"
    tokens = {t.strip().lower() for t in connection.split(",")}
    if "close" in tokens:
        return False
    return version == "HTTP/1.1" or "keep-alive" in tokens


class HeadTimeout(Exception):
    """The head (or body) did not arrive within its deadline."""


class ConnectionReader:
    """Buffered reads from one connection's socket, each under a deadline."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buf = bytearray()

    def read_head(self, idle_timeout: float, head_timeout: float, max_bytes: int) -> bytes | None:
        """The next request head (through its empty line), or None when the client closed
        the connection or sent nothing for ``idle_timeout`` seconds. Raises ``HeadTimeout``
        if the head is not complete ``head_timeout`` seconds after its first byte, and
        ``HeadError`` when it passes ``max_bytes`` or a line does not end with CRLF."""
        while True:
            while self._buf[:2] == b"\r\n":  # RFC 9112 2.2: ignore empty lines before a request
                del self._buf[:2]
            if self._buf:
                break
            if not self._recv(idle_timeout):
                return None
        deadline = time.monotonic() + head_timeout
        checked = 0
        while True:
            end = self._buf.find(b"\r\n\r\n", max(0, checked - 3))
            stop = end + 4 if end >= 0 else len(self._buf)
            if checked == 0 and end >= 0 and stop <= max_bytes:  # a whole head at once: the usual case
                if self._buf.count(b"\n", 0, stop) != self._buf.count(b"\r\n", 0, stop):
                    raise HeadError(400, "bad_request", "lines of the request head must end with CRLF")
            else:
                self._check_line_ends(checked, min(stop, max_bytes + 1))
            if stop > max_bytes:
                raise HeadError(431, "headers_too_large", f"the request head is larger than {max_bytes} bytes")
            if end >= 0:
                head = bytes(self._buf[:stop])
                del self._buf[:stop]
                return head
            checked = stop
            self._receive_more(deadline, "head", head_timeout)

    def _check_line_ends(self, start: int, stop: int) -> None:
        """``HeadError`` if an LF in ``buf[start:stop]`` has no CR before it."""
        index = self._buf.find(b"\n", start, stop)
        while index >= 0:
            if index == 0 or self._buf[index - 1] != 0x0D:
                raise HeadError(400, "bad_request", "lines of the request head must end with CRLF")
            index = self._buf.find(b"\n", index + 1, stop)

    def read_body(self, length: int, timeout: float) -> bytes:
        """Exactly ``length`` bytes, within ``timeout`` seconds (else ``HeadTimeout``;
        ``ConnectionError`` if the client closes first)."""
        deadline = time.monotonic() + timeout
        while len(self._buf) < length:
            self._receive_more(deadline, "body", timeout)
        body = bytes(self._buf[:length])
        del self._buf[:length]
        return body

    def _receive_more(self, deadline: float, part: str, timeout: float) -> None:
        """Receive more of the request's ``part`` before ``deadline``: ``HeadTimeout`` if
        nothing comes in time, ``ConnectionError`` if the client closes the connection."""
        remaining = deadline - time.monotonic()
        received = self._recv(remaining) if remaining > 0 else None
        if received is None:
            raise HeadTimeout(f"the request {part} was not complete within {timeout:g} s")
        if received == 0:
            raise ConnectionError(f"the client closed the connection in the middle of the request {part}")

    def _recv(self, timeout: float) -> int | None:
        """Append what the socket has, waiting up to ``timeout`` seconds: the number of bytes
        (0 at the end of the stream), or None if nothing came in time."""
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(_RECV_BYTES)
        except TimeoutError:
            return None
        self._buf += data
        return len(data)
