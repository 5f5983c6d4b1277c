"""Static checks on the Python sources: no unused imports or names, no undefined names."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_pyflakes_reports_nothing():
    files = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("**/*.py") if ".git" not in p.parts)
    assert len(files) > 20
    result = subprocess.run([sys.executable, "-m", "pyflakes", *files], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
