"""End to end: the README's local-stack command starts both services and stops cleanly."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from apiclient import poll, request, submit
from conftest import ROOT, free_port, serving_in_thread, wait_http_ok
from polling import wait_until

sys.path.insert(0, str(ROOT / "scripts"))
from devstack import state_file


def run_devstack(*args: str, worker_port: int | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "scripts/devstack.py", "--port", str(port), "--worker-port", str(worker_port or free_port()),
         *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", timeout=30, proc=proc)
    wait_until(lambda: state_file(port).exists(), 10, "the devstack's state file")
    return proc, url


def test_devstack_runs_a_job_and_stops_on_sigterm():
    """The two services share a token made for the run: the job runs, a caller without it
    gets 401 from the worker."""
    worker_port = free_port()
    proc, url = run_devstack(worker_port=worker_port)
    try:
        job_id = submit(url, {"prompt": "a spooky hallway", "seed": 1})
        assert poll(url, job_id, timeout=30)[-1]["state"] == "done"
        direct = request(f"http://127.0.0.1:{worker_port}", "POST", "/process",
                         {"jobId": "j", "payload": {"prompt": "p", "seed": 1}})
        assert (direct.status, direct.json["error"]["code"]) == (401, "unauthorized")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "devstack: ready at " + url in err
    services = {line.split('"service":"')[1].split('"')[0] for line in out.splitlines() if '"service":"' in line}
    assert services == {"orchestrator", "worker"}


def test_devstack_rejects_bad_usage():
    result = subprocess.run([sys.executable, "scripts/devstack.py", "--bogus"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr


def test_devstack_dynamodb_mode_keeps_jobs_in_a_local_table():
    import boto3

    moto_port = free_port()
    proc, url = run_devstack("--dynamodb", "--moto-port", str(moto_port))
    try:
        job_id = submit(url, {"prompt": "a haunted attic", "seed": 5})
        assert poll(url, job_id, timeout=30)[-1]["state"] == "done"
        client = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{moto_port}")
        item = client.get_item(TableName="ghost-engine-jobs-dev", Key={"jobId": {"S": job_id}})["Item"]
        assert item["state"] == {"S": "done"}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "created: ghost-engine-jobs-dev" in out
    assert '"store":"dynamodb"' in out


def test_devstack_refuses_a_port_another_program_answers_healthz_on():
    """Before: "devstack: ready" as soon as anything answered /healthz there, though the
    orchestrator it started had failed to bind."""
    class Impostor(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b'{"ok":true}')

        def log_message(self, *args):
            pass

    impostor = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Impostor)
    with serving_in_thread(impostor) as port:
        result = subprocess.run([sys.executable, "scripts/devstack.py", "--port", str(port), "--worker-port",
                                 str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "ready" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"devstack: port {port} for the orchestrator is in use by another program; stop it or choose another port "
        "(--port, --worker-port, --moto-port)")


def restart(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/devstack.py", "restart", *args, "--port", str(port)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("how", [[], ["--kill"]], ids=["sigterm", "sigkill"])
def test_restarting_the_orchestrator_under_dynamodb_keeps_earlier_jobs(how):
    """The README's restart demo: before, killing the orchestrator stopped the whole stack, moto
    and its table with it, and the documented restart command lacked moto's dummy credentials."""
    proc, url = run_devstack("--dynamodb", "--moto-port", str(free_port()))
    port = int(url.rsplit(":", 1)[1])
    try:
        job_id = submit(url, {"prompt": "a haunted attic", "seed": 5})
        done = poll(url, job_id, timeout=30)[-1]
        result = restart(port, "orchestrator", *how)
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(rf"devstack: orchestrator restarted: pid \d+ -> \d+ on {url}\n", result.stderr)
        assert request(url, "GET", f"/status/{job_id}").json == done
        assert poll(url, submit(url, {"prompt": "a second hallway", "seed": 6}), timeout=30)[-1]["state"] == "done"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    signal_name = "SIGKILL" if how else "exit code 0"
    assert re.search(rf"devstack: orchestrator \(pid \d+\) stopped with (signal )?{signal_name}; starting it again",
                     err), err


def test_restart_without_a_stack_on_the_port_says_so():
    port = free_port()
    result = restart(port, "worker")
    assert (result.returncode, result.stderr) == (
        1, f"devstack: no devstack runs with its orchestrator on port {port}: start one with python "
           "scripts/devstack.py\n")


def test_a_killed_service_whose_port_was_taken_meanwhile_stops_the_stack_with_exit_1():
    """devstack does not restart a service onto a port someone else took: it stops with exit 1
    and says whose port it was, rather than report a stranger's /healthz as its own."""
    worker_port = free_port()
    proc, url = run_devstack(worker_port=worker_port)
    try:
        pid = json.loads(state_file(int(url.rsplit(":", 1)[1])).read_text())["services"]["worker"]
        # Hold devstack still while the worker dies and another program takes its port, so the
        # restart deterministically finds the port taken.
        os.kill(proc.pid, signal.SIGSTOP)
        with socket.socket() as squatter:
            os.kill(pid, signal.SIGKILL)
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            wait_until(lambda: _try_bind(squatter, worker_port), 10, "the worker's port free")
            squatter.listen(1)
            os.kill(proc.pid, signal.SIGCONT)
            _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert re.search(r"devstack: worker \(pid \d+\) stopped with signal SIGKILL; starting it again", err), err
    assert err.splitlines()[-1] == (f"devstack: port {worker_port} for the worker is in use by another program; stop "
                                    "it or choose another port (--port, --worker-port, --moto-port)")


def _try_bind(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True
