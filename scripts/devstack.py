#!/usr/bin/env python3
"""Run the whole local stack in the foreground: worker, then orchestrator; and restart one of them.

Usage: python scripts/devstack.py [--dynamodb] [--port 8080] [--worker-port 8081] [--moto-port 8000]
       python scripts/devstack.py restart {orchestrator,worker} [--port 8080] [--kill]

Both services' JSON log lines go to this terminal. Ctrl-C (or SIGTERM) stops both
gracefully. With --dynamodb, a local DynamoDB-protocol server (moto, from
requirements-dev.txt) is started on --moto-port, the jobs table is created in it, and
the orchestrator uses it, with dummy credentials (moto takes any) and the region the AWS
settings give (README "AWS settings").

A service that is stopped or killed (exit 0 or a signal) is started again on its port, so
`python scripts/devstack.py restart orchestrator` (SIGTERM, or SIGKILL with --kill) shows
job state surviving a restart in DynamoDB mode. A service that fails on its own (exit 1 or 2)
stops the stack. Each port must be free: devstack refuses to start when something else
listens there, rather than mistake that for its own service.
The two services share a WORKER_TOKEN: the one in the environment, else a random one made
for this run (never printed). API_TOKEN, if set, is passed to the orchestrator as is.
Exit codes: 0 after a clean stop (restart: restarted), 1 if a service died or a port is taken
(restart: no stack on that port, or the service did not come back), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parent.parent
# moto accepts any credentials; these keep the developer's real ones away from a local server.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
READY_TIMEOUT_S = 30
MAX_RESTARTS_PER_MINUTE = 5


class StackError(Exception):
    """The stack cannot run or go on (a taken port, a service that failed); the message says why."""


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    ready_path: str = "/healthz"
    proc: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def state_file(port: int) -> pathlib.Path:
    """Where the stack serving the orchestrator on ``port`` records its pids (for ``restart``)."""
    return pathlib.Path(tempfile.gettempdir()) / f"ghost-engine-devstack-{port}.json"


def require_free(port: int, name: str) -> None:
    """StackError unless nothing listens on ``port``: another program answering /healthz there
    would otherwise pass for our service."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the services bind
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise StackError(f"port {port} for the {name} is in use by another program; stop it or choose "
                             "another port (--port, --worker-port, --moto-port)") from None


def wait_ready(service: Service, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert service.proc is not None
        if service.proc.poll() is not None:
            raise StackError(f"the {service.name} exited with {service.proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(service.url + service.ready_path, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise StackError(f"the {service.name} at {service.url} was not ready within {timeout:g} s")


def start(service: Service) -> None:
    require_free(service.port, service.name)
    # Its own session: Ctrl-C reaches devstack, which then stops the services in order.
    quiet = subprocess.DEVNULL if service.name == "moto server" else None  # moto's access log is noise here
    service.proc = subprocess.Popen(service.argv, cwd=ROOT, env=service.env, start_new_session=True,
                                    stdout=quiet, stderr=quiet)
    wait_ready(service)
    say(f"{service.name} pid {service.proc.pid} on {service.url}")


def say(message: str) -> None:
    print(f"devstack: {message}", file=sys.stderr, flush=True)


def write_state(port: int, services: list[Service]) -> None:
    state = {"pid": os.getpid(), "services": {s.name: s.proc.pid for s in services if s.proc},
             "urls": {s.name: s.url for s in services}}
    path = state_file(port)
    path.with_suffix(".tmp").write_text(json.dumps(state), encoding="utf-8")
    path.with_suffix(".tmp").replace(path)


def exit_reason(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def supervise(port: int, services: list[Service]) -> None:
    """Start again any service stopped from outside (exit 0 or a signal); StackError when one
    fails on its own, the moto server stops, or a service keeps stopping."""
    while True:
        for service in services:
            assert service.proc is not None
            code = service.proc.poll()
            if code is None:
                continue
            if service.name == "moto server" or code > 0:
                raise StackError(f"the {service.name} exited with {exit_reason(code)}; stopping the others")
            now = time.monotonic()
            service.restarts = [t for t in service.restarts if now - t < 60] + [now]
            if len(service.restarts) > MAX_RESTARTS_PER_MINUTE:
                raise StackError(f"the {service.name} stopped {len(service.restarts)} times within a minute")
            say(f"{service.name} (pid {service.proc.pid}) stopped with {exit_reason(code)}; starting it again")
            start(service)
            write_state(port, services)
        time.sleep(0.2)


def stack_services(args: argparse.Namespace) -> list[Service]:
    """The processes of the stack in start order, each with its environment."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "WORKER_TOKEN": os.environ.get("WORKER_TOKEN") or secrets.token_urlsafe(32)}
    services = []
    if args.dynamodb:
        env.pop("AWS_SESSION_TOKEN", None)
        env.update(LOCAL_CREDENTIALS, AWS_ENDPOINT_URL=f"http://127.0.0.1:{args.moto_port}",
                   JOBS_TABLE_NAME=env.get("JOBS_TABLE_NAME") or "ghost-engine-jobs-dev")
        services.append(Service("moto server", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                                "-p", str(args.moto_port)], env, args.moto_port, "/moto-api/"))
    worker = Service("worker", [sys.executable, "worker.py"], {**env, "PORT": str(args.worker_port)},
                     args.worker_port)
    orchestrator = Service("orchestrator", [sys.executable, "orchestrator.py"],
                           {**env, "PORT": str(args.port), "WORKER_URL": worker.url}, args.port)
    return [*services, worker, orchestrator]


def run_stack(args: argparse.Namespace) -> int:
    services = stack_services(args)
    try:
        for service in services:
            start(service)
            if service.name == "moto server":
                subprocess.run([sys.executable, "dynamostore.py", "create-table"], cwd=ROOT, env=service.env,
                               check=True)
        write_state(args.port, services)
        say(f"ready at http://127.0.0.1:{args.port} (Ctrl-C stops; "
            "`python scripts/devstack.py restart orchestrator` restarts the orchestrator)")
        supervise(args.port, services)
    except StackError as exc:
        say(str(exc))
        return 1
    except subprocess.CalledProcessError as exc:
        say(f"creating the jobs table failed with exit code {exc.returncode}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(services)
        state_file(args.port).unlink(missing_ok=True)
    return 0


def stop(services: list[Service]) -> None:
    running = [s.proc for s in reversed(services) if s.proc is not None and s.proc.poll() is None]
    for proc in running:
        proc.terminate()
    for proc in running:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def restart(args: argparse.Namespace) -> int:
    """Stop one service of the stack serving the orchestrator on --port; its devstack starts it again."""
    try:
        state = json.loads(state_file(args.port).read_text(encoding="utf-8"))
        os.kill(state["pid"], 0)
    except (OSError, ValueError, KeyError):
        say(f"no devstack runs with its orchestrator on port {args.port}: start one with python scripts/devstack.py")
        return 1
    old = state["services"][args.service]
    os.kill(old, getattr(signal, "SIGKILL", signal.SIGTERM) if args.kill else signal.SIGTERM)
    deadline = time.monotonic() + READY_TIMEOUT_S + 30  # a SIGTERM'd orchestrator may drain for 20 s
    while time.monotonic() < deadline:
        try:
            new = json.loads(state_file(args.port).read_text(encoding="utf-8"))["services"][args.service]
            if new != old:
                with urllib.request.urlopen(state["urls"][args.service] + "/healthz", timeout=1):
                    say(f"{args.service} restarted: pid {old} -> {new} on {state['urls'][args.service]}")
                    return 0
        except (OSError, ValueError, KeyError):
            pass  # being replaced, or the stack stopped: the deadline decides
        time.sleep(0.1)
    say(f"the {args.service} did not come back within {READY_TIMEOUT_S + 30} s; see the devstack's terminal")
    return 1


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="devstack.py",
                                     description="Run worker + orchestrator locally in the foreground.")
    parser.add_argument("--port", type=int, default=8080, help="orchestrator port (default 8080)")
    parser.add_argument("--worker-port", type=int, default=8081, help="worker port (default 8081)")
    parser.add_argument("--dynamodb", action="store_true", help="use a local moto DynamoDB instead of memory")
    parser.add_argument("--moto-port", type=int, default=8000, help="moto server port (default 8000)")
    commands = parser.add_subparsers(dest="command", metavar="{restart}")
    again = commands.add_parser("restart", help="stop a service of a running devstack, which starts it again")
    again.add_argument("service", choices=["orchestrator", "worker"])
    again.add_argument("--port", type=int, default=8080, help="the stack's orchestrator port (default 8080)")
    again.add_argument("--kill", action="store_true", help="SIGKILL (a crash) instead of SIGTERM (a clean stop)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.command == "restart":
        return restart(args)
    signal.signal(signal.SIGTERM, _interrupt)
    return run_stack(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
