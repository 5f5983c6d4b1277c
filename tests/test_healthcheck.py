"""healthcheck.py against real loopback servers: 2xx is healthy, anything else exits 1 with one line.

The script run from the image's files against the real services is in tests/test_dockerfile.py.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
from collections.abc import Iterator

import pytest

import healthcheck
from conftest import free_port, serving_in_thread


@contextlib.contextmanager
def answering(status: int) -> Iterator[tuple[int, list[str]]]:
    """A server on 127.0.0.1 (port 0) answering every GET with ``status``; yields (port, paths asked)."""
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, fmt: str, *args: object) -> None:
            pass  # keep the test output clean

    with serving_in_thread(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield port, paths


@pytest.mark.parametrize("status", [200, 204])
def test_a_2xx_answer_on_healthz_exits_0_and_prints_nothing(status, capsys):
    with answering(status) as (port, paths):
        assert healthcheck.main({"PORT": str(port)}) == 0
    assert paths == ["/healthz"]
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("status", [503, 500, 404, 301])
def test_any_other_answer_exits_1_with_one_line_on_stderr(status, capsys):
    """301 included: a redirect is not followed."""
    with answering(status) as (port, paths):
        assert healthcheck.main({"PORT": str(port)}) == 1
    assert paths == ["/healthz"]
    assert capsys.readouterr() == ("", f"healthcheck: http://127.0.0.1:{port}/healthz: answered {status}\n")


def test_nothing_listening_exits_1_naming_the_refusal(capsys):
    port = free_port()
    assert healthcheck.main({"PORT": str(port)}) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"healthcheck: http://127.0.0.1:{port}/healthz: ")
    assert "Connection refused" in err
    assert len(err.splitlines()) == 1


def test_a_listener_that_never_answers_fails_after_the_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepted by the kernel, never read or answered
        assert healthcheck.check(listener.getsockname()[1], timeout=0.2) == "timed out"


def test_port_defaults_to_8080_when_unset_or_empty():
    assert (healthcheck.port_from({}), healthcheck.port_from({"PORT": ""})) == (8080, 8080)
    assert healthcheck.port_from({"PORT": "8081"}) == 8081


@pytest.mark.parametrize("value", ["http", "-1", "0", "65536", " 8080"])
def test_a_bad_port_exits_1_naming_the_value(value, capsys):
    assert healthcheck.main({"PORT": value}) == 1
    assert capsys.readouterr() == ("", f"healthcheck: PORT must be an integer from 1 to 65535, got {value!r}\n")
