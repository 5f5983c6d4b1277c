"""The services' command lines: ``--help`` lists every environment variable with its default
(from the reads of the configuration itself, the source the README test checks too), anything
else is bad usage; a port already in use stops a service with one JSON line."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import pytest

import awsconfig
from conftest import ROOT
from config import variables
from orchestrator import OrchestratorConfig
from worker import WorkerConfig

ROW = re.compile(r"^  ([A-Z][A-Z0-9_]+) +(.+)$", re.M)
SERVICES = {"orchestrator.py": lambda: [*variables(OrchestratorConfig.from_env, {"JOBS_TABLE_NAME": "jobs"}),
                                        *awsconfig.VARIABLES],
            "worker.py": lambda: variables(WorkerConfig.from_env)}


def run(script: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """Before --help existed the service started serving instead: the timeout ends that."""
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "", "PORT": "0"})


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("script", sorted(SERVICES))
def test_help_lists_every_variable_the_service_reads_with_its_default_and_exits_0(script, flag):
    result = run(script, flag)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"usage: python {script} [-h | --help]\n")
    assert dict(ROW.findall(result.stdout)) == dict(SERVICES[script]())
    assert result.stdout.endswith(
        "\nExit status: 0 stopped cleanly (SIGTERM/SIGINT); 2 invalid configuration, port in use or bad usage.\n")


def test_help_shows_literal_defaults_including_one_that_depends_on_another_variable():
    rows = dict(ROW.findall(run("orchestrator.py", "--help").stdout))
    assert {name: rows[name] for name in ("PORT", "WORKER_URL", "JOBS_TABLE_NAME", "SHUTDOWN_GRACE_SECONDS",
                                          "PROGRESS_WRITE_INTERVAL_MS", "API_TOKEN")} == {
        "PORT": "8080", "WORKER_URL": "http://127.0.0.1:8081", "JOBS_TABLE_NAME": "unset",
        "SHUTDOWN_GRACE_SECONDS": "20", "PROGRESS_WRITE_INTERVAL_MS": "0; 1000 when JOBS_TABLE_NAME is set",
        "API_TOKEN": "unset"}
    worker = dict(ROW.findall(run("worker.py", "--help").stdout))
    assert {name: worker[name] for name in ("PORT", "MAX_CONCURRENT_JOBS", "SHUTDOWN_GRACE_SECONDS")} == {
        "PORT": "8081", "MAX_CONCURRENT_JOBS": "16", "SHUTDOWN_GRACE_SECONDS": "25"}


@pytest.mark.parametrize("args", [["--bogus"], ["serve"], ["--help", "extra"]], ids=["option", "word", "help+more"])
@pytest.mark.parametrize("script", sorted(SERVICES))
def test_any_other_argument_is_bad_usage_exit_2_with_the_usage_on_stderr(script, args):
    result = run(script, *args)
    assert (result.returncode, result.stdout) == (2, "")
    first, second = result.stderr.splitlines()[:2]
    assert first == f"{script}: unknown argument(s): {' '.join(args)}; configuration comes from the environment"
    assert second == f"usage: python {script} [-h | --help]"


@pytest.mark.parametrize("script", sorted(SERVICES))
def test_a_port_already_in_use_stops_the_service_with_one_json_line_and_exit_2(script):
    """Before: a Python traceback on stderr and exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, script], cwd=ROOT, capture_output=True, text=True, timeout=30,
                                env={"PATH": "", "PORT": str(port)})
    assert (result.returncode, result.stderr) == (2, "")
    [line] = [json.loads(text) for text in result.stdout.splitlines()]
    assert {k: line[k] for k in ("level", "service", "message", "reason")} == {
        "level": "ERROR", "service": script.removesuffix(".py"), "message": "cannot listen",
        "reason": f"cannot listen on 127.0.0.1:{port}: Address already in use; stop what listens there or set "
                  "PORT (HOST) to another"}
