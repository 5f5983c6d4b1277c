"""Running the scripts in scripts/ the way a user does: a bash script as itself, its PowerShell
port with pwsh. Tests parametrize over both with ``variants("smoke-test")``.

pwsh cannot be installed on the project's machines (no registry they reach has it); GitHub's
hosted Ubuntu runners ship it, so the test workflow runs the .ps1 variants there. Elsewhere those
variants skip, and the ``-ra`` summary says why. On GitHub Actions a missing pwsh fails instead.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
PWSH = shutil.which("pwsh")
ON_GITHUB_ACTIONS = os.environ.get("GITHUB_ACTIONS") == "true"
PWSH_MISSING = ("pwsh (PowerShell 7) is not on PATH, so the .ps1 port is not run here; GitHub-hosted "
                "Ubuntu runners ship it and the test workflow (.github/workflows/test.yml) runs it there")
requires_pwsh = pytest.mark.skipif(PWSH is None and not ON_GITHUB_ACTIONS, reason=PWSH_MISSING)
# No banner, telemetry or update check: a test compares every byte pwsh writes.
PWSH_ENV = {"POWERSHELL_TELEMETRY_OPTOUT": "1", "POWERSHELL_UPDATECHECK": "Off"}


def variants(stem: str, named: bool = False) -> list:
    """``scripts/<stem>.sh`` and ``scripts/<stem>.ps1`` as pytest params, with ids sh and ps1
    (or the file names, ``named``)."""
    return [pytest.param(SCRIPTS / f"{stem}.sh", id=f"{stem}.sh" if named else "sh"),
            pytest.param(SCRIPTS / f"{stem}.ps1", id=f"{stem}.ps1" if named else "ps1", marks=requires_pwsh)]


def command(script: pathlib.Path) -> list[str]:
    """The argv prefix that runs ``script``."""
    if script.suffix != ".ps1":
        return [str(script)]
    if PWSH is None:
        pytest.fail("pwsh is missing on a GitHub-hosted runner, which ships it: " + PWSH_MISSING)
    return [PWSH, "-NoLogo", "-NoProfile", "-NonInteractive", "-File", str(script)]


def run(script: pathlib.Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
        stdin: str | int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """Runs ``script`` with ``args``; ``stdin`` is text to feed it, or a file descriptor."""
    io = {"input": stdin} if isinstance(stdin, str) else {"stdin": stdin}
    return subprocess.run([*command(script), *args], env={**(os.environ if env is None else env), **PWSH_ENV},
                          capture_output=True, text=True, timeout=timeout, **io)


def usage_text(path: pathlib.Path) -> str:
    """A script's usage text with each language's spelling of its constants normalised to $NAME."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ps1":
        return re.search(r'@"\n(.*?)\n"@', text, re.DOTALL).group(1)
    body = re.search(r"<<EOF\n(.*?)\nEOF", text, re.DOTALL).group(1)
    return re.sub(r"\$\{(\w+)\}", r"$\1", body)
