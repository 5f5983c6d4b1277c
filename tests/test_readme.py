"""The README is the newcomer's entry point: its commands and tables must match the code."""

from __future__ import annotations

import re

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
TEST_COMMAND = "python -m pip install -q -r requirements-dev.txt && python -m pytest"


def test_ci_runs_exactly_the_readme_test_command():
    assert f"```sh\n{TEST_COMMAND}\n```" in README
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert run[-1] == TEST_COMMAND


def test_readme_start_command_is_the_devstack_launcher():
    assert "```sh\npython scripts/devstack.py\n```" in README
    assert (ROOT / "scripts" / "devstack.py").is_file()


def test_every_environment_variable_the_services_read_is_documented():
    names = set()
    for module in ROOT.glob("*.py"):  # the services' configs and what they share (httpserver.Limits)
        source = module.read_text(encoding="utf-8")
        names |= set(re.findall(r'env\.(?:text|integer|number|secret)\("([A-Z_]+)"', source))
        names |= {"PORT"} if "env.port(" in source else set()
    assert len(names) >= 20
    documented = set(re.findall(r"^\| `([A-Z_]+)`", README, re.M))
    assert names - documented == set()
    assert "LOG_LEVEL" in documented


def test_every_path_in_the_layout_table_exists():
    section = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"^\| `([^`]+)`", section, re.M)
    assert len(paths) >= 10
    for path in paths:
        assert (ROOT / path).exists(), path
