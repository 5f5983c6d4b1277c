"""A small JsonHandler app on a real Server, and raw-socket clients, for the httpkit tests.

Its fixtures (``server``, ``port``, ``raw``) are imported by the test modules that use them."""

from __future__ import annotations

import contextlib
import http.client
import socket
import types
from collections.abc import Callable, Iterator

import pytest

import logjson
from conftest import serving_in_thread
from httpkit import HTTPError, JsonHandler, Router
from httpserver import Limits, Server


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


def nodelay(h):
    return 200, {"nodelay": h.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)}


DOC_ETAG = '"doc-v1"'


def big(h):
    """A 1 MB answer: a few fill any socket buffer of a client that does not read."""
    return 200, {"big": "x" * 1_000_000}


def cached_doc(h):
    """A pre-encoded body that clients may cache and revalidate (``If-None-Match``)."""
    status = 304 if h.headers.get("If-None-Match") == DOC_ETAG else 200
    h.send_body(status, "application/json", b'{"doc":1}', {"ETag": DOC_ETAG, "Cache-Control": "no-cache"})


class AppHandler(JsonHandler):
    router = Router({
        ("GET", "/hello"): hello,
        ("GET", "/big"): big,
        ("HEAD", "/hello"): hello,
        ("POST", "/echo"): echo,
        ("GET", "/items/{item_id}"): item,
        ("DELETE", "/items/{item_id}"): item,
        ("POST", "/items"): created,
        ("GET", "/boom"): boom,
        ("GET", "/gone"): gone,
        ("GET", "/whoami"): whoami,
        ("GET", "/nodelay"): nodelay,
        ("GET", "/doc"): cached_doc,
        ("HEAD", "/doc"): cached_doc,
    })
    error_map = {Gone: lambda exc: HTTPError(410, "gone", str(exc))}

    def _write(self, data: bytes) -> None:
        """Every response leaves through here: record each call's bytes."""
        self.server.app.writes.append(bytes(data))
        super()._write(data)


SMALL_BODIES = Limits(max_body_bytes=64)


@contextlib.contextmanager
def serving_app(limits: Limits = SMALL_BODIES) -> Iterator[Server]:
    """The app on 127.0.0.1 (a free port), served on a thread; ``server.app.writes`` records
    every ``write`` of a response."""
    srv = Server(("127.0.0.1", 0), AppHandler, types.SimpleNamespace(writes=[]), limits)
    with serving_in_thread(srv):
        yield srv


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a new connection; a body goes as application/json unless ``headers`` say."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        sent = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body, {**sent, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


class _Responses:
    """What http.client.HTTPResponse needs of a socket, over one shared buffered reader, so
    that responses read one after another on a connection lose no read-ahead bytes."""

    def __init__(self, sock: socket.socket):
        self._file = sock.makefile("rb")

    def makefile(self, *_args: object, **_kwargs: object) -> _Responses:
        return self

    def read(self, n: int = -1) -> bytes:
        return self._file.read(n)

    def readline(self, limit: int = -1) -> bytes:
        return self._file.readline(limit)

    def readinto(self, buffer: bytearray) -> int:
        return self._file.readinto(buffer)

    def close(self) -> None:
        """HTTPResponse closes its file after each body; the connection stays open."""


class RawExchange:
    """Raw request bytes sent on a new connection; the responses parsed by http.client."""

    def __init__(self, port: int, data: bytes, method: str = "GET"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking everything; read the answer
        self._responses = _Responses(self.sock)
        self.status, self.headers, self.body = self._response(method)

    def _response(self, method: str) -> tuple[int, http.client.HTTPMessage, bytes]:
        resp = http.client.HTTPResponse(self._responses, method=method)
        resp.begin()
        return resp.status, resp.headers, resp.read()

    def next_response(self, method: str = "GET") -> tuple[int, bytes]:
        """``(status, body)`` of the next response on the same connection."""
        status, _, body = self._response(method)
        return status, body

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
        self.sock.close()


def assert_still_serving(port: int) -> None:
    assert call(port, "GET", "/hello")[::2] == (200, b'{"hello":"world"}')


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """The app for a whole test module."""
    with serving_app() as srv:
        yield srv


@pytest.fixture
def port(server: Server) -> int:
    return server.server_address[1]


@pytest.fixture
def raw(port: int) -> Iterator[Callable[..., RawExchange]]:
    """``raw(bytes)``: a RawExchange with the app; every connection is closed after the test."""
    opened: list[RawExchange] = []

    def send(data: bytes, method: str = "GET") -> RawExchange:
        opened.append(RawExchange(port, data, method))
        return opened[-1]

    yield send
    for exchange in opened:
        exchange.close()
