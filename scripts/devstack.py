#!/usr/bin/env python3
"""Run the whole local stack in the foreground: worker, then orchestrator.

Usage: python scripts/devstack.py [--dynamodb] [--port 8080] [--worker-port 8081]

Both services' JSON log lines go to this terminal. Ctrl-C (or SIGTERM) stops both
gracefully. With --dynamodb, a local DynamoDB-protocol server (moto, from
requirements-dev.txt) is started on --moto-port, the jobs table is created in it, and
the orchestrator uses it: stop and start the orchestrator (or the whole stack with the
same moto server still running) to see job state survive restarts.
The two services share a WORKER_TOKEN: the one in the environment, else a random one made
for this run (never printed). API_TOKEN, if set, is passed to the orchestrator as is.
Exit codes: 0 after a clean stop, 1 if a service died, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOCAL_AWS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1",
             "AWS_DEFAULT_REGION": "us-east-1"}


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"devstack: {url} exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"devstack: {url} was not ready within {timeout:g} s")


def start(argv: list[str], env: dict[str, str], ready_url: str) -> subprocess.Popen:
    proc = subprocess.Popen(argv, cwd=ROOT, env=env)
    wait_ready(ready_url, proc)
    return proc


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run worker + orchestrator locally in the foreground.")
    parser.add_argument("--port", type=int, default=8080, help="orchestrator port (default 8080)")
    parser.add_argument("--worker-port", type=int, default=8081, help="worker port (default 8081)")
    parser.add_argument("--dynamodb", action="store_true", help="use a local moto DynamoDB instead of memory")
    parser.add_argument("--moto-port", type=int, default=8000, help="moto server port (default 8000)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # One token for both services, as Terraform gives both the same secret on AWS.
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "WORKER_TOKEN": os.environ.get("WORKER_TOKEN") or secrets.token_urlsafe(32)}
    procs: list[subprocess.Popen] = []
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.dynamodb:
            endpoint = f"http://127.0.0.1:{args.moto_port}"
            env.update(LOCAL_AWS, AWS_ENDPOINT_URL=endpoint,
                       JOBS_TABLE_NAME=env.get("JOBS_TABLE_NAME") or "ghost-engine-jobs-dev")
            moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(args.moto_port)]
            procs.append(subprocess.Popen(moto, cwd=ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_ready(f"{endpoint}/moto-api/", procs[-1])
            subprocess.run([sys.executable, "dynamostore.py", "create-table"], cwd=ROOT, env=env, check=True)
        worker_url = f"http://127.0.0.1:{args.worker_port}"
        procs.append(start([sys.executable, "worker.py"], {**env, "PORT": str(args.worker_port)},
                           f"{worker_url}/healthz"))
        procs.append(start([sys.executable, "orchestrator.py"],
                           {**env, "PORT": str(args.port), "WORKER_URL": worker_url},
                           f"http://127.0.0.1:{args.port}/healthz"))
        print(f"devstack: ready at http://127.0.0.1:{args.port} (Ctrl-C stops)", file=sys.stderr)
        while all(p.poll() is None for p in procs):
            time.sleep(0.2)
        print("devstack: a service exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
