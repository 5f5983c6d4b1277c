"""Shared fixtures: free loopback ports, a real moto server, and AWS test credentials."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator

import pytest

import logjson
from logcapture import capture_logs
from polling import wait_until

ROOT = pathlib.Path(__file__).resolve().parent.parent  # on sys.path, with tests/: see pytest.ini

# No test may reach real AWS, whatever the developer's shell holds.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
for _key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
    os.environ.pop(_key, None)
os.environ.update(AWS_TEST_ENV)


# In-process servers may log after a test's ``logs`` capture ended (the access line follows
# the response): between tests their lines go nowhere rather than to the runner's output.
class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


logjson.log.stream = _Discard()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_ok(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200, or fail after ``timeout`` seconds."""
    def answers() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200

    wait_until(answers, timeout, f"200 from {url}", 0.05, ignoring=(OSError,))


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def find_tool(name: str) -> str:
    """A tool installed by requirements-dev.txt, in this interpreter's bin dir or on PATH."""
    path = shutil.which(name, path=os.pathsep.join([str(pathlib.Path(sys.executable).parent),
                                                     os.environ.get("PATH", "")]))
    if path is None:
        pytest.fail(f"{name} not found: pip install -r requirements-dev.txt")
    return path


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel does) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def refused_port():
    """A port bound without listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(autouse=True)
def logs():
    """This process's log lines while the test runs (service ``test``), parsed: in-process
    code never writes to the runner's output."""
    with capture_logs("test") as sink:
        yield sink


@contextlib.contextmanager
def serving_in_thread(server) -> Iterator[int]:
    """Run a socketserver in a daemon thread; yield its port; shut it down after."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class MotoServer:
    """A moto server process on a free loopback port."""

    def __init__(self, extra_env: dict[str, str] | None = None, port: int | None = None,
                 program: tuple[str, ...] = ("-m", "moto.server")):
        self.extra_env, self.program = extra_env, program
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **AWS_TEST_ENV, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", **(extra_env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, *program, "-H", "127.0.0.1", "-p", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_http_ok(f"{self.endpoint}/moto-api/", timeout=30, proc=self.proc)

    def env(self) -> dict[str, str]:
        """Environment for a process (boto3, AWS CLI, terraform) that should talk to this server."""
        return {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    @classmethod
    def restart(cls, old: MotoServer) -> MotoServer:
        """A new, empty server on the same port as ``old`` (which must be stopped)."""
        return cls(old.extra_env, port=old.port, program=old.program)

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=10).close()

    def stop(self) -> None:
        stop_process(self.proc)


def create_table(server: MotoServer, name: str) -> dict[str, str]:
    """Create jobs table ``name`` on ``server`` with ``python dynamostore.py create-table``;
    returns the environment for services that use it."""
    env = {**server.env(), "JOBS_TABLE_NAME": name}
    result = subprocess.run([sys.executable, "dynamostore.py", "create-table"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return env


@pytest.fixture(scope="session")
def moto_server():
    """One moto server for the session (use unique resource names, or ``reset()``)."""
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dynalite_server():
    """One dynalite server for the session (a DynamoDB-protocol server that locks each item,
    as DynamoDB does: the races belong on it, not on moto)."""
    from dynalite_server import INSTALL_HINT, DynaliteServer, ensure_dynalite

    executable = ensure_dynalite()
    if executable is None:
        pytest.skip(INSTALL_HINT)
    server = DynaliteServer(executable)
    yield server
    server.stop()


class Service:
    """One of our services (``orchestrator.py`` / ``worker.py``) as a real process on a
    free loopback port (or ``port``, to restart a service where its clients expect it), its
    stdout captured to a file of its own so tests can read its log lines."""

    _started = itertools.count(1)

    def __init__(self, script: str, tmp_path: pathlib.Path, env: dict[str, str] | None = None,
                 wait: bool = True, port: int | None = None):
        self.script = script
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"{pathlib.Path(script).stem}-{self.port}-{next(self._started)}.log"
        # Lines at once (LOG_FLUSH_MS=0): tests read a service's lines right after the event they
        # report. Batching (the default, 50 ms) has tests of its own, which set it explicitly.
        full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "PYTHONUNBUFFERED": "1",
                    "LOG_FLUSH_MS": "0", **(env or {})}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the process's stdout until stop()
        self.proc = subprocess.Popen([sys.executable, str(ROOT / script)], env=full_env, cwd=ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            wait_http_ok(f"{self.url}/healthz", proc=self.proc)

    def lines(self) -> list[dict]:
        """Every complete stdout line, parsed as JSON (a line that is not JSON fails the test)."""
        text = self.log_path.read_text(encoding="utf-8")
        complete = text[:text.rfind("\n") + 1]  # a batch may be half written right now
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def lines_when(self, ready: Callable[[list[dict]], object], what: str, timeout: float = 10) -> list[dict]:
        """The lines, once ``ready(lines)`` holds: services write their lines in batches
        (LOG_FLUSH_MS), so a line can follow the event it reports by a few tens of ms."""
        def probe() -> list[dict] | None:
            lines = self.lines()
            return lines if ready(lines) else None

        return wait_until(probe, timeout, what)

    def raw_output(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def services(tmp_path):
    """Factory: ``services("worker.py", env={...})``; every process is killed at teardown."""
    started: list[Service] = []

    def start(script: str, env: dict[str, str] | None = None, wait: bool = True, port: int | None = None) -> Service:
        svc = Service(script, tmp_path, env, wait, port)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture
def stack(services):
    """Factory for a worker + orchestrator pair (in-memory store unless env says otherwise)."""

    def start(worker_env: dict[str, str] | None = None, orchestrator_env: dict[str, str] | None = None):
        worker = services("worker.py", {"WORK_MS": "2000", **(worker_env or {})})
        orch = services("orchestrator.py", {"WORKER_URL": worker.url, **(orchestrator_env or {})})
        return worker, orch

    return start
