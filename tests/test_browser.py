"""The browser test's prerequisites: where Chromium is looked for, and that a machine without
it fails the console's browser test with the one-line install hint instead of skipping it."""

from __future__ import annotations

import os
import subprocess
import sys

from browser import INSTALL_HINT, find_chromium
from conftest import ROOT


def test_chromium_path_wins_and_nothing_is_found_on_an_empty_path(monkeypatch, tmp_path):
    fake = tmp_path / "my-chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CHROMIUM_PATH", str(fake))
    assert find_chromium() == str(fake)
    monkeypatch.delenv("CHROMIUM_PATH")
    assert find_chromium() is None


def test_without_chromium_the_browser_test_fails_with_the_install_hint(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CHROMIUM_PATH"}
    env["PATH"] = str(tmp_path)  # no browser anywhere; the test's services start by absolute path
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rEs",
         "tests/test_e2e_console.py::test_a_job_that_failed_because_the_worker_is_down_shows_its_error[memory]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "\n" not in INSTALL_HINT
    lines = proc.stdout.splitlines()
    assert INSTALL_HINT in lines, proc.stdout[-2000:]  # the hint, alone on its line
    # pytest appends " - <message>" to the summary line when the terminal is wide enough (CI's is)
    node = ("tests/test_e2e_console.py::test_a_job_that_failed_because_the_worker_is_down_shows_its_error"
            "[memory]")
    assert [line for line in lines if line == "ERROR " + node or line.startswith("ERROR " + node + " - ")]
    assert (lines[-1], "skipped" in proc.stdout) == ("1 error in " + lines[-1].split(" in ")[1], False)
