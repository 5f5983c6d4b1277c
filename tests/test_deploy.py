"""scripts/deploy.sh and its PowerShell port deploy.ps1 end to end (each test runs on both; the .ps1
where pwsh exists): the real AWS CLI against a moto server process (ECS, ECR, EC2).

moto runs every service at MOTO_ECS_SERVICE_RUNNING=1 task, so a service whose desiredCount is 1
stabilises at once and one whose desiredCount is 2 never does: one server covers both cases. The
last AWS test runs the script, with its defaults, against the stack Terraform applied (tf_helpers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys

import boto3
import pytest

import scriptrun
import tf_helpers
from conftest import ROOT, MotoServer

TASK_DEFINITION = ROOT / "scripts" / "taskdefinition.py"
ACCOUNT_REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
TD_ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/"
CLUSTER = "ghost-engine-cluster-dev"
REPOS = {"orchestrator": "ghost-engine-orchestrator-dev", "worker": "ghost-engine-worker-dev"}
OLD_TAG = "0000000000000000000000000000000000000000"
NEW_TAG = "3f9c2a1b7e4d5c6f8a9b0c1d2e3f4a5b6c7d8e9f"
# Fields a new revision legitimately changes.
VOLATILE = {"taskDefinitionArn", "revision", "registeredAt", "registeredBy", "deregisteredAt", "status"}
MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
               "digest": "sha256:" + "a" * 64},
    "layers": [],
})


def container(service: str, port: int, environment: list[dict]) -> dict:
    return {
        "name": service,
        "image": f"{ACCOUNT_REGISTRY}/{REPOS[service]}:{OLD_TAG}",
        "cpu": 256,
        "memory": 512,
        "essential": True,
        "command": ["python", f"{service}.py"],
        "portMappings": [{"containerPort": port, "hostPort": port, "protocol": "tcp"}],
        "environment": environment,
        "stopTimeout": 30,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": f"/ecs/{REPOS[service]}", "awslogs-region": "us-east-1",
            "awslogs-stream-prefix": service}},
    }


SIDECAR = {"name": "sidecar", "image": "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0",
           "cpu": 64, "memory": 128, "essential": False}


@pytest.fixture(params=scriptrun.variants("deploy"))
def script(request):
    """scripts/deploy.sh, then scripts/deploy.ps1."""
    return request.param


@pytest.fixture(scope="module")
def moto():
    server = MotoServer(extra_env={"MOTO_ECS_SERVICE_RUNNING": "1"})
    yield server
    server.stop()


@pytest.fixture
def stack(moto):
    """A fresh cluster with both services at revision 1; the worker wants ``worker_desired`` tasks.
    ``region`` builds it elsewhere than us-east-1 (``build.ecs`` then talks to that region)."""
    moto.reset()

    def build(worker_desired: int = 1, tagged_repos: tuple[str, ...] = tuple(REPOS.values()),
              region: str = "us-east-1") -> None:
        session = boto3.session.Session(region_name=region)
        ecs, ecr, ec2 = (session.client(name, endpoint_url=moto.endpoint) for name in ("ecs", "ecr", "ec2"))
        build.ecs = ecs
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
        ecs.create_cluster(clusterName=CLUSTER)
        for repo in REPOS.values():
            ecr.create_repository(repositoryName=repo)
            ecr.put_image(repositoryName=repo, imageManifest=MANIFEST, imageTag=OLD_TAG)
        for repo in tagged_repos:
            ecr.put_image(repositoryName=repo, imageManifest=MANIFEST, imageTag=NEW_TAG)
        # A date-like value must come back as it was (PowerShell's ConvertFrom-Json would reformat it).
        env = [{"name": "HOST", "value": "0.0.0.0"}, {"name": "LOG_LEVEL", "value": "INFO"},
               {"name": "BUILT_AT", "value": "2026-01-01T00:00:00.000+02:00"}]
        definitions = {
            "orchestrator": [container("orchestrator", 8080, env + [{"name": "PORT", "value": "8080"}]), SIDECAR],
            "worker": [container("worker", 8081, env + [{"name": "PORT", "value": "8081"}])],
        }
        for service, containers in definitions.items():
            ecs.register_task_definition(
                family=REPOS[service], containerDefinitions=containers, requiresCompatibilities=["FARGATE"],
                networkMode="awsvpc", cpu="512", memory="1024",
                executionRoleArn="arn:aws:iam::123456789012:role/ghost-engine-execution-dev",
                taskRoleArn="arn:aws:iam::123456789012:role/ghost-engine-task-dev",
                tags=[{"key": "project", "value": "ghost-engine"}])
            ecs.create_service(
                cluster=CLUSTER, serviceName=service, taskDefinition=REPOS[service], launchType="FARGATE",
                desiredCount=worker_desired if service == "worker" else 1,
                networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [sg]}})

    build.ecs = boto3.client("ecs", region_name="us-east-1", endpoint_url=moto.endpoint)
    return build


def run_deploy(script, moto: MotoServer | tf_helpers.TerraformStack, *args: str, path_prefix: str = "",
               **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **moto.env(), **env}
    if path_prefix:
        full_env["PATH"] = f"{path_prefix}{os.pathsep}{full_env['PATH']}"
    return scriptrun.run(script, *args, env=full_env, timeout=120)


def service_task_definition(ecs, service: str) -> str:
    return ecs.describe_services(cluster=CLUSTER, services=[service])["services"][0]["taskDefinition"]


def task_definition(ecs, arn: str) -> tuple[dict, list]:
    doc = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    return doc["taskDefinition"], doc["tags"]


def without_volatile(td: dict) -> dict:
    return {k: v for k, v in td.items() if k not in VOLATILE}


STABLE = ("orchestrator: desired 1, running 1, pending 0, rollout COMPLETED; "
          "worker: desired 1, running 1, pending 0, rollout COMPLETED")


def test_deploy_moves_both_services_to_new_revision_changing_only_the_image(script, moto, stack):
    stack()
    result = run_deploy(script, moto, NEW_TAG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"deploying {NEW_TAG} to cluster {CLUSTER} in us-east-1 (AWS_REGION), endpoint {moto.endpoint}",
        f"orchestrator: ghost-engine-orchestrator-dev:1 -> ghost-engine-orchestrator-dev:2 (image tag {NEW_TAG})",
        f"worker: ghost-engine-worker-dev:1 -> ghost-engine-worker-dev:2 (image tag {NEW_TAG})",
        f"[   0s] {STABLE}",
        f"deployed {NEW_TAG}: orchestrator ghost-engine-orchestrator-dev:2, worker ghost-engine-worker-dev:2"
        " (stable, verified)",
    ]
    for service, repo in REPOS.items():
        new_arn = service_task_definition(stack.ecs, service)
        assert new_arn == f"{TD_ARN}{repo}:2"
        old, old_tags = task_definition(stack.ecs, f"{TD_ARN}{repo}:1")
        new, new_tags = task_definition(stack.ecs, new_arn)
        assert new["containerDefinitions"][0]["image"] == f"{ACCOUNT_REGISTRY}/{repo}:{NEW_TAG}"
        assert old["containerDefinitions"][0]["image"] == f"{ACCOUNT_REGISTRY}/{repo}:{OLD_TAG}"
        new["containerDefinitions"][0]["image"] = old["containerDefinitions"][0]["image"]
        assert without_volatile(new) == without_volatile(old)
        assert new_tags == old_tags == [{"key": "project", "value": "ghost-engine"}]
    orchestrator, _ = task_definition(stack.ecs, f"{TD_ARN}ghost-engine-orchestrator-dev:2")
    assert orchestrator["containerDefinitions"][1]["image"] == SIDECAR["image"]


def test_missing_tag_fails_before_touching_ecs(script, moto, stack):
    stack(tagged_repos=("ghost-engine-orchestrator-dev",))
    result = run_deploy(script, moto, NEW_TAG)
    assert result.returncode == 1
    assert (f"{script.name}: image tag '{NEW_TAG}' not found in ECR repository 'ghost-engine-worker-dev';"
            " nothing deployed") in result.stderr.splitlines()
    assert result.stdout == f"deploying {NEW_TAG} to cluster {CLUSTER} in us-east-1 (AWS_REGION), endpoint {moto.endpoint}\n"
    assert sorted(stack.ecs.list_task_definitions()["taskDefinitionArns"]) == [
        f"{TD_ARN}ghost-engine-orchestrator-dev:1", f"{TD_ARN}ghost-engine-worker-dev:1"]
    for service, repo in REPOS.items():
        assert service_task_definition(stack.ecs, service) == f"{TD_ARN}{repo}:1"


def test_service_that_does_not_stabilise_fails_naming_it(script, moto, stack):
    stack(worker_desired=2)
    result = run_deploy(script, moto, NEW_TAG, DEPLOY_TIMEOUT_SECONDS="2")
    assert result.returncode == 1
    # Then both go back (the worker still wants 2 tasks, so the rollback's wait times out too).
    assert result.stderr.splitlines()[-5:] == [
        f"{script.name}: timed out after 2s waiting for service(s) to stabilise: worker",
        f"{script.name}: rolling back both services to their previous revisions (no mixed versions)",
        f"{script.name}: orchestrator: ghost-engine-orchestrator-dev:2 -> ghost-engine-orchestrator-dev:1 (rolled back)",
        f"{script.name}: worker: ghost-engine-worker-dev:2 -> ghost-engine-worker-dev:1 (rolled back)",
        f"{script.name}: rollback requested, but the services were not stable within 2s"]
    for service, repo in REPOS.items():
        assert service_task_definition(stack.ecs, service) == f"{TD_ARN}{repo}:1"


PROGRESS = re.compile(r"^\[ *(\d+)s\] (.*)$", re.M)


def test_while_waiting_a_progress_line_per_poll_names_each_services_tasks_and_rollout(script, moto, stack):
    """Before: `aws ecs wait services-stable` said nothing for up to 10 minutes. Now one line per
    DEPLOY_POLL_SECONDS (at most 15), up to DEPLOY_TIMEOUT_SECONDS and no further."""
    stack(worker_desired=2)  # moto runs 1 task per service: the worker never gets its second
    result = run_deploy(script, moto, NEW_TAG, DEPLOY_TIMEOUT_SECONDS="3", DEPLOY_POLL_SECONDS="1")
    assert result.returncode == 1
    polls = PROGRESS.findall(result.stdout)
    assert {state for _, state in polls} == {
        "orchestrator: desired 1, running 1, pending 0, rollout COMPLETED; "
        "worker: desired 2, running 1, pending 1, rollout IN_PROGRESS"}
    elapsed = [int(seconds) for seconds, _ in polls]  # each poll's seconds since the wait began
    # A poll starts at most at the bound (bash counts whole seconds), and none after it.
    assert len(elapsed) >= 2 and elapsed[0] == 0 and elapsed == sorted(elapsed) and elapsed[-1] <= 3
    errors = result.stderr.splitlines()
    timed_out = errors.index(f"{script.name}: timed out after 3s waiting for service(s) to stabilise: worker")
    # Then the paired rollback (its own bounded wait is quiet: no progress lines after the bound).
    assert errors[timed_out + 1] == f"{script.name}: rolling back both services to their previous revisions (no mixed versions)"


def test_deploy_waits_with_its_own_describe_services_loop_and_never_passes_region(script, moto, stack, tmp_path):
    """Not `aws ecs wait services-stable`, whose 600 s cap is fixed whatever DEPLOY_TIMEOUT_SECONDS
    says; and no --region over what the user set (README "AWS settings")."""
    stack()
    calls = tmp_path / "calls.txt"
    recorder = tmp_path / "aws"
    recorder.write_text("#!/usr/bin/env bash\n"
                        f"echo \"$*\" >> '{calls}'\n"
                        f"exec '{shutil.which('aws')}' \"$@\"\n")
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    result = run_deploy(script, moto, NEW_TAG, path_prefix=str(tmp_path))
    assert result.returncode == 0, result.stderr
    recorded = calls.read_text().splitlines()
    assert [line for line in recorded if " wait " in f" {line} " or "--region" in line] == []
    assert (f"ecs describe-services --cluster {CLUSTER} --services orchestrator worker --output text --query "
            "services[].[serviceName, length(deployments), desiredCount, runningCount, pendingCount, "
            "deployments[?status=='PRIMARY'] | [0].rolloutState]") in recorded


@pytest.mark.parametrize(("env", "target"), [
    ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-1"}, "eu-west-1 (AWS_REGION)"),
    ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-west-1"}, "eu-west-1 (AWS_DEFAULT_REGION)"),
    ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_PROFILE": "team"}, "eu-west-1 (profile team)"),
], ids=["AWS_REGION", "AWS_DEFAULT_REGION", "profile"])
def test_deploy_finds_a_stack_in_the_region_the_aws_settings_name(script, moto, stack, tmp_path, env, target):
    """The stack is in eu-west-1 only: the deploy succeeds only if it follows the chain."""
    stack(region="eu-west-1")
    config = tmp_path / "config"
    config.write_text("[profile team]\nregion = eu-west-1\n")
    result = run_deploy(script, moto, NEW_TAG, AWS_CONFIG_FILE=str(config), **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"deploying {NEW_TAG} to cluster {CLUSTER} in {target}, endpoint {moto.endpoint}")


def test_a_profile_that_does_not_exist_fails_naming_it(script, moto, tmp_path):
    result = run_deploy(script, moto, NEW_TAG, AWS_PROFILE="nope", AWS_CONFIG_FILE=str(tmp_path / "absent"))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"{script.name}: AWS_PROFILE=nope names no profile in the AWS config or credentials "
                             "file; set AWS_PROFILE to one of `aws configure list-profiles`, or unset it\n")


def test_rolled_back_deployment_fails_naming_the_service(script, moto, stack, tmp_path):
    """ECS's circuit breaker rolls a failed deployment back; the waiter alone would call that stable."""
    stack()
    fake_aws = tmp_path / "aws"
    fake_aws.write_text(
        "#!/usr/bin/env bash\n"
        "# The real CLI; after the worker's update-service, roll the worker back as ECS would.\n"
        f"'{shutil.which('aws')}' \"$@\" || exit\n"
        'if [[ " $* " == *" update-service "*" --service worker "* ]]; then\n'
        f"  '{shutil.which('aws')}' --region us-east-1 ecs update-service --cluster {CLUSTER} --service worker"
        f" --task-definition {TD_ARN}ghost-engine-worker-dev:1 >/dev/null\n"
        "fi\n")
    fake_aws.chmod(fake_aws.stat().st_mode | stat.S_IXUSR)
    result = run_deploy(script, moto, NEW_TAG, path_prefix=str(tmp_path))
    assert result.returncode == 1
    # The orchestrator's rollout succeeded; it is rolled back too, so no mixed versions run.
    assert result.stderr.splitlines()[-5:] == [
        f"{script.name}: service 'worker' runs {TD_ARN}ghost-engine-worker-dev:1,"
        f" not {TD_ARN}ghost-engine-worker-dev:2: the deployment was rolled back",
        f"{script.name}: rolling back both services to their previous revisions (no mixed versions)",
        f"{script.name}: orchestrator: ghost-engine-orchestrator-dev:2 -> ghost-engine-orchestrator-dev:1 (rolled back)",
        f"{script.name}: worker: on ghost-engine-worker-dev:1 (not moved, or rolled back by ECS)",
        f"{script.name}: rolled back: orchestrator ghost-engine-orchestrator-dev:1, worker ghost-engine-worker-dev:1 (stable)"]
    for service, repo in REPOS.items():
        assert service_task_definition(stack.ecs, service) == f"{TD_ARN}{repo}:1"


def test_deploy_starts_from_the_latest_revision_terraform_registered_not_the_running_one(script, moto, stack):
    """Terraform owns every field but the image: a change it makes registers a revision that no
    service runs (the services ignore task_definition). The next deploy copies that revision, so
    the change is live with the new image."""
    stack()
    for repo in REPOS.values():  # what `terraform apply` with log_level = DEBUG does
        td, tags = task_definition(stack.ecs, f"{TD_ARN}{repo}:1")
        for variable in td["containerDefinitions"][0]["environment"]:
            if variable["name"] == "LOG_LEVEL":
                variable["value"] = "DEBUG"
        spec = {k: v for k, v in td.items() if k not in VOLATILE | {"requiresAttributes", "compatibilities"}}
        spec["memory"] = "2048"
        assert stack.ecs.register_task_definition(**spec, tags=tags)["taskDefinition"]["revision"] == 2
    result = run_deploy(script, moto, NEW_TAG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:3] == [  # after the "deploying <tag> to cluster ..." line
        f"orchestrator: ghost-engine-orchestrator-dev:1 -> ghost-engine-orchestrator-dev:3 (image tag {NEW_TAG})",
        f"worker: ghost-engine-worker-dev:1 -> ghost-engine-worker-dev:3 (image tag {NEW_TAG})"]
    for service, repo in REPOS.items():
        running, _ = task_definition(stack.ecs, service_task_definition(stack.ecs, service))
        main = running["containerDefinitions"][0]
        assert (running["revision"], running["memory"], main["image"]) == (3, "2048", f"{ACCOUNT_REGISTRY}/{repo}:{NEW_TAG}")
        assert {e["name"]: e["value"] for e in main["environment"]}["LOG_LEVEL"] == "DEBUG"


def test_unknown_cluster_fails_before_registering(script, moto, stack):
    stack()
    result = run_deploy(script, moto, NEW_TAG, ECS_CLUSTER="no-such-cluster")
    assert result.returncode == 1
    assert f"{script.name}: service 'orchestrator' not found in cluster 'no-such-cluster'" in result.stderr.splitlines()
    assert len(stack.ecs.list_task_definitions()["taskDefinitionArns"]) == 2


TAG_RULE = "1-128 of A-Z a-z 0-9 _ . -, not starting with . or -"


@pytest.mark.parametrize(("args", "env", "message"), [
    ([], {}, "expected 1 argument (IMAGE_TAG), got 0"),
    (["a", "b"], {}, "expected 1 argument (IMAGE_TAG), got 2"),
    (["-x"], {}, "unknown option: -x"),
    (["bad tag"], {}, f"invalid image tag 'bad tag': {TAG_RULE}"),
    (["x" * 129], {}, f"invalid image tag '{'x' * 129}': {TAG_RULE}"),
    ([".hidden"], {}, f"invalid image tag '.hidden': {TAG_RULE}"),
    ([NEW_TAG], {"DEPLOY_TIMEOUT_SECONDS": "10m"},
     "DEPLOY_TIMEOUT_SECONDS must be a whole number of seconds > 0, got '10m'"),
    ([NEW_TAG], {"DEPLOY_POLL_SECONDS": "16"},
     "DEPLOY_POLL_SECONDS must be a whole number of seconds from 1 to 15, got '16'"),
], ids=["none", "two", "option", "space", "too-long", "leading-dot", "timeout", "poll"])
def test_bad_usage_says_what_was_wrong_then_the_usage_and_exits_2(script, moto, args, env, message):
    result = run_deploy(script, moto, *args, **env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[:2] == [f"{script.name}: {message}", f"Usage: {script.name} IMAGE_TAG"]
    assert result.stderr.endswith("\nExit status: 0 deployed and verified, 1 deploy failed, 2 bad usage.\n")


def test_help_exits_0_and_documents_every_variable(script, moto):
    result = run_deploy(script, moto, "--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"Usage: {script.name} IMAGE_TAG\n")
    for line in ("  ECS_CLUSTER              cluster (ghost-engine-cluster-dev)",
                 "  ORCHESTRATOR_REPOSITORY  ECR repository (ghost-engine-orchestrator-dev)",
                 "  WORKER_REPOSITORY        ECR repository (ghost-engine-worker-dev)",
                 "  DEPLOY_TIMEOUT_SECONDS   how long to wait for both services to be stable (600)",
                 "  DEPLOY_POLL_SECONDS      seconds between progress lines while waiting, 1-15 (10)"):
        assert line in result.stdout.splitlines()


@pytest.fixture(scope="session")
def terraform_stack(tmp_path_factory, request) -> tf_helpers.TerraformStack:
    """The session's one Terraform-applied stack (shared with test_terraform.py)."""
    return tf_helpers.shared_stack(tmp_path_factory, request)


@tf_helpers.requires_terraform
@pytest.mark.timeout(900)  # the first user of the shared stack pays for its apply
def test_deploy_rolls_the_terraform_created_services_with_default_settings(script, terraform_stack):
    """deploy.sh's defaults name what Terraform creates. The stack is shared, so the test puts
    the services back on their revisions and deletes what it added."""
    ecs, ecr = terraform_stack.client("ecs"), terraform_stack.client("ecr")
    before = {service: service_task_definition(ecs, service) for service in REPOS}
    for repo in REPOS.values():
        ecr.put_image(repositoryName=repo, imageManifest=MANIFEST, imageTag=NEW_TAG)
    try:
        result = run_deploy(script, terraform_stack.moto, NEW_TAG)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1].startswith(
            f"deployed {NEW_TAG}: orchestrator ghost-engine-orchestrator-dev:")
        for service, repo in REPOS.items():
            old_arn, new_arn = before[service], service_task_definition(ecs, service)
            assert old_arn.startswith(f"{TD_ARN}{repo}:")
            assert new_arn.startswith(f"{TD_ARN}{repo}:") and new_arn != old_arn
            old, old_tags = task_definition(ecs, old_arn)
            new, new_tags = task_definition(ecs, new_arn)
            assert new["containerDefinitions"][0]["image"] == f"{ACCOUNT_REGISTRY}/{repo}:{NEW_TAG}"
            new["containerDefinitions"][0]["image"] = old["containerDefinitions"][0]["image"]
            assert without_volatile(new) == without_volatile(old)
            assert new_tags == old_tags
    finally:
        for service, repo in REPOS.items():
            added = service_task_definition(ecs, service)
            ecs.update_service(cluster=CLUSTER, service=service, taskDefinition=before[service])
            if added != before[service]:
                ecs.deregister_task_definition(taskDefinition=added)
                ecs.delete_task_definitions(taskDefinitions=[added])
            ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": NEW_TAG}])



def test_task_definition_copy_refuses_a_definition_without_the_named_container():
    described = {"taskDefinition": {"family": "f", "containerDefinitions": [{"name": "web", "image": "a:1"}]}}
    proc = subprocess.run([sys.executable, str(TASK_DEFINITION), "--prog", "deploy.sh", "worker", "b:2"],
                          input=json.dumps(described), capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1, "", "deploy.sh: no container named 'worker' in task definition f\n")
