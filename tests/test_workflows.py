"""The GitHub Actions workflows: triggers, least privilege, pinned actions, no template injection,
one test job (the reusable test.yml) and one image job (the reusable image.yml: build for
linux/amd64, run both services as containers, smoke test passes and fails with the worker
stopped), both called by ci.yml and deploy.yml, and the promotion of one SHA (deploy.yml: test +
image -> dev -> prod, each the reusable release.yml: push the tested image, deploy.sh <sha>,
smoke test, verify-deployment.sh). zizmor audits them too.
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
# The commit of each action's current major release, read from the action's own repository
# (/work/shared/ACTION-PINS.md: all on node24, which GitHub's hosted runners now run). Dependabot
# (.github/dependabot.yml) proposes bumps; a bump changes this table and the workflows together.
PINNED = {
    "actions/checkout": "3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1",
    "actions/setup-python": "5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0",
    "hashicorp/setup-terraform": "dfe3c3f87815947d99a8997f908cb6525fc44e9e # v4.0.1",
    CONFIGURE_AWS: "e6de054238d6b7531b4efff3b6587d9aade6a06c # v6.2.3",
    "aws-actions/amazon-ecr-login": "03f1aad4c6c7ffd436567f42f9384779290529bd # v2.1.7",
    # Read from the actions' own repositories (tags v7.0.0 and v8.0.1, both node24).
    "actions/upload-artifact": "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f # v7.0.0",
    "actions/download-artifact": "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c # v8.0.1",
}
IMAGE_WORKFLOW = "./.github/workflows/image.yml"
RELEASE_WORKFLOW = "./.github/workflows/release.yml"
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


def test_the_five_workflows_exist():
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == ["ci.yml", "deploy.yml", "image.yml", "release.yml",
                                                                "test.yml"]


def test_deploy_runs_on_push_to_main_and_manual_dispatch_only():
    on = triggers(load("deploy.yml"))
    assert on == {"push": {"branches": ["main"]}, "workflow_dispatch": None}


def test_ci_runs_on_pull_requests_and_pushes_to_other_branches():
    on = triggers(load("ci.yml"))
    assert on == {"pull_request": None, "push": {"branches-ignore": ["main"]}}


def test_test_and_image_workflows_run_only_when_called():
    assert triggers(load("test.yml")) == {"workflow_call": None}
    assert triggers(load("image.yml")) == {"workflow_call": None}
    assert triggers(load("release.yml")) == {"workflow_call": {"inputs": {"environment": {
        "description": "GitHub environment (and Terraform environment) to release to, e.g. dev or prod",
        "required": True, "type": "string"}}}}


def test_deploys_never_overlap_nor_cancel_each_other():
    assert load("deploy.yml")["concurrency"] == {"group": "deploy-main", "cancel-in-progress": False}


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml", "image.yml", "release.yml", "test.yml"])
def test_top_level_permissions_are_empty(name):
    assert load(name)["permissions"] == {}


def test_every_job_declares_least_privilege_permissions():
    """A job that calls release.yml grants what release.yml's job needs, and no more."""
    seen = {}
    for workflow, name, job in all_jobs():
        assumes_role = CONFIGURE_AWS in uses_of(job) or job.get("uses") == RELEASE_WORKFLOW
        expected = {"contents": "read", "id-token": "write"} if assumes_role else {"contents": "read"}
        assert job["permissions"] == expected, f"{workflow}:{name}"
        seen[f"{workflow}:{name}"] = assumes_role
    assert seen == {"ci.yml:test": False, "ci.yml:image": False, "deploy.yml:test": False, "deploy.yml:image": False,
                    "deploy.yml:dev": True, "deploy.yml:prod": True, "image.yml:image": False,
                    "release.yml:release": True, "test.yml:test": False}


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
    assert count == 9  # test.yml 3, image.yml 2, release.yml 4


def test_checkouts_do_not_persist_credentials():
    for workflow, name, job in jobs_with_steps():
        checkouts = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
        assert len(checkouts) == 1, f"{workflow}:{name}"
        assert checkouts[0]["with"] == {"persist-credentials": False}


def test_no_expression_is_expanded_inside_a_run_script():
    runs = [step["run"] for _, _, job in jobs_with_steps() for step in job["steps"] if "run" in step]
    assert len(runs) == 14  # test.yml 2, image.yml 6, release.yml 6
    for script in runs:
        assert "${{" not in script, script


def test_the_reusable_test_job_runs_exactly_the_readme_test_command_and_is_its_only_home():
    runs = [step["run"] for step in steps(load("test.yml"), "test") if "run" in step]
    assert runs == ["curl --version | head -n 1 && node --version && npm --version && pwsh --version",
                    README_TEST_COMMAND]
    assert {path.name: path.read_text().count(README_TEST_COMMAND) for path in WORKFLOWS.glob("*.yml")} == {
        "ci.yml": 0, "deploy.yml": 0, "image.yml": 0, "release.yml": 0, "test.yml": 1}


def test_the_test_job_sets_up_python_and_terraform_on_a_hosted_ubuntu_runner():
    job = load("test.yml")["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest"  # ships pwsh, so the .ps1 tests run there
    assert uses_of(job) == ["actions/checkout", "actions/setup-python", "hashicorp/setup-terraform"]
    assert job["steps"][1]["with"] == {"python-version": "3.11"}
    assert job["steps"][2]["with"] == {"terraform_version": "1.11.4", "terraform_wrapper": False}


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_ci_and_deploy_both_call_the_reusable_test_and_image_workflows(name):
    jobs = load(name)["jobs"]
    assert jobs["test"] == {"name": "test", "permissions": {"contents": "read"}, "uses": TEST_WORKFLOW}
    assert jobs["image"] == {"name": "image", "permissions": {"contents": "read"}, "uses": IMAGE_WORKFLOW}


def test_readme_documents_the_same_test_command():
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not written yet")
    assert README_TEST_COMMAND in readme.read_text()


def test_one_sha_is_promoted_dev_then_prod_through_the_same_release_workflow():
    """dev on every merge once test and image passed; prod after dev, behind the `prod` GitHub
    environment (its required reviewers), with the same inputs but the environment."""
    jobs = load("deploy.yml")["jobs"]
    assert list(jobs) == ["test", "image", "dev", "prod"]
    assert "needs" not in jobs["test"] and "needs" not in jobs["image"]
    assert (jobs["dev"]["needs"], jobs["prod"]["needs"]) == (["test", "image"], "dev")
    for environment in ("dev", "prod"):
        job = jobs[environment]
        assert (job["uses"], job["with"], job["if"]) == (
            RELEASE_WORKFLOW, {"environment": environment}, "github.ref == 'refs/heads/main'")
    assert load("release.yml")["jobs"]["release"]["environment"] == "${{ inputs.environment }}"


RELEASE_ENV = {
    "AWS_REGION": "${{ vars.AWS_REGION || 'us-east-1' }}",
    "ECS_CLUSTER": "${{ vars.ECS_CLUSTER || format('ghost-engine-cluster-{0}', inputs.environment) }}",
    "ORCHESTRATOR_SERVICE": "${{ vars.ORCHESTRATOR_SERVICE || 'orchestrator' }}",
    "WORKER_SERVICE": "${{ vars.WORKER_SERVICE || 'worker' }}",
    "ORCHESTRATOR_REPOSITORY":
        "${{ vars.ORCHESTRATOR_REPOSITORY || format('ghost-engine-orchestrator-{0}', inputs.environment) }}",
    "WORKER_REPOSITORY": "${{ vars.WORKER_REPOSITORY || format('ghost-engine-worker-{0}', inputs.environment) }}",
    "IMAGE": "ghost-engine:${{ github.sha }}",
}


def test_region_cluster_services_and_repositories_come_from_environment_variables_with_seed_defaults():
    assert load("release.yml")["jobs"]["release"]["env"] == RELEASE_ENV
    assert "env" not in load("deploy.yml")


def test_role_comes_from_an_environment_variable():
    found = 0
    for _, name, job in jobs_with_steps():
        for step in job["steps"]:
            if step.get("uses", "").startswith(CONFIGURE_AWS + "@"):
                assert step["with"] == {"role-to-assume": "${{ vars.AWS_ROLE_ARN }}",
                                        "aws-region": "${{ env.AWS_REGION }}"}, name
                found += 1
    assert found == 1


def test_terraform_prints_the_gh_variable_set_line_of_every_variable_the_release_reads():
    release = (WORKFLOWS / "release.yml").read_text()
    read = set(re.findall(r"vars\.([A-Z_]+)", release))
    assert read == {"AWS_REGION", "AWS_ROLE_ARN", "ECS_CLUSTER", "ORCHESTRATOR_SERVICE", "WORKER_SERVICE",
                    "ORCHESTRATOR_REPOSITORY", "WORKER_REPOSITORY", "ALB_URL"}
    outputs = (ROOT / "infra" / "aws" / "terraform" / "outputs.tf").read_text()
    block = outputs.split('output "github_variables" {', 1)[1].split("\n}\n", 1)[0]
    assert set(re.findall(r"^\s+([A-Z_]+)\s+=", block, re.M)) == read
    assert "gh variable set ${name} --env ${var.environment} --body '${value}'" in block


def test_the_image_is_built_for_linux_amd64_wherever_it_is_built():
    """The task definitions run X86_64; an arm64 image (an Apple-silicon Mac's default) never starts."""
    places = {path.relative_to(ROOT).as_posix(): path.read_text()
              for path in [*WORKFLOWS.glob("*.yml"), ROOT / "README.md", ROOT / "infra" / "aws" / "terraform" / "README.md"]}
    builds = [(name, line) for name, text in places.items() for line in text.splitlines() if "docker build " in line
              and not line.lstrip().startswith("#")]
    assert {name for name, _ in builds} >= {".github/workflows/image.yml", "infra/aws/terraform/README.md"}
    for name, line in builds:
        assert re.search(r"docker build --platform linux/amd64\b", line), (name, line)


def test_image_job_runs_both_services_from_the_image_and_smoke_tests_pass_then_fail_with_the_worker_stopped():
    job = load("image.yml")["jobs"]["image"]
    runs = {step["name"]: step["run"] for step in job["steps"] if "run" in step}
    assert runs["Build for the task definitions' platform"] == 'docker build --platform linux/amd64 --tag "$IMAGE" .'
    start = runs["Start both services from the image on one network"]
    assert start.count("--network ghost-engine") == 2 and "docker network create ghost-engine" in start
    assert '"$IMAGE" python worker.py' in start and "WORKER_URL=http://worker:8081" in start
    assert runs["Smoke test passes"] == "scripts/smoke-test.sh --quiet http://127.0.0.1:8080"
    failing = runs["Smoke test fails with the worker stopped"].splitlines()
    assert failing[:2] == ["docker stop worker",
                           "if SMOKE_TIMEOUT_SECONDS=60 scripts/smoke-test.sh --quiet http://127.0.0.1:8080; then"]
    assert "  exit 1" in failing
    assert runs["Save the image that passed"] == 'docker save "$IMAGE" | gzip > image.tar.gz'
    assert job["steps"][-1]["with"] == {"name": "image", "path": "image.tar.gz", "retention-days": 7}
    assert job["env"] == {"IMAGE": "ghost-engine:${{ github.sha }}"}


def test_release_pushes_exactly_the_tested_image_then_runs_deploy_script_with_the_sha_then_the_smoke_test():
    job_steps = steps(load("release.yml"), "release")
    assert [s.get("uses", "").split("@")[0] for s in job_steps if "uses" in s] == [
        "actions/checkout", "actions/download-artifact", CONFIGURE_AWS, "aws-actions/amazon-ecr-login"]
    assert job_steps[1]["with"] == {"name": "image"}
    runs = [s for s in job_steps if "run" in s]
    assert runs[0]["run"] == "gunzip --stdout image.tar.gz | docker load"
    missing, push = runs[1], runs[2]
    assert missing["id"] == "missing" and push["if"] == "steps.missing.outputs.repos != ''"
    assert push["env"] == {"REGISTRY": "${{ steps.ecr.outputs.registry }}", "IMAGE_TAG": "${{ github.sha }}",
                           "MISSING": "${{ steps.missing.outputs.repos }}"}
    assert "docker build" not in push["run"]  # no rebuild: the image that passed image.yml
    assert 'docker tag "$IMAGE" "$REGISTRY/$repo:$IMAGE_TAG"' in push["run"]
    assert 'docker push "$REGISTRY/$repo:$IMAGE_TAG"' in push["run"]
    assert runs[3]["run"] == 'scripts/deploy.sh "$GITHUB_SHA"'
    assert runs[4]["env"] == {"ALB_URL": "${{ vars.ALB_URL }}"}
    assert runs[4]["run"].rstrip().splitlines()[-1] == 'scripts/smoke-test.sh "$ALB_URL"'
    assert len(runs) == 6


FAKE_AWS = r"""#!/usr/bin/env bash
# describe-images: found for the repositories in $FAKE_HAS; $FAKE_DENY answers AccessDenied.
echo "aws $*" >>"$CALLS"
if [[ " $* " == *" describe-images "* ]]; then
  [[ -z "${FAKE_DENY:-}" ]] || { echo "An error occurred (AccessDeniedException) when calling DescribeImages" >&2; exit 254; }
  for repo in $FAKE_HAS; do [[ " $* " == *" --repository-name $repo "* ]] && exit 0; done
  echo "An error occurred (ImageNotFoundException) when calling the DescribeImages operation" >&2
  exit 254
fi
echo IMMUTABLE
"""
SHA = "3f9c2a1b7e4d5c6f8a9b0c1d2e3f4a5b6c7d8e9f"
ORCH, WORKER = "ghost-engine-orchestrator-dev", "ghost-engine-worker-dev"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def run_push_steps(tmp_path, has: str, deny: str = "") -> tuple[int, list[str]]:
    """Runs release.yml's two push steps as GitHub would (bash -e, the job's and the step's env,
    GITHUB_OUTPUT, the push step's `if` on the missing step's output), aws and docker faked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "docker").write_text('#!/usr/bin/env bash\necho "docker $*" >>"$CALLS"\n')
    for tool in ("aws", "docker"):
        (bin_dir / tool).chmod(0o755)
    calls, output = tmp_path / "calls", tmp_path / "github_output"
    calls.touch()
    output.touch()
    job = load("release.yml")["jobs"]["release"]
    job_env = {"ORCHESTRATOR_REPOSITORY": ORCH, "WORKER_REPOSITORY": WORKER, "IMAGE": f"ghost-engine:{SHA}"}
    outputs: dict[str, str] = {}
    expressions = {"${{ github.sha }}": SHA, "${{ steps.ecr.outputs.registry }}": REGISTRY}
    for step in [s for s in job["steps"] if "run" in s][1:3]:
        if "if" in step and not outputs.get("repos"):
            continue
        env = {**os.environ, **job_env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               "CALLS": str(calls), "GITHUB_OUTPUT": str(output), "FAKE_HAS": has, "FAKE_DENY": deny}
        for key, value in step.get("env", {}).items():
            env[key] = expressions.get(value) or outputs.get(value.removeprefix("${{ steps.missing.outputs.")
                                                              .removesuffix(" }}"), "")
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step["run"]], env=env,
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return proc.returncode, calls.read_text().splitlines()
        outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return 0, calls.read_text().splitlines()


def pushes(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith(("docker build", "docker pull", "docker push"))]


def test_a_first_release_pushes_the_tested_image_as_the_sha_to_both_repositories(tmp_path):
    status, calls = run_push_steps(tmp_path, has="")
    assert status == 0
    assert pushes(calls) == [f"docker push {REGISTRY}/{ORCH}:{SHA}", f"docker push {REGISTRY}/{WORKER}:{SHA}"]


def test_a_rerun_after_a_full_push_pushes_nothing(tmp_path):
    """The immutable repositories would refuse a second image under the same SHA tag."""
    status, calls = run_push_steps(tmp_path, has=f"{ORCH} {WORKER}")
    assert status == 0
    assert pushes(calls) == []


def test_a_rerun_after_a_partial_push_pushes_only_to_the_repository_that_lacks_it(tmp_path):
    status, calls = run_push_steps(tmp_path, has=ORCH)
    assert status == 0
    assert pushes(calls) == [f"docker push {REGISTRY}/{WORKER}:{SHA}"]


def test_an_ecr_error_other_than_not_found_fails_the_step(tmp_path):
    status, calls = run_push_steps(tmp_path, has="", deny="1")
    assert status != 0
    assert pushes(calls) == []


def test_every_job_that_assumes_the_deploy_role_runs_in_a_github_environment():
    """The role trusts `repo:<owner>/<name>:environment:<name>` only (infra/aws/terraform/ci.tf):
    a job without `environment:` gets a `ref:` subject and could not assume it."""
    found = 0
    for _, name, job in jobs_with_steps():
        if CONFIGURE_AWS in uses_of(job):
            assert job.get("environment"), name
            found += 1
    assert found == 1


def test_dependabot_keeps_actions_pip_and_docker_fresh():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    assert sorted((u["package-ecosystem"], u["directory"], u["schedule"]["interval"]) for u in config["updates"]) == [
        ("docker", "/", "weekly"), ("github-actions", "/", "weekly"), ("pip", "/", "weekly")]


def test_release_then_verifies_the_deployment_read_only_failing_the_run_on_a_failed_check():
    """The last step runs verify-deployment.sh on the commit just deployed, without --restart. A run
    step is `bash -e`: the script's exit 1 (a FAIL line) fails the step, the job and the run."""
    job = load("release.yml")["jobs"]["release"]
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
