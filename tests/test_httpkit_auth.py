"""Unit tests for httpkit's bearer-token check and the cache-aware ``send_body``, on a real
Server with the small app of tests/httpapp.py."""

from __future__ import annotations

import contextlib
import http.client
import json
import types
from collections.abc import Iterator

import pytest

from conftest import serving_in_thread
from httpapp import SMALL_BODIES, AppHandler, RawExchange, call
from httpkit import HTTPError, check_bearer
from httpserver import Server
from polling import wait_until

TOKEN = "s3cr3t-Token_0123456789"
MISSING = {"error": {"code": "unauthorized", "message": "this route needs Authorization: Bearer <token>"}}
INVALID = {"error": {"code": "unauthorized",
                     "message": "the Authorization header does not hold the bearer token this route needs"}}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


# -- check_bearer -----------------------------------------------------------------------


def test_check_bearer_passes_the_token_with_the_scheme_in_any_case():
    for header in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN} "):
        check_bearer(header, TOKEN)


def test_check_bearer_without_a_header_is_401_asking_for_a_bearer_token():
    with pytest.raises(HTTPError) as info:
        check_bearer(None, TOKEN)
    assert (info.value.status, info.value.body(), info.value.headers) == (401, MISSING, {"WWW-Authenticate": "Bearer"})


@pytest.mark.parametrize("header", [
    "Bearer wrong-token-0123456789", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer",
    "Bearer ", "Bearer é-token",
])
def test_check_bearer_with_another_value_is_401_invalid_token_naming_neither_value(header):
    with pytest.raises(HTTPError) as info:
        check_bearer(header, TOKEN)
    assert (info.value.status, info.value.body(), info.value.headers) == (
        401, INVALID, {"WWW-Authenticate": 'Bearer error="invalid_token"'})


# -- a real server whose app requires the token -----------------------------------------


class TokenAppHandler(AppHandler):
    public_paths = frozenset({"/hello"})

    def bearer_token(self) -> str | None:
        return self.server.app.token


@contextlib.contextmanager
def serving(token: str | None) -> Iterator[Server]:
    srv = Server(("127.0.0.1", 0), TokenAppHandler, types.SimpleNamespace(writes=[], token=token), SMALL_BODIES)
    with serving_in_thread(srv):
        yield srv


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serving(TOKEN) as srv:
        yield srv.server_address[1]


def test_a_route_outside_the_public_paths_without_the_token_is_401_json_with_www_authenticate(port):
    status, headers, body = call(port, "GET", "/items/7")
    assert (status, headers["Content-Type"], headers["WWW-Authenticate"], json.loads(body)) == (
        401, "application/json", "Bearer", MISSING)


def test_a_wrong_token_is_401_invalid_token(port):
    status, headers, body = call(port, "GET", "/items/7", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert (status, headers["WWW-Authenticate"], json.loads(body)) == (401, 'Bearer error="invalid_token"', INVALID)


def test_the_token_opens_every_route(port):
    assert call(port, "GET", "/items/7", headers=BEARER)[::2] == (200, b'{"item":"7"}')
    assert call(port, "POST", "/echo", b'{"a":1}', headers=BEARER)[::2] == (200, b'{"a":1}')


def test_a_public_path_needs_no_token(port):
    assert call(port, "GET", "/hello")[::2] == (200, b'{"hello":"world"}')


def test_routing_comes_first_unknown_path_404_and_wrong_method_405_without_a_token(port):
    assert call(port, "GET", "/nope")[0] == 404
    status, headers, _ = call(port, "PUT", "/items/7")
    assert (status, headers["Allow"]) == (405, "DELETE, GET, HEAD")


def test_a_refused_post_never_reaches_the_handler_and_its_body_is_drained_in_step(port):
    """The handler (here /echo) would read the body: a 401 leaves it unread, and the next
    request on the connection must still start where the client's does."""
    body = b'{"a":1}'
    ex = RawExchange(port, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                     + b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    try:
        assert (ex.status, json.loads(ex.body)) == (401, MISSING)
        assert ex.next_response() == (200, b'{"hello":"world"}')
    finally:
        ex.close()


def test_the_token_never_reaches_a_log_line_or_a_response(port, logs):
    for headers in ({"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "req-auth-ok"},
                    {"Authorization": f"Bearer {TOKEN}-wrong", "X-Request-Id": "req-auth-wrong"}):
        _, response_headers, body = call(port, "GET", "/items/7", headers=headers)
        assert TOKEN not in body.decode() and TOKEN not in str(response_headers)

    def access_lines() -> list[dict]:
        return [x for x in logs.lines() if x["message"] == "request" and x.get("requestId", "").startswith("req-auth")]

    lines = wait_until(lambda: len(access_lines()) == 2 and access_lines())
    assert [(x["requestId"], x["method"], x["path"], x["status"]) for x in lines] == [
        ("req-auth-ok", "GET", "/items/7", 200), ("req-auth-wrong", "GET", "/items/7", 401)]
    assert all(TOKEN not in json.dumps(x) for x in logs.lines())


def test_without_a_token_configured_every_route_is_open():
    with serving(None) as srv:
        assert call(srv.server_address[1], "GET", "/items/7")[::2] == (200, b'{"item":"7"}')


def test_a_keep_alive_connection_can_send_the_token_on_each_request(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for path, headers, expected in (("/items/1", BEARER, 200), ("/items/2", {}, 401), ("/items/3", BEARER, 200)):
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected, path
    finally:
        conn.close()
