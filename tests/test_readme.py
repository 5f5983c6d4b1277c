"""The README is the newcomer's entry point: its commands and tables must match the code."""

from __future__ import annotations

import re

import pytest

from config import variables
from conftest import ROOT
from orchestrator import OrchestratorConfig
from worker import WorkerConfig

README = (ROOT / "README.md").read_text(encoding="utf-8")
TEST_COMMAND = "python -m pip install -q -r requirements-dev.txt && python -m pytest"


def test_ci_runs_exactly_the_readme_test_command():
    assert f"```sh\n{TEST_COMMAND}\n```" in README
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert run[-1] == TEST_COMMAND


def test_readme_start_command_is_the_devstack_launcher():
    assert "```sh\npython scripts/devstack.py\n```" in README
    assert (ROOT / "scripts" / "devstack.py").is_file()


def configuration_table(title: str) -> dict[str, str]:
    """{variable: default} of one table in README "Configuration" (backticks dropped)."""
    section = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table = section.split(f"\n### {title}\n", 1)[1].split("\n### ", 1)[0]
    return {name: default.replace("`", "").strip()
            for name, default in re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", table, re.M)}


@pytest.mark.parametrize(("table", "read"), [
    ("Orchestrator", lambda: variables(OrchestratorConfig.from_env, {"JOBS_TABLE_NAME": "jobs"})),
    ("Worker", lambda: variables(WorkerConfig.from_env)),
])
def test_each_service_documents_exactly_the_variables_it_reads_with_their_defaults(table, read):
    """The same list ``--help`` prints (config.variables: the reads of from_env itself), so the
    README, the help text and the code cannot drift apart."""
    documented = {**configuration_table(table), **configuration_table("Both services: limits")}
    assert documented == dict(read())


def test_the_configuration_tables_hold_the_known_variables():
    assert len(configuration_table("Orchestrator")) >= 25 and configuration_table("Worker")["PORT"] == "8081"
    assert configuration_table("Both services: limits") == {
        "MAX_BODY_BYTES": "16384", "MAX_CONNECTIONS": "512", "REQUEST_HEAD_TIMEOUT_SECONDS": "10",
        "MAX_HEADER_BYTES": "32768", "CPU_SLOTS": "2"}


def test_every_path_in_the_layout_table_exists():
    section = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"^\| `([^`]+)`", section, re.M)
    assert len(paths) >= 10
    for path in paths:
        assert (ROOT / path).exists(), path
