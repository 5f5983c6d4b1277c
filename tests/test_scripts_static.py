"""scripts/: shellcheck and the shell conventions for every bash script, and the smoke test
(smoke-test.sh and its PowerShell port, each test run on both): usage handling, exit codes, and
runs against a scripted stub orchestrator (the real stack is exercised by test_e2e_smoke.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import scriptrun
from conftest import find_tool, free_port

SCRIPTS = sorted(scriptrun.SCRIPTS.glob("*.sh"))
LIBRARIES = sorted(scriptrun.SCRIPTS.glob("lib/*.sh"))  # sourced by the scripts, not run
SMOKE_ENV_VARS = {"BASE_URL", "SMOKE_TIMEOUT_SECONDS", "SMOKE_POLL_INTERVAL_SECONDS", "PROMPT", "SEED", "STYLE"}
STRICT_MODE = "set -o errexit -o nounset -o pipefail"
REQUEST_ID = re.compile(r"smoke-[0-9a-f]{12}")
ELAPSED = re.compile(r"^\[ *\d+\.\ds\]", re.MULTILINE)
TOOK = re.compile(r"^((?:PASS|FAIL)(?: job \S+)? in )\d+\.\ds", re.MULTILINE)


def plain(stdout: str) -> list[str]:
    """stdout's lines with the request id and the times (progress and last line) made literal."""
    return TOOK.sub(r"\1<t>s", ELAPSED.sub("[t]", REQUEST_ID.sub("<id>", stdout))).splitlines()


@pytest.fixture(params=scriptrun.variants("smoke-test"))
def smoke(request):
    """scripts/smoke-test.sh, then scripts/smoke-test.ps1."""
    return request.param


def run_smoke(script, *args: str, timeout: float = 60, **env: str):
    """Runs the smoke script with the caller's settings and none from the developer's shell."""
    clean = {k: v for k, v in os.environ.items() if k not in SMOKE_ENV_VARS}
    return scriptrun.run(script, *args, env={**clean, **env}, timeout=timeout)


def test_the_known_scripts_exist():
    assert [p.name for p in SCRIPTS] == ["bootstrap-state.sh", "deploy.sh", "smoke-test.sh", "trace.sh",
                                         "verify-deployment.sh"]
    assert [p.name for p in LIBRARIES] == ["aws.sh", "errors.sh"]
    assert [p.name for p in LIBRARIES] == ["aws.sh", "errors.sh"]


@pytest.mark.parametrize("script", SCRIPTS + LIBRARIES, ids=lambda p: p.name)
def test_shellcheck_reports_nothing(script):
    """-x: each script is checked with the library it sources."""
    proc = subprocess.run([find_tool("shellcheck"), "-x", str(script)], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_sources_the_shared_error_functions_instead_of_its_own(script):
    text = script.read_text(encoding="utf-8")
    assert 'source "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"' in text.splitlines()
    assert "die() {" not in text and "usage_error() {" not in text


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_follows_the_shell_conventions(script):
    lines = script.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert lines[1] == "#" and lines[2].startswith("# "), "header comment after the shebang"
    assert STRICT_MODE in lines
    assert "usage() {" in lines
    assert [line for line in lines if line.strip()][-1] == 'main "$@"'
    assert os.access(script, os.X_OK)


# Each script's synopsis and exit-status line, as its usage prints them.
USAGE_ENDS = {
    "deploy": ("IMAGE_TAG", "Exit status: 0 deployed and verified, 1 deploy failed, 2 bad usage."),
    "smoke-test": ("[options] [BASE_URL]", "Exit status: 0 job done; 1 unreachable, job failed or timed out; 2 bad usage."),
    "trace": ("[options] JOB_ID [LOG_FILE...]",
              "Exit status: 0 lines found; 1 no lines found or the AWS CLI failed; 2 bad usage."),
    "verify-deployment": ("[options] BASE_URL", "Exit status: 0 no check failed; 1 a check failed; 2 bad usage."),
}


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("script", [v for stem in USAGE_ENDS for v in scriptrun.variants(stem, named=True)])
def test_help_prints_the_usage_on_stdout_and_exits_0(script, flag):
    synopsis, exit_status = USAGE_ENDS[script.stem]
    proc = scriptrun.run(script, flag)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith(f"Usage: {script.name} {synopsis}\n")
    assert proc.stdout.endswith(f"\n{exit_status}\n")


def test_smoke_usage_documents_its_environment_variables(smoke):
    proc = run_smoke(smoke, "--help")
    assert [name for name in sorted(SMOKE_ENV_VARS) if f"env {name}," not in proc.stdout] == []


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--bogus"], {}, "unknown option: --bogus"),
    (["http://a", "http://b"], {}, "too many arguments: http://b"),
    (["--timeout", "abc"], {}, "timeout must be a whole number of seconds > 0, got 'abc'"),
    ([], {"SMOKE_TIMEOUT_SECONDS": "1.5"}, "timeout must be a whole number of seconds > 0, got '1.5'"),
    (["--interval", "soon"], {}, "interval must be a number of seconds, got 'soon'"),
    (["--seed", "12x"], {}, "seed must be an integer, got '12x'"),
    (["--prompt", ""], {}, "prompt must not be empty"),
    (["--timeout"], {}, "--timeout needs a value"),
])
def test_bad_usage_exits_2_with_the_reason_and_usage_on_stderr(smoke, args, env, message):
    proc = run_smoke(smoke, *args, **env)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines()[:2] == [f"{smoke.name}: {message}",
                                            f"Usage: {smoke.name} [options] [BASE_URL]"]


def test_unreachable_base_url_exits_1_naming_the_url(smoke):
    base = f"http://127.0.0.1:{free_port()}"
    proc = run_smoke(smoke, base)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == f"{smoke.name}: cannot reach {base}/healthz"
    assert plain(proc.stdout) == [f"smoke test of {base} (X-Request-Id: <id>)",
                                  f"FAIL in <t>s: cannot reach {base}/healthz"]


def test_base_url_comes_from_the_environment_without_an_argument(smoke):
    base = f"http://127.0.0.1:{free_port()}"
    proc = run_smoke(smoke, BASE_URL=base + "/")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == f"{smoke.name}: cannot reach {base}/healthz"


# --- the smoke script against a scripted stub orchestrator ------------------------------------

class StubOrchestrator(ThreadingHTTPServer):
    """Answers /healthz and /generate-scene, then one scripted /status document per poll
    (the last one forever); records every request."""

    daemon_threads = True

    def __init__(self, statuses: list[dict], submit: tuple[int, dict | bytes] | None = None):
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.statuses = list(statuses)
        self.submit = submit or (202, {"jobId": "job-1", "statusUrl": "/status/job-1"})
        self.requests: list[tuple[str, str, str | None, bytes]] = []
        self.base_url = f"http://127.0.0.1:{self.server_port}"


class StubHandler(BaseHTTPRequestHandler):
    server: StubOrchestrator

    def log_message(self, *args):
        pass

    def answer(self, status: int, doc: dict | bytes) -> None:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.command, self.path, self.headers.get("X-Request-Id"), body))

    def do_GET(self):
        self.record()
        if self.path == "/healthz":
            self.answer(200, {"ok": True})
        elif self.path == "/status/job-1":
            doc = self.server.statuses.pop(0) if len(self.server.statuses) > 1 else self.server.statuses[0]
            self.answer(200, {"jobId": "job-1", "result": None, "error": None, **doc})
        else:
            self.answer(404, {"error": {"code": "not_found", "message": self.path}})

    def do_POST(self):
        self.record()
        self.answer(*self.server.submit)


@pytest.fixture
def stub():
    servers = []

    def start(statuses, submit=None):
        server = StubOrchestrator(statuses, submit)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


DONE = [
    {"state": "queued", "progress": 0.0},
    {"state": "running", "progress": 0.35},
    {"state": "running", "progress": 0.35},
    {"state": "running", "progress": 0.7},
    {"state": "done", "progress": 1.0, "result": {"digest": "ab12", "rooms": [1, 2]}},
]
PROGRESS = ["[t] queued     0%", "[t] running   35%", "[t] running   70%", "[t] done     100%"]


def test_done_job_prints_each_change_once_then_pass_with_the_job_and_its_time_and_exits_0(smoke, stub):
    server = stub(DONE)
    proc = run_smoke(smoke, server.base_url, "--interval", "0.01", PROMPT="a lit cellar", SEED="7", STYLE="quake")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert plain(proc.stdout) == [
        f"smoke test of {server.base_url} (X-Request-Id: <id>)",
        "healthz ok",
        "job job-1 submitted",
        *PROGRESS,
        "PASS job job-1 in <t>s",
    ]
    assert [(method, path) for method, path, _, _ in server.requests] == [
        ("GET", "/healthz"), ("POST", "/generate-scene")] + [("GET", "/status/job-1")] * 5
    request_ids = {request_id for _, _, request_id, _ in server.requests}
    assert request_ids == set(REQUEST_ID.findall(proc.stdout))
    assert len(request_ids) == 1
    assert json.loads(server.requests[1][3]) == {"prompt": "a lit cellar", "seed": 7, "style": "quake"}


@pytest.mark.parametrize("flag", ["--quiet", "-q"])
def test_quiet_prints_only_the_progress_and_the_last_line(smoke, stub, flag):
    proc = run_smoke(smoke, stub(DONE).base_url, flag, "--interval", "0.01")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert plain(proc.stdout) == [*PROGRESS, "PASS job job-1 in <t>s"]


@pytest.mark.parametrize("flag", ["--verbose", "-v"])
def test_verbose_also_prints_the_result_json_before_the_last_line(smoke, stub, flag):
    proc = run_smoke(smoke, stub(DONE).base_url, flag, "--interval", "0.01")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert plain(proc.stdout)[3:] == [
        *PROGRESS, "result:", "{", '  "digest": "ab12",', '  "rooms": [', "    1,", "    2", "  ]", "}",
        "PASS job job-1 in <t>s"]


def test_failed_job_prints_the_error_on_stderr_and_exits_1(smoke, stub):
    server = stub([
        {"state": "running", "progress": 0.5},
        {"state": "failed", "progress": 0.5, "error": "worker unreachable after 3 attempts"},
    ])
    proc = run_smoke(smoke, "--interval", "0.01", BASE_URL=server.base_url)
    assert proc.returncode == 1
    assert proc.stderr == f"{smoke.name}: job job-1 failed: worker unreachable after 3 attempts\n"
    assert plain(proc.stdout)[-3:] == ["[t] running   50%", "[t] failed    50%",
                                       "FAIL job job-1 in <t>s: job job-1 failed: worker unreachable after 3 attempts"]
    assert json.loads(server.requests[1][3]) == {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}


def test_job_still_running_at_the_timeout_exits_1(smoke, stub):
    server = stub([{"state": "running", "progress": 0.2}])
    proc = run_smoke(smoke, server.base_url, "-t", "1", "-i", "0.05", STYLE="")
    assert proc.returncode == 1
    assert proc.stderr == f"{smoke.name}: job job-1 not finished after 1s (last: running 20%)\n"
    assert plain(proc.stdout)[-2:] == ["[t] running   20%",
                                       "FAIL job job-1 in <t>s: job job-1 not finished after 1s (last: running 20%)"]
    assert json.loads(server.requests[1][3]) == {"prompt": "a spooky hallway", "seed": 123}


def test_rejected_submission_prints_the_answer_and_exits_1(smoke, stub):
    """A seed past 64 bits is sent as the integer it is: the server, not the script, refuses it."""
    error = {"error": {"code": "invalid_request", "message": "seed must fit a signed 64-bit integer"}}
    server = stub([{"state": "queued", "progress": 0}], submit=(400, error))
    proc = run_smoke(smoke, server.base_url, "--seed", "-099999999999999999999")
    assert proc.returncode == 1
    assert proc.stderr == f"{smoke.name}: POST /generate-scene answered HTTP 400: {json.dumps(error)}\n"
    assert plain(proc.stdout)[-1] == f"FAIL in <t>s: POST /generate-scene answered HTTP 400: {json.dumps(error)}"
    assert [path for _, path, _, _ in server.requests] == ["/healthz", "/generate-scene"]
    assert json.loads(server.requests[1][3]) == {"prompt": "a spooky hallway", "seed": -99999999999999999999,
                                                 "style": "doom"}


def test_an_answer_that_is_not_json_exits_1_saying_so(smoke, stub):
    server = stub([{"state": "queued", "progress": 0}], submit=(202, b"<html>accepted</html>"))
    proc = run_smoke(smoke, server.base_url)
    assert proc.returncode == 1
    assert proc.stderr == f"{smoke.name}: the server did not answer JSON\n"
    assert plain(proc.stdout)[-1] == "FAIL in <t>s: the server did not answer JSON"
