"""The PowerShell ports in scripts/, read without PowerShell: each parses (tree-sitter-powershell),
follows the script conventions, names its functions Verb-Noun with approved verbs and each after
its bash twin, and prints the same usage text and reads the same environment as its bash script.
What they do is tested by running them, beside their bash scripts, where pwsh exists
(test_scripts_static.py, test_e2e_smoke.py, test_trace.py, test_deploy.py).
"""

from __future__ import annotations

import pathlib
import re

import pytest
import tree_sitter
import tree_sitter_powershell

from scriptrun import SCRIPTS, usage_text

PS1 = sorted(SCRIPTS.glob("*.ps1"))
LIBRARIES = sorted(SCRIPTS.glob("lib/*.ps1"))  # dot-sourced by the scripts, not run
PAIRS = [(p.with_suffix(".sh"), p) for p in PS1]
BASH_FUNCTION = re.compile(r"^([a-z_]+)\(\) \{", re.MULTILINE)
PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
# Constructs PowerShell accepts that tree-sitter-powershell reports as errors, each with its reason:
# {(file name, "line L, column C: ..."): "reason"}. Prefer none: rewrite the construct instead
# (e.g. a bare - argument at the end of a line is written '-').
ALLOWED_PARSE_ERRORS: dict[tuple[str, str], str] = {}
# Get-Verb on PowerShell 7.
APPROVED_VERBS = set("""
Add Clear Close Copy Enter Exit Find Format Get Hide Join Lock Move New Open Optimize Pop Push Redo Remove
Rename Reset Resize Search Select Set Show Skip Split Step Switch Undo Unlock Watch Connect Disconnect Read
Receive Send Write Backup Checkpoint Compare Compress Convert ConvertFrom ConvertTo Dismount Edit Expand
Export Group Import Initialize Limit Merge Mount Out Publish Restore Save Sync Unpublish Update Debug
Measure Ping Repair Resolve Test Trace Approve Assert Build Complete Confirm Deny Deploy Disable Enable
Install Invoke Register Request Restart Resume Start Stop Submit Suspend Uninstall Unregister Wait Block
Grant Protect Revoke Unblock Unprotect Use
""".split())
VERB_NOUN = re.compile(r"([A-Z][a-z]+(?:From|To)?)-[A-Z][A-Za-z0-9]*")
TWIN_COMMENT = re.compile(r"# bash: (none \(.+|[a-z_]+)\b")


def syntax_errors(source: bytes) -> list[str]:
    """'line L, column C: ...' (1-based) for every ERROR and MISSING node of the parse."""
    found = []

    def visit(node: tree_sitter.Node) -> None:
        line, column = node.start_point.row + 1, node.start_point.column + 1
        if node.is_missing:
            found.append(f"line {line}, column {column}: missing {node.type!r}")
        elif node.is_error:
            text = node.text.decode("utf-8", "replace").splitlines()[0] if node.text.strip() else repr(node.text)
            found.append(f"line {line}, column {column}: syntax error at {text!r}")
        if node.has_error:
            for child in node.children:
                visit(child)

    visit(PARSER.parse(source).root_node)
    return found


def functions(path: pathlib.Path) -> list[tuple[str, int]]:
    """(name, 0-based line) of every function the script defines, in order."""
    found = []

    def visit(node: tree_sitter.Node) -> None:
        if node.type == "function_statement":
            name = next(child for child in node.children if child.type == "function_name")
            found.append((name.text.decode(), node.start_point.row))
        for child in node.children:
            visit(child)

    visit(PARSER.parse(path.read_bytes()).root_node)
    return found


def test_every_port_is_checked():
    assert [p.name for p in PS1] == ["bootstrap-state.ps1", "deploy.ps1", "smoke-test.ps1", "trace.ps1",
                                     "verify-deployment.ps1"]
    assert [p.name for p in LIBRARIES] == ["aws.ps1", "errors.ps1"]
    assert [p.name for p in LIBRARIES] == ["aws.ps1", "errors.ps1"]


@pytest.mark.parametrize("ps1", PS1 + LIBRARIES, ids=lambda p: p.name)
def test_powershell_script_parses_without_errors(ps1):
    errors = [e for e in syntax_errors(ps1.read_bytes()) if (ps1.name, e) not in ALLOWED_PARSE_ERRORS]
    assert errors == [], f"{ps1.name}:\n" + "\n".join(errors)


def test_the_syntax_check_reports_broken_code_with_line_and_column():
    assert syntax_errors(b"function Get-A {\n  $x = @(1, 2\n}\n") == [
        "line 2, column 3: syntax error at '$x = @(1, 2'"]
    assert syntax_errors(b"function Get-A {\n  1\n") == ["line 2, column 4: missing '}'"]
    assert syntax_errors(b"function Get-A([string]$b { }\n") == ["line 1, column 26: missing ')'"]
    assert syntax_errors(b"function Get-A([string]$b) { $b }\n") == []


@pytest.mark.parametrize("ps1", PS1, ids=lambda p: p.name)
def test_powershell_script_follows_the_script_conventions(ps1):
    lines = ps1.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#!/usr/bin/env pwsh"
    assert lines[1] == "#" and lines[2].startswith("# "), "header comment after the shebang"
    assert any(re.fullmatch(r"#Requires -Version 7\.\d", line) for line in lines)
    assert "Set-StrictMode -Version Latest" in lines
    assert "$ErrorActionPreference = 'Stop'" in lines
    assert "Set-Variable -Option Constant -Name PROG -Value (Split-Path -Leaf $PSCommandPath)" in lines \
        or "Set-Variable -Option ReadOnly -Name PROG -Value (Split-Path -Leaf $PSCommandPath)" in lines
    assert [line for line in lines if line.strip()][-1].startswith("Invoke-Main $args")
    assert ". (Join-Path $PSScriptRoot 'lib' 'errors.ps1')" in lines
    assert not {"Exit-WithError", "Exit-WithUsageError"} & {name for name, _ in functions(ps1)}


@pytest.mark.parametrize("ps1", PS1 + LIBRARIES, ids=lambda p: p.name)
def test_functions_are_named_verb_noun_with_approved_verbs(ps1):
    names = [name for name, _ in functions(ps1)]
    assert len(names) >= 2
    assert [n for n in names if not VERB_NOUN.fullmatch(n) or n.split("-")[0] not in APPROVED_VERBS] == []


@pytest.mark.parametrize(("sh", "ps1"), PAIRS + [(p.with_suffix(".sh"), p) for p in LIBRARIES],
                         ids=lambda p: p.name)
def test_each_function_names_its_bash_twin_and_the_twin_exists(sh, ps1):
    lines = ps1.read_text(encoding="utf-8").splitlines()
    bash_functions = set(BASH_FUNCTION.findall(sh.read_text(encoding="utf-8")))
    twins = {}
    for name, row in functions(ps1):
        start = row
        while start > 0 and lines[start - 1].startswith("#"):
            start -= 1
        match = TWIN_COMMENT.match(lines[start]) if start < row else None
        assert match, f"{ps1.name}:{row + 1}: {name} has no '# bash: <function>' comment above it"
        twins[name] = match.group(1)
    named = {twin for twin in twins.values() if not twin.startswith("none")}
    assert named - bash_functions == set()
    if ps1 in LIBRARIES:
        assert named == bash_functions
    else:
        assert "main" in named and "usage" in named


@pytest.mark.parametrize(("sh", "ps1"), PAIRS, ids=lambda p: p.name)
def test_port_prints_the_same_usage_text_as_its_bash_script(sh, ps1):
    assert usage_text(ps1) == usage_text(sh)
    assert usage_text(ps1).startswith("Usage: $PROG ")


BASH_BUILTINS = {"BASH_SOURCE", "EPOCHREALTIME", "SECONDS"}  # bash's own variables, not the environment
PS_ENV_READ = re.compile(r"\$env:([A-Za-z_][A-Za-z0-9_]*)|Get-EnvOrDefault '([A-Za-z_][A-Za-z0-9_]*)'")


def env_vars_read(path: pathlib.Path) -> set[str]:
    """Environment variables a script reads: in PowerShell $env:X and Get-EnvOrDefault 'X'; in bash,
    upper-case names expanded with ${X...} that the script never assigns itself."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ps1":
        return {a or b for a, b in PS_ENV_READ.findall(text)}
    expanded = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    assigned = set(re.findall(r"^\s*(?:(?:readonly|local|export|declare(?: -\w+)*)\s+)?([A-Z][A-Z0-9_]*)=",
                              text, re.MULTILINE))
    return expanded - assigned - BASH_BUILTINS


@pytest.mark.parametrize(("sh", "ps1"), PAIRS, ids=lambda p: p.name)
def test_port_reads_the_same_environment_variables_as_its_bash_script(sh, ps1):
    assert len(env_vars_read(sh)) >= 2  # the AWS variables are read in lib/aws.sh and lib/aws.ps1
    assert env_vars_read(ps1) == env_vars_read(sh)
