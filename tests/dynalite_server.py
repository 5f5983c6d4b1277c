"""dynalite (npm) as a second, stricter DynamoDB-protocol server for the store contract.

Found via ``DYNALITE_BIN``, then ``~/.cache/ghost-engine/dynalite`` (kept outside git),
then ``PATH``. ``ensure_dynalite`` installs the pinned version into that cache with npm
when it is missing, so CI and a fresh machine run these tests; they skip with
``INSTALL_HINT`` only where node/npm are absent.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess

from conftest import free_port, stop_process
from polling import wait_until

DYNALITE_VERSION = "4.0.0"
CACHE_DIR = pathlib.Path.home() / ".cache" / "ghost-engine" / "dynalite"
INSTALL_HINT = (f"dynalite not found: install it with `npm install --prefix {CACHE_DIR} "
                f"dynalite@{DYNALITE_VERSION}` (needs node), or set DYNALITE_BIN")


def find_dynalite() -> str | None:
    """Path of the dynalite executable, or None."""
    candidates = [os.environ.get("DYNALITE_BIN"), str(CACHE_DIR / "node_modules" / ".bin" / "dynalite"),
                  shutil.which("dynalite")]
    for path in candidates:
        if path and os.access(path, os.X_OK) and shutil.which("node"):
            return path
    return None


def ensure_dynalite() -> str | None:
    """The dynalite executable, installing it into the cache first if npm is available."""
    found = find_dynalite()
    if found or not (shutil.which("npm") and shutil.which("node")):
        return found
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(CACHE_DIR),
                    f"dynalite@{DYNALITE_VERSION}"], check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return find_dynalite()


class DynaliteServer:
    """A dynalite process on a free loopback port, in-memory, tables ACTIVE at once."""

    def __init__(self, executable: str):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [executable, "--host", "127.0.0.1", "--port", str(self.port), "--createTableMs", "0",
             "--deleteTableMs", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait_listening(timeout=20)

    def _wait_listening(self, timeout: float) -> None:
        def listening() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dynalite exited with {self.proc.returncode}")
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True

        try:
            wait_until(listening, timeout, f"dynalite listening on {self.port}", 0.05, ignoring=(OSError,))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.proc)
