"""Container healthcheck: exit 0 when this container's service answers ``GET /healthz`` with 2xx.

The one health command of the image: the Dockerfile's ``HEALTHCHECK`` and the ECS task
definitions' ``healthCheck`` both run ``python healthcheck.py``. It asks
``http://127.0.0.1:$PORT/healthz`` (PORT as the service reads it, default 8080; the worker's task
sets 8081) and exits 0 on a 2xx answer, else 1 with one line on stderr. Docker and ECS read only
the exit status (and reserve 2), so every failure, a bad PORT included, is 1.

Standard library only: the image has no curl, and this must not import the services' modules.
"""

from __future__ import annotations

import http.client
import os
import sys
from collections.abc import Mapping

DEFAULT_PORT = 8080
PATH = "/healthz"
# Per socket operation. On loopback the connect is immediate (accepted or refused), so a check
# ends well inside the 5 s timeout that the Dockerfile and the task definitions give it.
TIMEOUT_SECONDS = 3.0


def port_from(environ: Mapping[str, str]) -> int:
    """The service's port from PORT (unset or empty: 8080); ValueError if it is not 1-65535."""
    text = environ.get("PORT") or str(DEFAULT_PORT)
    port = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= port <= 65535:
        raise ValueError(f"PORT must be an integer from 1 to 65535, got {text!r}")
    return port


def check(port: int, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """None when ``GET /healthz`` on 127.0.0.1:``port`` answers 2xx, else what went wrong."""
    # http.client rather than urllib: no proxy from the environment, no redirect followed.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", PATH)
        response = connection.getresponse()
        response.read()
    except OSError as exc:  # refused, reset, timed out
        return str(exc)
    except http.client.HTTPException as exc:  # not an HTTP answer
        return f"bad response: {exc!r}"
    finally:
        connection.close()
    if 200 <= response.status < 300:
        return None
    return f"answered {response.status}"


def main(environ: Mapping[str, str] = os.environ) -> int:
    """Check once; 0 healthy, 1 not (one line on stderr). Prints nothing when healthy."""
    try:
        port = port_from(environ)
    except ValueError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    problem = check(port)
    if problem is None:
        return 0
    print(f"healthcheck: http://127.0.0.1:{port}{PATH}: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
