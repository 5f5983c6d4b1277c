"""Static checks over the Python sources, with the settings in pyproject.toml: ruff (pyflakes,
pycodestyle, bugbear, pyupgrade, simplify) on every file, mypy on the product code and scripts."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, find_tool


def test_ruff_reports_nothing():
    result = subprocess.run([find_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (0, "All checks passed!\n"), result.stdout + result.stderr


def test_mypy_reports_nothing():
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", "/dev/null"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found in "), result.stdout
