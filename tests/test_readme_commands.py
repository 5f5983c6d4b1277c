"""Every shell command in the READMEs runs as written: each names a program that exists (on
PATH or in the repository), and the local demos run literally, byte for byte as printed."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import urllib.request

import pytest

from conftest import ROOT, stop_process, wait_http_ok
from polling import wait_until

READMES = [ROOT / "README.md", ROOT / "infra" / "aws" / "terraform" / "README.md"]
SEPARATORS = {"&&", "||", ";", "|", "(", ")", "$("}


def sh_blocks(path) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def commands(block: str) -> list[list[str]]:
    """The simple commands of a block: words, split at ;, &&, ||, | and $( ), comments dropped."""
    found: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split, lexer.commenters = True, "#"
        found.append([])
        for token in lexer:
            if token.endswith("$") and token[:-1].endswith("=") or token in SEPARATORS or set(token) <= set(";&|()"):  # VAR=$(...): the value is a command
                found.append([])
            else:
                found[-1].append(token)
    return [words for words in found if words]


def program(words: list[str]) -> str | None:
    """The program a command runs: after VAR=value assignments and `export`; None for `export`."""
    words = [w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)]
    return None if not words or words[0] == "export" else words[0]


def all_commands() -> list[tuple[str, list[str]]]:
    return [(path.relative_to(ROOT).as_posix(), words) for path in READMES for block in sh_blocks(path)
            for words in commands(block)]


def test_the_readmes_have_the_commands_this_test_reads():
    assert len(all_commands()) >= 40


@pytest.mark.parametrize(("readme", "words"), all_commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_every_readme_command_names_a_program_that_exists(readme, words):
    """No `command not found` on a fresh clone with requirements-dev.txt installed (the README's
    `checkov` command failed so: checkov needs its own virtualenv, which the test makes)."""
    name = program(words)
    if name is None:
        return
    if name == "cd":
        assert (ROOT / words[1]).is_dir(), words
        return
    here = ROOT if readme == "README.md" or "/" not in name else ROOT / "infra" / "aws" / "terraform"
    assert shutil.which(name) or (ROOT / name).is_file() or (here / name).is_file(), f"{readme}: {' '.join(words)}"


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def demo_blocks() -> tuple[str, str]:
    """The README's DynamoDB restart demo: the devstack command, then the commands run beside it."""
    blocks = sh_blocks(ROOT / "README.md")
    start = blocks.index("python scripts/devstack.py --dynamodb\n")
    return blocks[start], blocks[start + 1]


@pytest.mark.timeout(240)
def test_the_dynamodb_restart_demo_runs_as_written():
    """Literally: devstack --dynamodb on its default ports, a job, a SIGKILL'd orchestrator that
    devstack starts again, and the job read back from the table; then the job still finishes
    (its lease runs out and the new orchestrator takes it)."""
    taken = [port for port in (8000, 8080, 8081) if port_taken(port)]
    if taken:
        pytest.skip(f"the demo uses the default ports and {taken} is in use here; free them to run it")
    stack_block, demo = demo_blocks()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "WORKER_TOKEN"}
    stack = subprocess.Popen(["bash", "-c", f"exec {stack_block}"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_http_ok("http://127.0.0.1:8080/healthz", timeout=60, proc=stack)
        result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", demo], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"devstack: orchestrator restarted: pid \d+ -> \d+ on http://127.0.0.1:8080\n",
                            result.stderr)
        job = json.loads(result.stdout)
        assert (job["input"]["prompt"], job["input"]["seed"]) == ("a haunted attic", 5)
        url = f"http://127.0.0.1:8080/status/{job['jobId']}"

        def state() -> str:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)["state"]

        wait_until(lambda: state() == "done", 120, "the job done after the restart")
    finally:
        stack.send_signal(signal.SIGTERM)
        try:
            _, err = stack.communicate(timeout=60)
        finally:
            stop_process(stack)
    assert stack.returncode == 0, err
