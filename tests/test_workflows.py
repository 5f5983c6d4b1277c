"""The GitHub Actions workflows: triggers, least privilege, pinned actions, no template injection,
one test job (the reusable test.yml, called by ci.yml and deploy.yml), and the deploy sequence
(test -> build-push -> deploy.sh <sha> -> smoke test -> verify-deployment.sh). zizmor audits them too.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
README_TEST_COMMAND = "python -m pip install -q -r requirements-dev.txt && python -m pytest"
TEST_WORKFLOW = "./.github/workflows/test.yml"
CONFIGURE_AWS = "aws-actions/configure-aws-credentials"
# Release commits, each checked against public workflow runs and pin tables (see the report of the
# commit that added this file). A bump changes this table and the workflows together.
PINNED = {
    "actions/checkout": "11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2",
    "actions/setup-python": "a26af69be951a213d495a4c3e4e4022e16d87065 # v5.6.0",
    "hashicorp/setup-terraform": "b9cd54a3c349d3f38e8881555d616ced269862dd # v3.1.2",
    CONFIGURE_AWS: "b47578312673ae6fa5b5096b330d9fbac3d116df # v4.2.1",
    "aws-actions/amazon-ecr-login": "062b18b96a7aff071d4dc91bc00c4c1a7945b076 # v2.0.1",
}
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+?)@(\S+)(.*)$")


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    return workflow.get("on", workflow.get(True))


def steps(workflow: dict, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def all_jobs():
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            yield path.name, name, job


def jobs_with_steps():
    """Jobs that run steps themselves (a job that calls a reusable workflow has none)."""
    return [(workflow, name, job) for workflow, name, job in all_jobs() if "uses" not in job]


def uses_of(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job.get("steps", []) if "uses" in step]


def test_the_three_workflows_exist():
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == ["ci.yml", "deploy.yml", "test.yml"]


def test_deploy_runs_on_push_to_main_and_manual_dispatch_only():
    on = triggers(load("deploy.yml"))
    assert on == {"push": {"branches": ["main"]}, "workflow_dispatch": None}


def test_ci_runs_on_pull_requests_and_pushes_to_other_branches():
    on = triggers(load("ci.yml"))
    assert on == {"pull_request": None, "push": {"branches-ignore": ["main"]}}


def test_test_workflow_runs_only_when_called():
    assert triggers(load("test.yml")) == {"workflow_call": None}


def test_deploys_never_overlap_nor_cancel_each_other():
    assert load("deploy.yml")["concurrency"] == {"group": "deploy-main", "cancel-in-progress": False}


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml", "test.yml"])
def test_top_level_permissions_are_empty(name):
    assert load(name)["permissions"] == {}


def test_every_job_declares_least_privilege_permissions():
    seen = {}
    for workflow, name, job in all_jobs():
        assumes_role = CONFIGURE_AWS in uses_of(job)
        expected = {"contents": "read", "id-token": "write"} if assumes_role else {"contents": "read"}
        assert job["permissions"] == expected, f"{workflow}:{name}"
        seen[f"{workflow}:{name}"] = assumes_role
    assert seen == {"ci.yml:test": False, "deploy.yml:test": False,
                    "deploy.yml:build-push": True, "deploy.yml:deploy": True, "test.yml:test": False}


def test_every_action_is_pinned_to_a_reviewed_commit_sha_with_its_version():
    count = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for line in path.read_text().splitlines():
            match = USES_LINE.match(line)
            if not match or match.group(1).startswith("./"):
                continue
            action, ref, rest = match.groups()
            assert re.fullmatch(r"[0-9a-f]{40}", ref), line
            assert f"{ref}{rest}" == PINNED[action], line
            count += 1
    assert count == 8


def test_checkouts_do_not_persist_credentials():
    for workflow, name, job in jobs_with_steps():
        checkouts = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
        assert len(checkouts) == 1, f"{workflow}:{name}"
        assert checkouts[0]["with"] == {"persist-credentials": False}


def test_no_expression_is_expanded_inside_a_run_script():
    runs = [step["run"] for _, _, job in jobs_with_steps() for step in job["steps"] if "run" in step]
    assert len(runs) == 7
    for script in runs:
        assert "${{" not in script, script


def test_the_reusable_test_job_runs_exactly_the_readme_test_command_and_is_its_only_home():
    runs = [step["run"] for step in steps(load("test.yml"), "test") if "run" in step]
    assert runs == ["curl --version | head -n 1 && node --version && npm --version && pwsh --version",
                    README_TEST_COMMAND]
    assert {path.name: path.read_text().count(README_TEST_COMMAND) for path in WORKFLOWS.glob("*.yml")} == {
        "ci.yml": 0, "deploy.yml": 0, "test.yml": 1}


def test_the_test_job_sets_up_python_and_terraform_on_a_hosted_ubuntu_runner():
    job = load("test.yml")["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest"  # ships pwsh, so the .ps1 tests run there
    assert uses_of(job) == ["actions/checkout", "actions/setup-python", "hashicorp/setup-terraform"]
    assert job["steps"][1]["with"] == {"python-version": "3.11"}
    assert job["steps"][2]["with"] == {"terraform_version": "1.11.4", "terraform_wrapper": False}


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_ci_and_deploy_both_call_the_reusable_test_workflow(name):
    assert load(name)["jobs"]["test"] == {"name": "test", "permissions": {"contents": "read"},
                                          "uses": TEST_WORKFLOW}


def test_readme_documents_the_same_test_command():
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not written yet")
    assert README_TEST_COMMAND in readme.read_text()


def test_jobs_run_in_order_test_build_push_deploy_on_main_only():
    jobs = load("deploy.yml")["jobs"]
    assert list(jobs) == ["test", "build-push", "deploy"]
    assert "needs" not in jobs["test"]
    assert jobs["build-push"]["needs"] == "test"
    assert jobs["deploy"]["needs"] == "build-push"
    assert jobs["build-push"]["if"] == jobs["deploy"]["if"] == "github.ref == 'refs/heads/main'"


def test_role_comes_from_a_repository_variable():
    for _, name, job in jobs_with_steps():
        for step in job["steps"]:
            if step.get("uses", "").startswith(CONFIGURE_AWS + "@"):
                assert step["with"] == {"role-to-assume": "${{ vars.AWS_ROLE_ARN }}",
                                        "aws-region": "${{ env.AWS_REGION }}"}, name
    assert load("deploy.yml")["env"]["AWS_REGION"] == "us-east-1"


def test_build_push_builds_once_and_pushes_the_sha_tag_to_both_repositories():
    workflow = load("deploy.yml")
    job_steps = steps(workflow, "build-push")
    assert [s.get("uses", "").split("@")[0] for s in job_steps[:3]] == [
        "actions/checkout", CONFIGURE_AWS, "aws-actions/amazon-ecr-login"]
    build, push = job_steps[3], job_steps[4]
    for step in (build, push):
        assert step["env"] == {"REGISTRY": "${{ steps.ecr.outputs.registry }}", "IMAGE_TAG": "${{ github.sha }}"}
    assert build["run"].count("docker build ") == 1
    assert 'for repo in "$ORCHESTRATOR_REPOSITORY" "$WORKER_REPOSITORY"; do' in build["run"]
    assert 'docker push "$REGISTRY/$repo:$IMAGE_TAG"' in push["run"]
    assert 'docker push "$REGISTRY/$repo:latest"' in push["run"]
    assert {k: workflow["env"][k] for k in ("ORCHESTRATOR_REPOSITORY", "WORKER_REPOSITORY")} == {
        "ORCHESTRATOR_REPOSITORY": "ghost-engine-orchestrator-dev", "WORKER_REPOSITORY": "ghost-engine-worker-dev"}


def test_deploy_job_runs_deploy_script_with_the_sha_then_the_smoke_test():
    job_steps = steps(load("deploy.yml"), "deploy")
    runs = [s for s in job_steps if "run" in s]
    assert runs[0]["run"] == 'scripts/deploy.sh "$GITHUB_SHA"'
    assert runs[1]["env"] == {"ALB_URL": "${{ vars.ALB_URL }}"}
    assert runs[1]["run"].rstrip().splitlines()[-1] == 'scripts/smoke-test.sh "$ALB_URL"'
    assert len(runs) == 3


def test_deploy_job_then_verifies_the_deployment_read_only_failing_the_run_on_a_failed_check():
    """The last step runs verify-deployment.sh on the commit just deployed, without --restart. A run
    step is `bash -e`: the script's exit 1 (a FAIL line) fails the step, the job and the run."""
    job = load("deploy.yml")["jobs"]["deploy"]
    runs = [s for s in job["steps"] if "run" in s]
    verify = job["steps"][-1]
    assert verify is runs[-1] and runs.index(verify) > 0  # after deploy.sh
    assert verify["run"] == 'scripts/verify-deployment.sh --expect-tag "$GITHUB_SHA" "$ALB_URL"'
    assert verify["env"] == {"ALB_URL": "${{ vars.ALB_URL }}"}
    assert "--restart" not in verify["run"]
    assert not {"continue-on-error", "if", "shell"} & set(verify)


def test_zizmor_offline_reports_nothing():
    zizmor = shutil.which("zizmor", path=os.pathsep.join([str(pathlib.Path(sys.executable).parent),
                                                          os.environ.get("PATH", "")]))
    if zizmor is None:
        pytest.fail("zizmor not found: pip install -r requirements-dev.txt")
    result = subprocess.run([zizmor, "--offline", "--persona=pedantic", str(WORKFLOWS)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report." in result.stdout
