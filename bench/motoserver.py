"""A local DynamoDB for the benchmark: a moto server process (on the load generator's CPU:
it stands in for AWS, it is not what is measured) and the jobs table, created with the
project's own ``python dynamostore.py create-table``."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from procs import ROOT, Pinning, Process, free_port

TABLE = "ghost-engine-jobs-bench"
# Never real AWS, whatever the shell holds.
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


def missing() -> str | None:
    """Why a moto server cannot run here, or None when it can."""
    for module in ("moto", "boto3"):
        if importlib.util.find_spec(module) is None:
            return f"{module} not importable (pip install -r requirements-dev.txt)"
    return None


def dynamodb_env(endpoint: str) -> dict[str, str]:
    """What an orchestrator needs to use the table at ``endpoint``."""
    return {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": endpoint, "JOBS_TABLE_NAME": TABLE}


@contextmanager
def running(log_dir: pathlib.Path, pin: Pinning) -> Iterator[str]:
    """A moto server with the jobs table; yields its endpoint URL."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(name, None)
    port = free_port()
    args = ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with Process("moto", args, log_dir, pin, AWS_TEST_ENV, port=port, on_client_cpu=True) as moto:
        moto.wait_healthy(timeout=60, interval=0.05, path="/moto-api/")
        env = {**os.environ, **dynamodb_env(moto.url)}
        subprocess.run([sys.executable, str(ROOT / "dynamostore.py"), "create-table"], env=env, cwd=ROOT,
                       check=True, capture_output=True, timeout=60)
        yield moto.url
