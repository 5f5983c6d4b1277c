"""The Dockerfile: hadolint-clean, copies exactly the runtime modules, runs real entry points.

There is no Docker engine here, so the image is checked by what the Dockerfile says and by
running its commands from a directory that holds only what the image copies.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request

import pytest

from conftest import find_tool, free_port, stop_process, wait_http_ok
from importgraph import imported_modules

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
ENTRY_POINTS = ("orchestrator", "worker")
# The commands the ECS task definitions run (the image's CMD is the orchestrator's).
ECS_COMMANDS = {"orchestrator": ["python", "orchestrator.py"], "worker": ["python", "worker.py"]}
# The image's third entry point: the HEALTHCHECK (and the ECS healthCheck) runs it. It is copied
# although neither service imports it, and whatever it imports must be copied too.
HEALTHCHECK_ENTRY_POINT = "healthcheck"
HEALTHCHECK_COMMAND = ["python", "healthcheck.py"]


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        keyword, _, args = (current + stripped).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a continuation line"
    return instructions


def words(args: str) -> list[str]:
    """An instruction's arguments: the JSON (exec) form, else shell-like words."""
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def instruction_args(name: str) -> list[str]:
    return [args for keyword, args in INSTRUCTIONS if keyword == name]


def copy_sources() -> list[str]:
    """Every source of every COPY/ADD from the build context (not from another stage)."""
    sources: list[str] = []
    for keyword, args in INSTRUCTIONS:
        if keyword not in ("COPY", "ADD"):
            continue
        parts = words(args)
        if any(p.startswith("--from") for p in parts):
            continue
        sources += [p for p in parts if not p.startswith("--")][:-1]
    return sources


def runtime_modules() -> set[str]:
    """The entry points (both services and the healthcheck) and the top-level repo modules they
    import, transitively."""
    top_level = {p.stem for p in ROOT.glob("*.py")}
    found: set[str] = set()
    pending = [m for m in (*ENTRY_POINTS, HEALTHCHECK_ENTRY_POINT) if m in top_level]
    while pending:
        module = pending.pop()
        if module not in found:
            found.add(module)
            pending += sorted(imported_modules(ROOT / f"{module}.py") & top_level)
    return found


def has_main_block(path: pathlib.Path) -> bool:
    """Whether the file has ``if __name__ == "__main__":`` at top level."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        test = node.test if isinstance(node, ast.If) else None
        if (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
                and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value == "__main__"):
            return True
    return False


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def test_hadolint_reports_nothing():
    proc = subprocess.run([find_tool("hadolint"), "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_base_image_is_slim_python_pinned_to_a_patch_release():
    (base,) = instruction_args("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base


def test_every_copied_source_exists_in_the_repo():
    sources = copy_sources()
    assert "requirements.txt" in sources
    assert [s for s in sources if not (ROOT / s).is_file()] == []


def test_import_scan_finds_the_known_modules_including_lazy_imports():
    """dynamostore is imported inside a function of orchestrator.py (boto3 stays off the start path)."""
    assert {"orchestrator", "worker", "store", "dynamostore", "logjson", "httpkit", "scene",
            "dispatcher", "metrics", "config", "workerclient"} <= runtime_modules()


def test_copied_python_files_are_exactly_the_runtime_modules():
    """What the services import, plus healthcheck.py: an entry point of its own, not imported."""
    copied = {s for s in copy_sources() if s.endswith(".py")}
    assert copied == {f"{m}.py" for m in runtime_modules()}
    assert "healthcheck.py" in copied


def test_the_only_other_copies_are_requirements_and_the_files_the_orchestrator_serves():
    """apidoc.py reads openapi.json beside itself at start, webconsole.py the console's files in
    console/; without them the orchestrator exits 2."""
    import apidoc
    import webconsole

    console_files = {f"console/{name}" for name, _ in webconsole.FILES.values()}
    assert console_files == {"console/index.html", "console/app.js", "console/app.css", "console/icon.svg"}
    assert {s for s in copy_sources() if not s.endswith(".py")} == {
        "requirements.txt", apidoc.DOCUMENT_PATH.name, *console_files}
    assert apidoc.DOCUMENT_PATH.parent == ROOT
    assert webconsole.CONSOLE_DIR == ROOT / "console"


def test_healthcheck_entry_point_imports_no_repo_module():
    """It must answer even if a service module fails to import, and adds nothing to the image."""
    top_level = {p.stem for p in ROOT.glob("*.py")}
    assert imported_modules(ROOT / "healthcheck.py") & top_level == set()


def test_copy_sources_are_not_excluded_by_dockerignore():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert {"tests", "infra", ".git"} <= set(patterns)

    def excluded(path: str) -> bool:
        result = False
        for pattern in patterns:
            negated, pattern = pattern.startswith("!"), pattern.lstrip("!")
            if fnmatch.fnmatch(path, pattern) or (pattern.startswith("**/") and fnmatch.fnmatch(path, pattern[3:])):
                result = not negated
        return result

    assert [s for s in copy_sources() if excluded(s)] == []


def test_default_cmd_is_the_orchestrator_in_exec_form():
    (cmd,) = instruction_args("CMD")
    assert json.loads(cmd) == ECS_COMMANDS["orchestrator"]


@pytest.mark.parametrize("service", sorted(ECS_COMMANDS))
def test_ecs_command_names_a_copied_entry_point_with_a_main_block(service):
    script = ECS_COMMANDS[service][1]
    assert has_main_block(ROOT / script)
    assert script in copy_sources()


def test_runs_as_a_non_root_user_created_in_the_image():
    users = instruction_args("USER")
    assert users, "no USER instruction: the services would run as root"
    user = users[-1]
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    created = " ".join(instruction_args("RUN"))
    assert re.search(rf"useradd .*--uid {re.escape(user)}\b", created) or re.search(rf"useradd .*\b{re.escape(user)}$", created)
    keywords = [keyword for keyword, _ in INSTRUCTIONS]
    assert keywords.index("USER") < keywords.index("CMD")


def test_environment_and_ports():
    env = " ".join(instruction_args("ENV"))
    for setting in ("PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "HOST=0.0.0.0"):
        assert setting in env.split()
    assert instruction_args("EXPOSE") == ["8080 8081"]


def healthcheck_command() -> list[str]:
    (healthcheck,) = instruction_args("HEALTHCHECK")
    _, _, command = healthcheck.partition("CMD ")
    return json.loads(command)


def test_healthcheck_runs_the_copied_healthcheck_script_in_exec_form():
    """The same command as the ECS task definitions' healthCheck (tests/test_terraform.py)."""
    assert healthcheck_command() == HEALTHCHECK_COMMAND
    assert has_main_block(ROOT / "healthcheck.py")
    assert "healthcheck.py" in copy_sources()


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """A directory holding only what the Dockerfile copies, as /app in the image."""
    app = tmp_path_factory.mktemp("app")
    for source in copy_sources():
        (app / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, app / source)
    return app


def image_env(port: int, **extra: str) -> dict[str, str]:
    """The Dockerfile's ENV, on loopback, with nothing from the repo on the import path."""
    env = {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "HOST": "127.0.0.1", "PORT": str(port), **extra}
    return env


@pytest.fixture(scope="module")
def services_from_image_dir(image_dir):
    """Both ECS commands started from the image directory; yields {service: port}."""
    ports = {"worker": free_port(), "orchestrator": free_port()}
    extra = {"worker": {}, "orchestrator": {"WORKER_URL": f"http://127.0.0.1:{ports['worker']}"}}
    procs = []
    try:
        for service in ("worker", "orchestrator"):
            command = [sys.executable, *ECS_COMMANDS[service][1:]]
            proc = subprocess.Popen(command, cwd=image_dir, env=image_env(ports[service], **extra[service]),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
            wait_http_ok(f"http://127.0.0.1:{ports[service]}/healthz", timeout=20, proc=proc)
        yield ports
    finally:
        for proc in procs:
            stop_process(proc, timeout=30)


@pytest.mark.parametrize("service", ["orchestrator", "worker"])
def test_healthcheck_passes_against_the_service_started_from_copied_files_only(
        service, image_dir, services_from_image_dir):
    """Both entry points start with only the copied files, and the HEALTHCHECK follows PORT and
    prints nothing when healthy."""
    command = [sys.executable, *healthcheck_command()[1:]]
    proc = subprocess.run(command, cwd=image_dir, env=image_env(services_from_image_dir[service]),
                          capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_healthcheck_fails_when_nothing_listens_on_port(image_dir):
    command = [sys.executable, *healthcheck_command()[1:]]
    proc = subprocess.run(command, cwd=image_dir, env=image_env(free_port()),
                          capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout, len(proc.stderr.splitlines())) == (1, "", 1)
    assert "Connection refused" in proc.stderr


def test_orchestrator_started_from_copied_files_only_serves_the_repository_api_description(
        services_from_image_dir):
    url = f"http://127.0.0.1:{services_from_image_dir['orchestrator']}/openapi.json"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert (resp.status, resp.headers["Content-Type"]) == (200, "application/json")
        assert json.loads(resp.read()) == json.loads((ROOT / "openapi.json").read_text(encoding="utf-8"))


def test_orchestrator_started_from_copied_files_only_serves_the_web_console(services_from_image_dir):
    """The COPY into ./console/ puts the files where webconsole.py looks for them."""
    base = f"http://127.0.0.1:{services_from_image_dir['orchestrator']}"
    for path, name in (("/", "index.html"), ("/console/app.js", "app.js"), ("/console/app.css", "app.css"),
                       ("/favicon.ico", "icon.svg")):
        with urllib.request.urlopen(base + path, timeout=10) as resp:
            assert (resp.status, resp.read()) == (200, (ROOT / "console" / name).read_bytes()), path
