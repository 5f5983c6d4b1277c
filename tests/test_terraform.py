"""The Terraform module in infra/aws/terraform: formatting, validation, a full apply against a
moto server read back with boto3, a clean second plan, parity with ``dynamostore.py create-table``,
and checkov.

moto does not evaluate IAM policies or OIDC trust, and accepts but does not keep some ECS
settings (circuit breaker): those are checked as documents / planned values, not behaviour.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import venv

import pytest
from botocore.exceptions import ClientError

import tf_helpers
from conftest import ROOT, MotoServer
from orchestrator import OrchestratorConfig
from tf_helpers import requires_terraform
from worker import WorkerConfig

ACCOUNT = "123456789012"
REGION = "us-east-1"
TABLE = "ghost-engine-jobs-dev"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"
CLUSTER = "ghost-engine-cluster-dev"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role"
GITHUB_ROLE = "ghost-engine-github-actions-dev"  # github_actions_role_name = null
GITHUB_OIDC_PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
IMAGE_TAG = tf_helpers.STACK_IMAGE_TAG
STACK_TIMEOUT_S = 900  # covers the session's one apply (~75 s here) on a slow runner


@pytest.fixture(scope="session")
def stack(tmp_path_factory, request) -> tf_helpers.TerraformStack:
    """The session's one applied stack (shared with tests/test_deploy.py); skips without terraform."""
    return tf_helpers.shared_stack(tmp_path_factory, request)


def planned_resource(stack: tf_helpers.TerraformStack, address: str) -> dict:
    """Planned values of one resource (what Terraform sends, whether or not moto keeps it)."""
    for resource in stack.plan_json["planned_values"]["root_module"]["resources"]:
        if resource["address"] == address:
            return resource["values"]
    raise AssertionError(f"{address} is not in the plan")


def by_key(items: list[dict], key: str = "name") -> dict:
    return {item[key]: item for item in items}


# --- Static -----------------------------------------------------------------------------------


@requires_terraform
def test_module_is_terraform_fmt_clean(tmp_path):
    proc = tf_helpers.run(["fmt", "-check", "-recursive", "-diff", "-no-color", str(tf_helpers.MODULE_DIR)],
                          tmp_path, tf_helpers.terraform_env(tmp_path), ok_codes=(0, 1, 3))
    assert (proc.returncode, proc.stdout) == (0, "")


@requires_terraform
def test_module_validates_offline(tmp_path):
    module = tf_helpers.copy_module(tmp_path)
    env = tf_helpers.terraform_env(tmp_path)
    tf_helpers.run(["init", "-backend=false", "-no-color"], module, env)
    proc = tf_helpers.run(["validate", "-json", "-no-color"], module, env)
    result = json.loads(proc.stdout)
    assert (result["valid"], result["error_count"], result["warning_count"]) == (True, 0, 0)


def test_module_has_the_standard_files_and_a_partial_s3_backend():
    """The backend names no bucket (that is per account: bootstrap-state.sh prints it), so one
    module serves every account and environment; each environment's file names its own state
    object and locks it with an S3 lock file."""
    names = sorted(path.name for path in tf_helpers.MODULE_DIR.glob("*.tf"))
    assert names == ["alarms.tf", "alb.tf", "autoscaling.tf", "backend.tf", "ci.tf", "discovery.tf", "dynamodb.tf",
                     "ecr.tf", "ecs.tf", "iam.tf", "logs.tf", "main.tf", "network.tf", "outputs.tf", "secrets.tf",
                     "variables.tf", "versions.tf"]
    backends = {path.name: path.read_text() for path in tf_helpers.MODULE_DIR.glob("*.tf") if 'backend "' in path.read_text()}
    assert list(backends) == ["backend.tf"]
    assert backends["backend.tf"].endswith('terraform {\n  backend "s3" {}\n}\n')
    environments = tf_helpers.MODULE_DIR / "environments"
    assert sorted(path.name for path in environments.iterdir()) == [
        "dev.s3.tfbackend", "dev.tfvars", "prod.s3.tfbackend", "prod.tfvars", "staging.s3.tfbackend", "staging.tfvars"]
    for name in ("dev", "staging", "prod"):
        settings = [line for line in (environments / f"{name}.s3.tfbackend").read_text().splitlines()
                    if line and not line.startswith("#")]
        assert settings == [f'key          = "ghost-engine/{name}.tfstate"', "encrypt      = true",
                            "use_lockfile = true"]
        assert f'environment                 = "{name}"' in (environments / f"{name}.tfvars").read_text()


def test_terraform_version_constraint_covers_the_s3_lock_file():
    """use_lockfile needs Terraform 1.10; write-only arguments 1.11: the constraint says 1.11."""
    assert 'required_version = ">= 1.11.0"' in (tf_helpers.MODULE_DIR / "versions.tf").read_text()


# --- Plans with other variables (no apply) ----------------------------------------------------


@pytest.fixture
def unapplied(tmp_path, moto_server) -> tf_helpers.UnappliedModule:
    """A fresh, initialised copy of the module with no state, planning against moto."""
    return tf_helpers.unapplied_module(tmp_path, moto_server)


def invalid_variables(errors: list[dict]) -> dict[str, str]:
    """{variable: the module's error_message} for each "Invalid value for variable" error."""
    assert {e["summary"] for e in errors} == {"Invalid value for variable"}, errors
    return {e["snippet"]["values"][0]["traversal"].removeprefix("var."): e["detail"].split("\n\n")[0]
            for e in errors}


@requires_terraform
def test_github_repository_and_image_tag_have_no_default(unapplied):
    """A plan that sets neither fails on exactly these two: no placeholder reaches the trust
    policy, and no tag that was never pushed reaches a task definition."""
    errors = unapplied.plan_errors({})
    assert sorted((e["summary"], e["snippet"]["code"]) for e in errors) == [
        ("No value for required variable", 'variable "github_repository" {'),
        ("No value for required variable", 'variable "image_tag" {'),
    ]
    assert all("is not set, and has no default value" in e["detail"] for e in errors)


INVALID_VALUES = {
    "wildcards, latest, a space": {
        "github_repository": "acme/*", "image_tag": "latest", "github_actions_role_name": "github actions"},
    "not owner/name, a short SHA": {
        "github_repository": "repo:acme/ghost-engine:ref:refs/heads/dev", "image_tag": "3f9c2a1"},
}


@requires_terraform
@pytest.mark.parametrize("case", sorted(INVALID_VALUES))
def test_invalid_repository_image_tag_and_role_name_are_rejected_naming_the_value(unapplied, case):
    variables = INVALID_VALUES[case]
    expected = {
        "github_repository": "github_repository must be owner/name (owner: letters, digits and hyphens; name: "
                             f"letters, digits, '.', '_', '-'; no wildcards), got \"{variables['github_repository']}\".",
        "image_tag": "image_tag must be a full 40-character lowercase commit SHA (git rev-parse HEAD), the tag "
                     f"the pipeline pushes; got \"{variables['image_tag']}\". Tags such as `latest` are never "
                     "pushed to the IMMUTABLE repositories.",
        "github_actions_role_name": "github_actions_role_name must be an IAM role name: 1-64 letters, digits "
                                    "or +=,.@_-.",
    }
    assert invalid_variables(unapplied.plan_errors(variables)) == {name: expected[name] for name in variables}


def resource_change(plan: dict, address: str) -> dict:
    for change in plan["resource_changes"]:
        if change["address"] == address:
            return change["change"]
    raise AssertionError(f"{address} is not in the plan")


@requires_terraform
@pytest.mark.timeout(300)
def test_an_existing_github_actions_role_is_adopted_by_name_and_import_not_replaced(unapplied, moto_server):
    """The README's second path: name the existing role, reuse the account's OIDC provider,
    `terraform import` the role. The plan then updates that role in place (the module's trust
    policy, for exactly this repository and environment) and creates no provider."""
    import boto3

    iam = boto3.client("iam", endpoint_url=moto_server.endpoint, region_name=REGION)
    iam.create_role(RoleName="github-actions-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
                                                "Principal": {"Federated": GITHUB_OIDC_PROVIDER_ARN}}]}))
    try:
        variables = {**tf_helpers.STACK_VARS, "github_repository": "Acme-Corp/ghost.engine_2",
                     "github_actions_role_name": "github-actions-role",
                     "github_oidc_provider_arn": GITHUB_OIDC_PROVIDER_ARN}
        unapplied.terraform("import", "-no-color", *tf_helpers.var_args(variables),
                            "aws_iam_role.github_actions", "github-actions-role")
        plan = unapplied.plan_json(variables)
    finally:
        iam.delete_role(RoleName="github-actions-role")
    role = resource_change(plan, "aws_iam_role.github_actions")
    assert (role["actions"], role["after"]["name"]) == (["update"], "github-actions-role")
    assert json.loads(role["after"]["assume_role_policy"])["Statement"][0]["Condition"] == {"StringEquals": {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": "repo:Acme-Corp/ghost.engine_2:environment:dev",
    }}
    assert [c["address"] for c in plan["resource_changes"] if c["type"] == "aws_iam_openid_connect_provider"] == []
    assert resource_change(plan, "aws_iam_role_policy.github_deploy")["actions"] == ["create"]


@requires_terraform
@pytest.mark.timeout(300)
def test_by_default_only_the_worker_token_is_generated(unapplied):
    """api_token_enabled defaults to false: no API_TOKEN secret (the applied stack turns it on)."""
    variables = {name: value for name, value in tf_helpers.STACK_VARS.items() if name != "api_token_enabled"}
    plan = unapplied.plan_json(variables)
    managed = [c["address"] for c in plan["resource_changes"] if c["mode"] == "managed"]
    assert len(managed) == 65  # no OIDC provider (infra/aws/account owns it); autoscaling.tf: 2 targets, 3 policies
    assert sorted(a for a in managed if a.startswith("aws_secretsmanager")) == [
        "aws_secretsmanager_secret.worker_token", "aws_secretsmanager_secret_version.worker_token"]


# --- The applied stack -------------------------------------------------------------------------


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_apply_creates_every_resource_and_the_outputs(stack):
    changes = stack.plan_json["resource_changes"]
    assert {change["change"]["actions"][0] for change in changes if change["mode"] == "managed"} == {"create"}
    assert len([c for c in changes if c["mode"] == "managed"]) == 67  # with autoscaling.tf's 5
    dns = stack.client("elbv2").describe_load_balancers(Names=["ghost-engine-alb-dev"])["LoadBalancers"][0]["DNSName"]
    outputs = dict(stack.outputs)
    assert outputs.pop("github_variables").splitlines() == [
        "gh variable set ALB_URL --env dev --body 'http://" + dns + "'",
        f"gh variable set AWS_REGION --env dev --body '{REGION}'",
        f"gh variable set AWS_ROLE_ARN --env dev --body '{ROLE_ARN}/{GITHUB_ROLE}'",
        f"gh variable set ECS_CLUSTER --env dev --body '{CLUSTER}'",
        "gh variable set ORCHESTRATOR_REPOSITORY --env dev --body 'ghost-engine-orchestrator-dev'",
        "gh variable set ORCHESTRATOR_SERVICE --env dev --body 'orchestrator'",
        "gh variable set WORKER_REPOSITORY --env dev --body 'ghost-engine-worker-dev'",
        "gh variable set WORKER_SERVICE --env dev --body 'worker'",
    ]
    assert outputs.pop("alb_url") == f"http://{dns}"
    assert outputs.pop("alb_dns_name") == dns
    assert outputs.pop("vpc_id").startswith("vpc-")
    assert outputs == {  # alarm_topic_arn is null (no topic), and `output -json` leaves nulls out
        "cluster_name": CLUSTER,
        "ecr_repository_urls": {
            "orchestrator": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ghost-engine-orchestrator-dev",
            "worker": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ghost-engine-worker-dev",
        },
        "github_actions_role_arn": f"{ROLE_ARN}/{GITHUB_ROLE}",
        "jobs_table_arn": TABLE_ARN,
        "jobs_table_name": TABLE,
        "log_group_names": {
            "orchestrator": "/ecs/ghost-engine-orchestrator-dev",
            "worker": "/ecs/ghost-engine-worker-dev",
        },
        "service_names": {"orchestrator": "orchestrator", "worker": "worker"},
        "task_definition_families": {
            "orchestrator": "ghost-engine-orchestrator-dev",
            "worker": "ghost-engine-worker-dev",
        },
        "worker_url": "http://worker.ghost-engine-dev.local:8081",
        "worker_token_secret_arn": secret_arns(stack)["ghost-engine-worker-token-dev"],
        "api_token_secret_arn": secret_arns(stack)["ghost-engine-api-token-dev"],  # api_token_enabled = true
    }


EXPECTED_TABLE = {
    "KeySchema": [{"AttributeName": "jobId", "KeyType": "HASH"}],
    "AttributeDefinitions": [
        {"AttributeName": "activeShard", "AttributeType": "S"},
        {"AttributeName": "createdKey", "AttributeType": "S"},
        {"AttributeName": "jobId", "AttributeType": "S"},
        {"AttributeName": "leaseExpiresAt", "AttributeType": "N"},
        {"AttributeName": "listShard", "AttributeType": "S"},
        {"AttributeName": "stateShard", "AttributeType": "S"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
    "GlobalSecondaryIndexes": [{
        "IndexName": "active-by-lease",
        "KeySchema": [
            {"AttributeName": "activeShard", "KeyType": "HASH"},
            {"AttributeName": "leaseExpiresAt", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }, {
        "IndexName": "jobs-by-created",
        "KeySchema": [
            {"AttributeName": "listShard", "KeyType": "HASH"},
            {"AttributeName": "createdKey", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }, {
        "IndexName": "jobs-by-state",
        "KeySchema": [
            {"AttributeName": "stateShard", "KeyType": "HASH"},
            {"AttributeName": "createdKey", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }],
    "LocalSecondaryIndexes": [],
    "SSE": "ENABLED",
    "TTL": {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"},
    "PITR": "ENABLED",
}


def table_shape(dynamodb, name: str) -> dict:
    """What the code depends on in a table, in a comparable form."""
    table = dynamodb.describe_table(TableName=name)["Table"]
    pitr = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    return {
        "KeySchema": table["KeySchema"],
        "AttributeDefinitions": sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
        "BillingMode": table.get("BillingModeSummary", {}).get("BillingMode"),
        "GlobalSecondaryIndexes": sorted(
            ({key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
             for index in table.get("GlobalSecondaryIndexes", [])),
            key=lambda index: index["IndexName"]),
        "LocalSecondaryIndexes": table.get("LocalSecondaryIndexes", []),
        "SSE": table.get("SSEDescription", {}).get("Status"),
        "TTL": dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"],
        "PITR": pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"],
    }


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_jobs_table_has_the_key_schema_index_ttl_pitr_and_sse_of_the_brief(stack):
    dynamodb = stack.client("dynamodb")
    assert table_shape(dynamodb, TABLE) == EXPECTED_TABLE
    assert dynamodb.describe_table(TableName=TABLE)["Table"]["DeletionProtectionEnabled"] is False


def test_store_create_table_builds_the_same_table_as_terraform():
    """``python dynamostore.py create-table`` (local development, tests) builds, idempotently, the table
    the test above reads back from the Terraform apply: both equal EXPECTED_TABLE. Needs no terraform."""
    fresh = MotoServer()
    try:
        env = {**os.environ, **fresh.env(), "JOBS_TABLE_NAME": TABLE}
        runs = [subprocess.run([sys.executable, "dynamostore.py", "create-table"], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=60) for _ in range(2)]
        assert [(r.returncode, r.stdout) for r in runs] == [(0, f"created: {TABLE}\n"), (0, f"exists: {TABLE}\n")], \
            [r.stderr[-3000:] for r in runs]
        import boto3

        fresh_dynamodb = boto3.client("dynamodb", endpoint_url=fresh.endpoint, region_name=REGION)
        assert table_shape(fresh_dynamodb, TABLE) == EXPECTED_TABLE
    finally:
        fresh.stop()


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_orchestrator_role_may_call_exactly_the_five_dynamodb_operations(stack):
    iam = stack.client("iam")
    role = "ghost-engine-orchestrator-task-dev"
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["jobs-table"]
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    document = iam.get_role_policy(RoleName=role, PolicyName="jobs-table")["PolicyDocument"]
    statements = sorted(document["Statement"], key=lambda s: s["Sid"])
    for statement in statements:  # lists in the policy come in the order of Terraform's sets
        for key in ("Action", "Resource"):
            if isinstance(statement[key], list):
                statement[key] = sorted(statement[key])
    assert statements == [
        {"Sid": "ActiveJobsIndex", "Effect": "Allow", "Action": "dynamodb:Query",
         "Resource": f"{TABLE_ARN}/index/active-by-lease"},
        {"Sid": "JobItems", "Effect": "Allow",
         "Action": ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
         "Resource": TABLE_ARN},
        {"Sid": "JobListIndexes", "Effect": "Allow", "Action": "dynamodb:Query",
         "Resource": [f"{TABLE_ARN}/index/jobs-by-created", f"{TABLE_ARN}/index/jobs-by-state"]},
    ]


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_worker_role_has_no_permissions_and_execution_role_the_ecs_managed_policy_and_the_tokens(stack):
    iam = stack.client("iam")
    assert iam.list_role_policies(RoleName="ghost-engine-worker-task-dev")["PolicyNames"] == []
    assert iam.list_attached_role_policies(RoleName="ghost-engine-worker-task-dev")["AttachedPolicies"] == []
    assert iam.list_role_policies(RoleName="ghost-engine-ecs-execution-dev")["PolicyNames"] == ["service-tokens"]
    document = iam.get_role_policy(RoleName="ghost-engine-ecs-execution-dev", PolicyName="service-tokens")["PolicyDocument"]
    arns = secret_arns(stack)
    assert document == {"Version": "2012-10-17", "Statement": [{
        "Sid": "ReadServiceTokens", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
        "Resource": [arns["ghost-engine-worker-token-dev"], arns["ghost-engine-api-token-dev"]]}]}
    assert iam.list_attached_role_policies(RoleName="ghost-engine-ecs-execution-dev")["AttachedPolicies"] == [{
        "PolicyName": "AmazonECSTaskExecutionRolePolicy",
        "PolicyArn": "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
    }]
    trust = iam.get_role(RoleName="ghost-engine-worker-task-dev")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == [{
        "Sid": "EcsTasksAssume", "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"Service": "ecs-tasks.amazonaws.com"},
        "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
    }]


def secret_arns(stack: tf_helpers.TerraformStack) -> dict[str, str]:
    """{secret name: ARN} of the stack's Secrets Manager secrets."""
    return {s["Name"]: s["ARN"] for s in stack.client("secretsmanager").list_secrets()["SecretList"]}


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_tokens_are_generated_once_into_secrets_manager_and_fit_the_services_config(stack):
    """48 random letters and digits each, different, and taken as they are by the services'
    configuration (Env.secret); the apply wrote them write-only: neither value is in the plan or
    the state (a second plan is empty: test_second_plan_shows_no_changes)."""
    secretsmanager = stack.client("secretsmanager")
    arns = secret_arns(stack)
    assert sorted(arns) == ["ghost-engine-api-token-dev", "ghost-engine-worker-token-dev"]
    values = {name: secretsmanager.get_secret_value(SecretId=arn)["SecretString"] for name, arn in arns.items()}
    worker_token, api_token = values["ghost-engine-worker-token-dev"], values["ghost-engine-api-token-dev"]
    assert [(len(v), v.isascii() and v.isalnum()) for v in (worker_token, api_token)] == [(48, True), (48, True)]
    assert worker_token != api_token
    config = OrchestratorConfig.from_env({"WORKER_TOKEN": worker_token, "API_TOKEN": api_token})
    assert (config.worker_token, config.api_token) == (worker_token, api_token)
    assert WorkerConfig.from_env({"HOST": "0.0.0.0", "WORKER_TOKEN": worker_token}).worker_token == worker_token
    state = stack.client("s3").get_object(Bucket=tf_helpers.STATE_BUCKET, Key="ghost-engine/dev.tfstate")
    state = state["Body"].read().decode()  # the state object in S3 (backend.tf), as Terraform wrote it
    plan = json.dumps(stack.plan_json)
    assert [v for v in values.values() if v in state or v in plan] == []
    assert {s["Name"]: s.get("Description") for s in secretsmanager.list_secrets()["SecretList"]} == {
        "ghost-engine-worker-token-dev": "WORKER_TOKEN: the orchestrator's bearer token for the worker's /process",
        "ghost-engine-api-token-dev": "API_TOKEN: the bearer token the public API requires of its clients",
    }


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_github_role_trusts_only_the_environment_of_the_repository_and_may_only_deploy(stack):
    iam = stack.client("iam")
    providers = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    provider_arn = GITHUB_OIDC_PROVIDER_ARN
    assert providers == [{"Arn": provider_arn}]  # the account's (tf_helpers.prepare_account), looked up
    assert not [r for r in stack.plan_json["resource_changes"] if r["type"] == "aws_iam_openid_connect_provider"]
    assert iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn)["ClientIDList"] == ["sts.amazonaws.com"]

    # The name is namespaced by project and environment (github_actions_role_name = null).
    assert [r["RoleName"] for r in iam.list_roles()["Roles"] if "github" in r["RoleName"]] == [GITHUB_ROLE]
    role = iam.get_role(RoleName=GITHUB_ROLE)["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [{
        "Sid": "GitHubActionsOidc", "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
        "Principal": {"Federated": provider_arn},
        "Condition": {"StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            # The environment form: what GitHub sends for a job with `environment: dev`.
            "token.actions.githubusercontent.com:sub": "repo:example-owner/ghost-engine:environment:dev",
        }},
    }]
    assert iam.list_attached_role_policies(RoleName=GITHUB_ROLE)["AttachedPolicies"] == []
    assert iam.list_role_policies(RoleName=GITHUB_ROLE)["PolicyNames"] == ["deploy"]
    document = iam.get_role_policy(RoleName=GITHUB_ROLE, PolicyName="deploy")["PolicyDocument"]
    granted = {s["Sid"]: (sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"]),
                          sorted([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]),
                          s.get("Condition"))
               for s in document["Statement"]}
    ecr = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository"
    ecs = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}"
    logs = f"arn:aws:logs:{REGION}:{ACCOUNT}"
    assert granted == {
        "EcrLogin": (["ecr:GetAuthorizationToken"], ["*"], None),
        "EcrPushAndCheck": (
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
             "ecr:DescribeImages", "ecr:DescribeRepositories", "ecr:InitiateLayerUpload", "ecr:PutImage",
             "ecr:UploadLayerPart"],
            [f"{ecr}/ghost-engine-orchestrator-dev", f"{ecr}/ghost-engine-worker-dev"], None),
        "EcsTaskDefinitions": (["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"], ["*"], None),
        "EcsTagNewRevisions": (
            ["ecs:TagResource"],
            [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/ghost-engine-orchestrator-dev:*",
             f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/ghost-engine-worker-dev:*"],
            {"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}}),
        "EcsServices": (["ecs:DescribeServices", "ecs:UpdateService"], [f"{ecs}/orchestrator", f"{ecs}/worker"], None),
        # scripts/verify-deployment.sh after deploy.sh: exactly the reads it makes besides the two
        # ECS ones above (tests/test_verify_deployment.py records its calls and compares).
        "VerifyJobRow": (["dynamodb:GetItem"], [TABLE_ARN], None),
        "VerifyLogLines": (["logs:FilterLogEvents"], sorted(
            f"{logs}:log-group:/ecs/ghost-engine-{name}-dev{suffix}"
            for name in ("orchestrator", "worker") for suffix in ("", ":*")), None),
        "VerifyLogRetention": (["logs:DescribeLogGroups"], [f"{logs}:log-group:*"], None),
        "VerifyMetric": (["cloudwatch:GetMetricStatistics"], ["*"], None),
        "VerifyAlarms": (["cloudwatch:DescribeAlarms"], sorted(
            f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:ghost-engine-{name}-dev"
            for name in ("alb-5xx", "job-failed", "orchestrator-running-tasks", "worker-running-tasks")), None),
        "PassEcsRoles": (
            ["iam:PassRole"],
            [f"{ROLE_ARN}/ghost-engine-ecs-execution-dev", f"{ROLE_ARN}/ghost-engine-orchestrator-task-dev",
             f"{ROLE_ARN}/ghost-engine-worker-task-dev"],
            {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
    }


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_ecs_services_run_on_fargate_in_private_subnets_wired_to_alb_and_cloud_map(stack):
    ecs, elbv2, sd = stack.client("ecs"), stack.client("elbv2"), stack.client("servicediscovery")
    assert ecs.describe_clusters(clusters=[CLUSTER], include=["SETTINGS"])["clusters"][0]["settings"] == [
        {"name": "containerInsights", "value": "enabled"}]
    services = by_key(ecs.describe_services(cluster=CLUSTER, services=["orchestrator", "worker"])["services"],
                      "serviceName")
    target_group = elbv2.describe_target_groups(Names=["ghost-engine-orch-dev"])["TargetGroups"][0]
    worker_registry = by_key(sd.list_services()["Services"], "Name")["worker"]
    for name, service in services.items():
        # orchestrator_desired_count = 2 in the test stack; worker_desired_count's default is 2.
        assert (service["launchType"], service["desiredCount"], service["runningCount"], service["status"]) == \
            ("FARGATE", 2, 2, "ACTIVE"), name
        # Revision 1 unless a deploy test has already moved the service on.
        assert service["taskDefinition"].startswith(
            f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/ghost-engine-{name}-dev:")
        vpc = service["networkConfiguration"]["awsvpcConfiguration"]
        assert vpc["assignPublicIp"] == "DISABLED"
        assert len(vpc["subnets"]) == 2
    assert services["orchestrator"]["loadBalancers"] == [{
        "targetGroupArn": target_group["TargetGroupArn"], "containerName": "orchestrator", "containerPort": 8080}]
    assert services["worker"]["loadBalancers"] == []
    assert [r["registryArn"] for r in services["worker"]["serviceRegistries"]] == [worker_registry["Arn"]]
    assert services["orchestrator"].get("serviceRegistries", []) == []
    namespaces = sd.list_namespaces()["Namespaces"]
    assert [(n["Name"], n["Type"]) for n in namespaces] == [("ghost-engine-dev.local", "DNS_PRIVATE")]


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_ecs_services_are_planned_with_rollback_circuit_breaker_and_rolling_deploys(stack):
    """moto drops these settings, so the planned values are the evidence."""
    for name in ("orchestrator", "worker"):
        planned = planned_resource(stack, f'aws_ecs_service.this["{name}"]')
        assert planned["deployment_circuit_breaker"] == [{"enable": True, "rollback": True}]
        assert (planned["deployment_minimum_healthy_percent"], planned["deployment_maximum_percent"]) == (100, 200)
        assert planned["launch_type"] == "FARGATE"


def container(ecs, family: str) -> tuple[dict, dict]:
    task = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    assert len(task["containerDefinitions"]) == 1
    return task, task["containerDefinitions"][0]


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_task_definitions_run_the_right_command_with_the_environment_each_service_reads(stack):
    """Only variables the service reads: the worker publishes no metrics, so it gets no
    ENVIRONMENT or METRICS_NAMESPACE. The tokens come from Secrets Manager, not the environment."""
    ecs = stack.client("ecs")
    expected_env = {
        "orchestrator": {"HOST": "0.0.0.0", "PORT": "8080", "LOG_LEVEL": "INFO",
                         "WORKER_URL": "http://worker.ghost-engine-dev.local:8081",
                         "JOBS_TABLE_NAME": TABLE, "AWS_REGION": REGION,
                         "ENVIRONMENT": "dev", "METRICS_NAMESPACE": "GhostEngine"},
        # Keeps accepting for the Cloud Map TTL (10 s) + 5 s after SIGTERM, then 25 s to finish.
        "worker": {"HOST": "0.0.0.0", "PORT": "8081", "LOG_LEVEL": "INFO",
                   "SHUTDOWN_DELAY_SECONDS": "15", "SHUTDOWN_GRACE_SECONDS": "25"},
    }
    stop_timeouts = {"orchestrator": 30, "worker": 45}  # worker: 15 + 25 + 5
    arns = secret_arns(stack)
    expected_secrets = {  # sorted by name; api_token_enabled = true
        "orchestrator": [{"name": "API_TOKEN", "valueFrom": arns["ghost-engine-api-token-dev"]},
                         {"name": "WORKER_TOKEN", "valueFrom": arns["ghost-engine-worker-token-dev"]}],
        "worker": [{"name": "WORKER_TOKEN", "valueFrom": arns["ghost-engine-worker-token-dev"]}],
    }
    for name, port in (("orchestrator", 8080), ("worker", 8081)):
        family = f"ghost-engine-{name}-dev"
        task, main = container(ecs, f"{family}:1")  # the revision Terraform registered
        assert (task["family"], task["revision"], task["networkMode"], task["requiresCompatibilities"],
                task["cpu"], task["memory"]) == (family, 1, "awsvpc", ["FARGATE"], "256", "512")
        assert task["executionRoleArn"] == f"{ROLE_ARN}/ghost-engine-ecs-execution-dev"
        assert task["taskRoleArn"] == f"{ROLE_ARN}/ghost-engine-{name}-task-dev"
        assert main["name"] == name
        assert main["image"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ghost-engine-{name}-dev:{IMAGE_TAG}"
        assert main["command"] == ["python", f"{name}.py"]
        assert main["essential"] is True
        assert [(p["containerPort"], p["protocol"]) for p in main["portMappings"]] == [(port, "tcp")]
        assert {e["name"]: e["value"] for e in main["environment"]} == expected_env[name]
        assert main["secrets"] == expected_secrets[name]
        assert main["stopTimeout"] == stop_timeouts[name]
        assert main["readonlyRootFilesystem"] is True
        assert main["logConfiguration"] == {"logDriver": "awslogs", "options": {
            "awslogs-group": f"/ecs/ghost-engine-{name}-dev", "awslogs-region": REGION,
            "awslogs-stream-prefix": name, "mode": "non-blocking", "max-buffer-size": "25m"}}
        # The Dockerfile's HEALTHCHECK runs the same script (tests/test_dockerfile.py); it follows PORT.
        assert main["healthCheck"] == {"command": ["CMD", "python", "healthcheck.py"], "interval": 15,
                                       "timeout": 5, "retries": 3, "startPeriod": 10}


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_log_groups_keep_logs_14_days(stack):
    groups = stack.client("logs").describe_log_groups(logGroupNamePrefix="/ecs/ghost-engine-")["logGroups"]
    assert {g["logGroupName"]: g.get("retentionInDays") for g in groups} == {
        "/ecs/ghost-engine-orchestrator-dev": 14, "/ecs/ghost-engine-worker-dev": 14}


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_alarms_watch_alb_5xx_running_tasks_and_failed_jobs(stack):
    every = by_key(stack.client("cloudwatch").describe_alarms()["MetricAlarms"], "AlarmName")
    alarms = {name: alarm for name, alarm in every.items() if name.startswith("ghost-engine-") and name.endswith("-dev")}
    assert sorted(alarms) == ["ghost-engine-alb-5xx-dev", "ghost-engine-job-failed-dev",
                              "ghost-engine-orchestrator-running-tasks-dev", "ghost-engine-worker-running-tasks-dev"]
    # Target tracking (autoscaling.tf) makes its own alarms, as on AWS: a high and a low per policy.
    tracking = sorted(name.split("/")[2].split("-Alarm")[0] for name in every
                      if name.startswith("TargetTracking-service/ghost-engine-cluster-dev/"))
    assert tracking == ["orchestrator"] * 4 + ["worker"] * 2
    failed = alarms["ghost-engine-job-failed-dev"]
    assert (failed["Namespace"], failed["MetricName"], failed["Statistic"], failed["Period"],
            failed["ComparisonOperator"], failed["Threshold"], failed["TreatMissingData"]) == \
        ("GhostEngine", "JobFailed", "Sum", 60, "GreaterThanThreshold", 0.0, "notBreaching")
    assert sorted(failed["Dimensions"], key=lambda d: d["Name"]) == [
        {"Name": "Environment", "Value": "dev"}, {"Name": "Service", "Value": "orchestrator"}]
    for name in ("orchestrator", "worker"):
        running = alarms[f"ghost-engine-{name}-running-tasks-dev"]
        assert (running["Namespace"], running["MetricName"], running["ComparisonOperator"], running["Threshold"],
                running["TreatMissingData"]) == \
            ("ECS/ContainerInsights", "RunningTaskCount", "LessThanThreshold", 2.0, "breaching")
        assert sorted(running["Dimensions"], key=lambda d: d["Name"]) == [
            {"Name": "ClusterName", "Value": CLUSTER}, {"Name": "ServiceName", "Value": name}]
    five_xx = alarms["ghost-engine-alb-5xx-dev"]
    assert (five_xx["ComparisonOperator"], five_xx["Threshold"]) == ("GreaterThanThreshold", 5.0)
    queries = by_key(five_xx["Metrics"], "Id")
    assert queries["total"]["Expression"] == "FILL(elb, 0) + FILL(target, 0)"
    assert {queries[i]["MetricStat"]["Metric"]["MetricName"] for i in ("elb", "target")} == {
        "HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count"}
    assert all(alarm["AlarmActions"] == [] for alarm in alarms.values())  # alarm_topic_enabled = false


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_ecr_repositories_are_immutable_scanned_and_expire_old_images(stack):
    ecr = stack.client("ecr")
    repos = by_key(ecr.describe_repositories()["repositories"], "repositoryName")
    assert sorted(repos) == ["ghost-engine-orchestrator-dev", "ghost-engine-worker-dev"]
    for name, repo in repos.items():
        assert repo["imageTagMutability"] == "IMMUTABLE"
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo["encryptionConfiguration"]["encryptionType"] == "KMS"
        policy = json.loads(ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"])
        assert [(r["rulePriority"], r["selection"]) for r in policy["rules"]] == [
            (1, {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7}),
            (2, {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 50}),
        ]


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_an_immutable_tag_cannot_be_pointed_at_another_image(stack):
    """Why the pipeline cannot re-push `latest` (see ecr.tf). Uses a tag no deploy uses."""
    ecr = stack.client("ecr")
    repo, tag = "ghost-engine-worker-dev", "immutability-probe"

    def manifest(layer: str) -> str:
        digest = "sha256:" + layer * 64
        return json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": digest},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1,
                        "digest": digest}]})

    first = ecr.put_image(repositoryName=repo, imageManifest=manifest("a"), imageTag=tag)["image"]["imageId"]
    try:
        with pytest.raises(ecr.exceptions.ClientError):
            ecr.put_image(repositoryName=repo, imageManifest=manifest("b"), imageTag=tag)
        images = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])["imageDetails"]
        assert [image["imageDigest"] for image in images] == [first["imageDigest"]]
    finally:
        ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": tag}])


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_security_groups_allow_internet_to_alb_to_orchestrator_to_worker_only(stack):
    ec2 = stack.client("ec2")
    groups = by_key(ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["ghost-engine-*-dev"]}])["SecurityGroups"], "GroupName")
    ids = {name: groups[f"ghost-engine-{name}-dev"]["GroupId"] for name in ("alb", "orchestrator", "worker")}

    def rules(name: str, direction: str) -> list[tuple]:
        found = []
        for permission in groups[f"ghost-engine-{name}-dev"][direction]:
            ports = (permission["IpProtocol"], permission.get("FromPort"), permission.get("ToPort"))
            found += [(*ports, r["CidrIp"]) for r in permission["IpRanges"]]
            found += [(*ports, r["GroupId"]) for r in permission["UserIdGroupPairs"]]
        return sorted(found)

    assert rules("alb", "IpPermissions") == [("tcp", 80, 80, "0.0.0.0/0")]
    assert rules("alb", "IpPermissionsEgress") == [("tcp", 8080, 8080, ids["orchestrator"])]
    assert rules("orchestrator", "IpPermissions") == [("tcp", 8080, 8080, ids["alb"])]
    assert rules("orchestrator", "IpPermissionsEgress") == sorted([("tcp", 443, 443, "0.0.0.0/0"),
                                                                   ("tcp", 8081, 8081, ids["worker"])])
    assert rules("worker", "IpPermissions") == [("tcp", 8081, 8081, ids["orchestrator"])]
    assert rules("worker", "IpPermissionsEgress") == [("tcp", 443, 443, "0.0.0.0/0")]


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_alb_forwards_http_to_the_orchestrator_target_group_checked_on_readyz(stack):
    """The target group asks /readyz (a replica that cannot work gets no traffic); the
    containers' own healthCheck stays on /healthz (liveness)."""
    elbv2 = stack.client("elbv2")
    lb = elbv2.describe_load_balancers(Names=["ghost-engine-alb-dev"])["LoadBalancers"][0]
    assert lb["Type"] == "application"
    planned = planned_resource(stack, "aws_lb.this")  # moto does not report the scheme
    assert (planned["internal"], planned["drop_invalid_header_fields"]) == (False, True)
    group = elbv2.describe_target_groups(Names=["ghost-engine-orch-dev"])["TargetGroups"][0]
    assert (group["Protocol"], group["Port"], group["TargetType"], group["HealthCheckPath"],
            group["Matcher"]) == ("HTTP", 8080, "ip", "/readyz", {"HttpCode": "200"})
    # ECS waits this long after deregistering a task before SIGTERM (then stopTimeout 30 s).
    attributes = {a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(
        TargetGroupArn=group["TargetGroupArn"])["Attributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == "15"
    listeners = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert [(listener["Port"], listener["Protocol"], listener["DefaultActions"][0]["Type"],
             listener["DefaultActions"][0]["TargetGroupArn"]) for listener in listeners] == \
        [(80, "HTTP", "forward", group["TargetGroupArn"])]


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_alb_drops_invalid_header_fields_and_refuses_ambiguous_requests(stack):
    """Request smuggling (issue 9): read back from the load balancer's attributes."""
    elbv2 = stack.client("elbv2")
    arn = elbv2.describe_load_balancers(Names=["ghost-engine-alb-dev"])["LoadBalancers"][0]["LoadBalancerArn"]
    attributes = {a["Key"]: a["Value"] for a in elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]}
    assert (attributes["routing.http.desync_mitigation_mode"],
            attributes["routing.http.drop_invalid_header_fields.enabled"]) == ("strictest", "true")


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_second_plan_shows_no_changes(stack):
    proc = stack.terraform("plan", "-detailed-exitcode", "-no-color", *stack.var_args(),
                           ok_codes=(0, 2))
    assert proc.returncode == 0, proc.stdout[-6000:]


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_plan_ignores_task_definition_revisions_registered_by_the_pipeline(stack):
    """What scripts/deploy.sh does (new revision, service moved to it) is not drift for Terraform.
    The stack is shared: the service is moved back and the added revision deleted afterwards."""
    ecs = stack.client("ecs")
    task, _ = container(ecs, "ghost-engine-worker-dev:1")
    spec = {key: task[key] for key in ("family", "taskRoleArn", "executionRoleArn", "networkMode",
                                       "containerDefinitions", "requiresCompatibilities", "cpu", "memory")}
    image = spec["containerDefinitions"][0]["image"]
    spec["containerDefinitions"][0]["image"] = image.replace(f":{IMAGE_TAG}", ":3f9c2a1b7e4d5c6f8a9b0c1d2e3f4a5b6c7d8e9f")
    before = ecs.describe_services(cluster=CLUSTER, services=["worker"])["services"][0]["taskDefinition"]
    new_arn = ecs.register_task_definition(**spec)["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster=CLUSTER, service="worker", taskDefinition=new_arn)
    try:
        proc = stack.terraform("plan", "-detailed-exitcode", "-no-color", *stack.var_args(),
                               ok_codes=(0, 2))
        assert proc.returncode == 0, proc.stdout[-6000:]
    finally:
        ecs.update_service(cluster=CLUSTER, service="worker", taskDefinition=before)
        ecs.deregister_task_definition(taskDefinition=new_arn)
        ecs.delete_task_definitions(taskDefinitions=[new_arn])


# --- Fargate sizes, per-environment trust (plans) -----------------------------------------------


@requires_terraform
def test_fargate_cpu_memory_pairs_outside_the_table_fail_the_plan_naming_both(unapplied):
    """worker_cpu = 1024 with the default 512 MiB passes moto and fails RegisterTaskDefinition
    on AWS; 8192 CPU takes memory in steps of 4096 from 16384."""
    errors = unapplied.plan_errors({**tf_helpers.STACK_VARS, "worker_cpu": "1024",
                                    "orchestrator_cpu": "8192", "orchestrator_memory": "16000"})
    assert sorted(e["detail"].split(" is not a Fargate size")[0] for e in errors) == [
        "orchestrator_memory 16000", "worker_memory 512"]
    assert all(e["summary"] == "Invalid value for variable" for e in errors)
    assert "for worker_cpu 1024. Fargate accepts: 256 -> 512, 1024, 2048;" in " ".join(e["detail"] for e in errors)


@requires_terraform
@pytest.mark.timeout(300)
def test_the_largest_fargate_sizes_plan_and_reach_the_task_definitions(unapplied):
    plan = unapplied.plan_json({**tf_helpers.STACK_VARS, "orchestrator_cpu": "8192", "orchestrator_memory": "61440",
                                "worker_cpu": "16384", "worker_memory": "122880"})
    sizes = {name: (resource_change(plan, f'aws_ecs_task_definition.this["{name}"]')["after"]["cpu"],
                    resource_change(plan, f'aws_ecs_task_definition.this["{name}"]')["after"]["memory"])
             for name in ("orchestrator", "worker")}
    assert sizes == {"orchestrator": ("8192", "61440"), "worker": ("16384", "122880")}


@requires_terraform
@pytest.mark.timeout(300)
def test_each_environment_gets_its_own_role_trusting_only_its_github_environment(unapplied):
    """The dev stack's trust is read back from the apply (repo:...:environment:dev); prod's is
    planned here. The `ref:` form is gone: a job in a GitHub environment never sends it."""
    for environment, github_environment, expected_sub in (
            ("prod", None, "repo:example-owner/ghost-engine:environment:prod"),
            ("staging", "staging-eu", "repo:example-owner/ghost-engine:environment:staging-eu")):
        variables = {**tf_helpers.STACK_VARS, "environment": environment}
        if github_environment:
            variables["github_environment"] = github_environment
        plan = unapplied.plan_json(variables)
        role = resource_change(plan, "aws_iam_role.github_actions")["after"]
        assert role["name"] == f"ghost-engine-github-actions-{environment}"
        assert json.loads(role["assume_role_policy"])["Statement"][0]["Condition"] == {"StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": expected_sub,
        }}
        assert [c for c in plan["resource_changes"] if c["type"] == "aws_iam_openid_connect_provider"] == []


@requires_terraform
def test_a_certificate_without_a_domain_and_a_domain_without_a_zone_are_refused(unapplied):
    errors = unapplied.plan_errors({**tf_helpers.STACK_VARS, "certificate_arn": "arn:aws:acm:us-east-1:1:certificate/x"})
    assert [e["detail"].split("\n\n")[0] for e in errors] == [
        "certificate_arn needs domain_name (and route53_zone_id): an ACM certificate cannot cover the ALB's "
        "amazonaws.com name, so https://<alb dns> would fail TLS."]
    errors = unapplied.plan_errors({**tf_helpers.STACK_VARS, "domain_name": "api.example.com"})
    assert [e["detail"].split("\n\n")[0] for e in errors] == [
        "domain_name and route53_zone_id go together: set both or neither."]


# --- The HTTPS variant (a second apply: certificate, domain, Route 53 alias) ---------------------


@pytest.fixture(scope="session")
def https_stack(tmp_path_factory, request) -> tf_helpers.TerraformStack:
    return tf_helpers.shared_https_stack(tmp_path_factory, request)


def state_resource(stack: tf_helpers.TerraformStack, address: str) -> dict:
    state = json.loads(stack.terraform("show", "-json").stdout)
    for resource in state["values"]["root_module"]["resources"]:
        if resource["address"] == address:
            return resource
    raise AssertionError(f"{address} is not in the state")


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_every_listener_that_can_forward_is_a_dependency_of_the_services(stack):
    """Without a certificate the https listener has no instance, but the dependency is in the
    configuration (so turning HTTPS on cannot race CreateService)."""
    resources = stack.plan_json["configuration"]["root_module"]["resources"]
    [service] = [r for r in resources if r["address"] == "aws_ecs_service.this"]
    assert {"aws_lb_listener.http", "aws_lb_listener.https"} <= set(service["depends_on"])


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_https_stack_redirects_80_forwards_443_with_the_certificate_and_outputs_the_domain(https_stack):
    elbv2 = https_stack.client("elbv2")
    certificate = https_stack.variables["certificate_arn"]
    lb = elbv2.describe_load_balancers(Names=["ghost-engine-alb-dev"])["LoadBalancers"][0]
    group = elbv2.describe_target_groups(Names=["ghost-engine-orch-dev"])["TargetGroups"][0]
    listeners = sorted(elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"],
                       key=lambda listener: listener["Port"])
    assert [(x["Port"], x["Protocol"]) for x in listeners] == [(80, "HTTP"), (443, "HTTPS")]
    http, https = listeners
    assert http["DefaultActions"] == [{"Type": "redirect", "Order": 1, "RedirectConfig": {
        "Protocol": "HTTPS", "Port": "443", "Host": "#{host}", "Path": "/#{path}", "Query": "#{query}",
        "StatusCode": "HTTP_301"}}]
    assert [c["CertificateArn"] for c in https["Certificates"]] == [certificate]
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert [(a["Type"], a["TargetGroupArn"]) for a in https["DefaultActions"]] == [("forward", group["TargetGroupArn"])]
    # Rule order: each listener has only its default rule, so nothing is matched before it.
    rules = {x["Port"]: [(r["Priority"], r["IsDefault"], r["Actions"][0]["Type"])
                         for r in elbv2.describe_rules(ListenerArn=x["ListenerArn"])["Rules"]] for x in listeners}
    assert rules == {80: [("default", True, "redirect")], 443: [("default", True, "forward")]}
    assert https_stack.outputs["alb_url"] == "https://api.example.com"


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_https_stack_service_waits_for_the_https_listener_and_the_domain_aliases_the_alb(https_stack):
    depends_on = state_resource(https_stack, 'aws_ecs_service.this["orchestrator"]')["depends_on"]
    assert {"aws_lb_listener.http", "aws_lb_listener.https"} <= set(depends_on)
    route53 = https_stack.client("route53")
    records = route53.list_resource_record_sets(HostedZoneId=https_stack.variables["route53_zone_id"])
    [alias] = [r for r in records["ResourceRecordSets"] if r["Type"] == "A"]
    lb = https_stack.client("elbv2").describe_load_balancers(Names=["ghost-engine-alb-dev"])["LoadBalancers"][0]
    assert alias["Name"].rstrip(".") == "api.example.com"
    assert alias["AliasTarget"]["DNSName"].rstrip(".").lower() == lb["DNSName"].lower()
    assert alias["AliasTarget"]["EvaluateTargetHealth"] is True


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_a_terraform_side_change_is_live_after_the_next_deploy(https_stack):
    """One owner per field: Terraform changes LOG_LEVEL (a new revision no service runs yet, since
    the services ignore task_definition); the next scripts/deploy.sh starts from the family's
    latest ACTIVE revision, so the change runs with the new image. Only this test changes the
    HTTPS stack after its apply."""
    ecs, ecr = https_stack.client("ecs"), https_stack.client("ecr")
    variables = {**https_stack.variables, "log_level": "DEBUG"}
    https_stack.terraform("apply", "-auto-approve", "-no-color", *tf_helpers.var_args(variables))
    https_stack.variables.update(variables)
    tag = "3f9c2a1b7e4d5c6f8a9b0c1d2e3f4a5b6c7d8e9f"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                                      "digest": "sha256:" + "c" * 64}, "layers": []})
    for name in ("orchestrator", "worker"):
        assert container(ecs, service_task_definition(ecs, name))[1]["image"].endswith(f":{IMAGE_TAG}")
        ecr.put_image(repositoryName=f"ghost-engine-{name}-dev", imageManifest=manifest, imageTag=tag)
    result = subprocess.run([str(ROOT / "scripts" / "deploy.sh"), tag], env={**os.environ, **https_stack.aws_env()},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for name in ("orchestrator", "worker"):
        _, main = container(ecs, service_task_definition(ecs, name))
        assert {e["name"]: e["value"] for e in main["environment"]}["LOG_LEVEL"] == "DEBUG", name
        assert main["image"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ghost-engine-{name}-dev:{tag}"


def service_task_definition(ecs, service: str) -> str:
    return ecs.describe_services(cluster=CLUSTER, services=[service])["services"][0]["taskDefinition"]


# --- The account stack (infra/aws/account) --------------------------------------------------------


@requires_terraform
@pytest.mark.timeout(300)
def test_account_stack_creates_the_oidc_provider_and_ecs_role_and_refuses_to_destroy_them(tmp_path):
    fresh = MotoServer()
    try:
        module = tmp_path / "account"
        shutil.copytree(ROOT / "infra" / "aws" / "account", module)
        env = tf_helpers.terraform_env(tmp_path, fresh.env())
        tf_helpers.run(["init", "-backend=false", "-no-color"], module, env)
        tf_helpers.run(["apply", "-auto-approve", "-no-color"], module, env)
        outputs = json.loads(tf_helpers.run(["output", "-json"], module, env).stdout)
        assert outputs["github_oidc_provider_arn"]["value"] == GITHUB_OIDC_PROVIDER_ARN
        iam = tf_helpers.boto_client(fresh, "iam")
        assert iam.get_open_id_connect_provider(OpenIDConnectProviderArn=GITHUB_OIDC_PROVIDER_ARN)[
            "ClientIDList"] == ["sts.amazonaws.com"]
        # AWS names it AWSServiceRoleForECS; moto spells the name its own way, so the path is checked.
        [role] = iam.list_roles(PathPrefix="/aws-service-role/ecs.amazonaws.com/")["Roles"]
        assert role["Arn"] == outputs["ecs_service_linked_role_arn"]["value"]
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": ["ecs.amazonaws.com"]}
        destroy = tf_helpers.run(["destroy", "-auto-approve", "-no-color"], module, env, ok_codes=(1,))
        assert "Instance cannot be destroyed" in destroy.stderr and "prevent_destroy" in destroy.stderr
        assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == [{"Arn": GITHUB_OIDC_PROVIDER_ARN}]
    finally:
        fresh.stop()
# --- Environments, state, scaling, teardown ---------------------------------------------------

PROD_TABLE = "ghost-engine-jobs-prod"


@pytest.fixture(scope="session")
def prod_stack(stack, tmp_path_factory, request) -> tf_helpers.TerraformStack:
    """prod (environments/prod.tfvars: deletion protection on, no ECR force delete) applied beside
    dev on dev's moto server: its own state object in the same bucket. An account has one GitHub
    OIDC provider, so prod reuses dev's (github_oidc_provider_arn)."""
    prod = tf_helpers.apply_stack(tmp_path_factory.mktemp("terraform-prod"), {
        "deletion_protection_enabled": None, "github_oidc_provider_arn": GITHUB_OIDC_PROVIDER_ARN},
        environment="prod", moto=stack.moto)
    request.addfinalizer(prod.close)
    return prod


def state_resources(stack: tf_helpers.TerraformStack, environment: str) -> set[str]:
    """Addresses of the managed resources in ``environment``'s state object in the S3 bucket."""
    body = stack.client("s3").get_object(Bucket=tf_helpers.STATE_BUCKET, Key=f"ghost-engine/{environment}.tfstate")
    state = json.loads(body["Body"].read())
    return {f"{r['type']}.{r['name']}" for r in state["resources"] if r["mode"] == "managed"}


def scaling(stack: tf_helpers.TerraformStack, environment: str) -> tuple[dict, dict]:
    """{service: (min, max)} of the ECS scalable targets and {policy name: configuration} of
    ``environment``'s cluster, as Application Auto Scaling reports them."""
    client = stack.client("application-autoscaling")
    prefix = f"service/ghost-engine-cluster-{environment}/"
    targets = {t["ResourceId"].removeprefix(prefix): (t["MinCapacity"], t["MaxCapacity"])
               for t in client.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
               if t["ResourceId"].startswith(prefix)}
    policies = {p["PolicyName"]: p["TargetTrackingScalingPolicyConfiguration"]
                for p in client.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
                if p["ResourceId"].startswith(prefix)}
    return targets, policies


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_state_is_an_s3_object_per_environment_behind_a_lock_file(stack):
    """A held lock (another apply running) stops a second one instead of letting both write."""
    assert "aws_dynamodb_table.this" in state_resources(stack, "dev")
    s3 = stack.client("s3")
    lock = {"ID": "0f1e2d3c", "Operation": "OperationTypeApply", "Who": "someone@elsewhere", "Version": "1.11.4",
            "Created": "2026-12-01T00:00:00Z", "Path": f"{tf_helpers.STATE_BUCKET}/ghost-engine/dev.tfstate"}
    s3.put_object(Bucket=tf_helpers.STATE_BUCKET, Key="ghost-engine/dev.tfstate.tflock", Body=json.dumps(lock))
    try:
        proc = stack.terraform("plan", "-lock-timeout=0s", "-no-color", *stack.var_args(), ok_codes=(1,))
    finally:
        s3.delete_object(Bucket=tf_helpers.STATE_BUCKET, Key="ghost-engine/dev.tfstate.tflock")
    assert "Error acquiring the state lock" in proc.stderr
    assert "someone@elsewhere" in proc.stderr


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_the_state_bucket_is_versioned_encrypted_and_private(stack):
    s3 = stack.client("s3")
    assert s3.get_bucket_versioning(Bucket=tf_helpers.STATE_BUCKET)["Status"] == "Enabled"
    [rule] = s3.get_bucket_encryption(Bucket=tf_helpers.STATE_BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert s3.get_public_access_block(Bucket=tf_helpers.STATE_BUCKET)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}


@pytest.mark.timeout(STACK_TIMEOUT_S)
def test_dev_services_scale_on_alb_requests_dispatch_slots_and_running_jobs_per_worker(stack):
    targets, policies = scaling(stack, "dev")
    assert targets == {"orchestrator": (1, 2), "worker": (2, 4)}  # environments/dev.tfvars: at least two workers
    assert sorted(policies) == ["ghost-engine-orchestrator-dispatch-dev", "ghost-engine-orchestrator-requests-dev",
                                "ghost-engine-worker-jobs-dev"]
    requests = policies["ghost-engine-orchestrator-requests-dev"]
    assert requests["TargetValue"] == 6000
    predefined = requests["PredefinedMetricSpecification"]
    assert predefined["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    alb_arn = stack.client("elbv2").describe_load_balancers(Names=["ghost-engine-alb-dev"])["LoadBalancers"][0]
    assert predefined["ResourceLabel"].startswith(alb_arn["LoadBalancerArn"].split(":loadbalancer/")[1] + "/targetgroup/")
    dispatch = policies["ghost-engine-orchestrator-dispatch-dev"]
    assert (dispatch["TargetValue"], dispatch["CustomizedMetricSpecification"]["MetricName"],
            dispatch["CustomizedMetricSpecification"]["Namespace"]) == (70, "DispatchSlotsBusyPercent", "GhostEngine")
    assert sorted((d["Name"], d["Value"]) for d in dispatch["CustomizedMetricSpecification"]["Dimensions"]) == [
        ("Environment", "dev"), ("Service", "orchestrator")]
    jobs = policies["ghost-engine-worker-jobs-dev"]
    assert jobs["TargetValue"] == 12
    metrics = {m["Id"]: m for m in jobs["CustomizedMetricSpecification"]["Metrics"]}
    assert metrics["per_worker"]["Expression"] == "running * orchestrators / MAX([workers, 1])"
    assert metrics["running"]["MetricStat"]["Metric"]["MetricName"] == "JobsRunning"
    assert sorted(metrics["workers"]["MetricStat"]["Metric"]["Dimensions"], key=lambda d: d["Name"]) == [
        {"Name": "ClusterName", "Value": CLUSTER}, {"Name": "ServiceName", "Value": "worker"}]


@pytest.mark.timeout(2 * STACK_TIMEOUT_S)
def test_prod_applies_beside_dev_with_its_own_state_names_and_scaling(stack, prod_stack):
    assert prod_stack.outputs["cluster_name"] == "ghost-engine-cluster-prod"
    assert prod_stack.outputs["jobs_table_name"] == PROD_TABLE
    dynamodb = stack.client("dynamodb")
    assert {TABLE, PROD_TABLE} <= set(dynamodb.list_tables()["TableNames"])
    assert dynamodb.describe_table(TableName=PROD_TABLE)["Table"]["DeletionProtectionEnabled"] is True
    dev_state, prod_state = state_resources(stack, "dev"), state_resources(stack, "prod")
    # The GitHub OIDC provider is one per account, in neither environment's state (infra/aws/account).
    assert not {r for r in dev_state | prod_state if r.startswith("aws_iam_openid_connect_provider.")}
    assert len(prod_state) >= 50
    assert scaling(stack, "prod")[0] == {"orchestrator": (2, 10), "worker": (2, 20)}
    assert scaling(stack, "dev")[0] == {"orchestrator": (1, 2), "worker": (2, 4)}


@pytest.mark.timeout(2 * STACK_TIMEOUT_S)
def test_prod_tears_down_in_the_documented_order_and_dev_is_untouched(stack, prod_stack):
    """Deletion protection and a repository with an image stop a plain destroy; the README's
    teardown lifts both with one apply, then destroys. Runs last of the prod tests."""
    dynamodb, ecr = stack.client("dynamodb"), stack.client("ecr")
    ecr.put_image(repositoryName="ghost-engine-worker-prod", imageTag=IMAGE_TAG, imageManifest=json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest":
                    "sha256:" + "a" * 64}, "layers": []}))
    with pytest.raises(ClientError, match="DeletionProtectionEnabled"):
        dynamodb.delete_table(TableName=PROD_TABLE)
    lift = ["-var=deletion_protection_enabled=false", "-var=ecr_force_delete_enabled=true"]
    readme = (tf_helpers.MODULE_DIR / "README.md").read_text()
    for step in ("apply", "destroy"):
        assert (f"terraform {step} -var-file=environments/prod.tfvars -var=deletion_protection_enabled=false "
                "-var=ecr_force_delete_enabled=true") in readme
        prod_stack.terraform(step, "-auto-approve", "-no-color", *prod_stack.var_args(), *lift)
    assert state_resources(stack, "prod") == set()
    assert PROD_TABLE not in dynamodb.list_tables()["TableNames"]
    assert "ghost-engine-worker-prod" not in {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}
    assert "aws_dynamodb_table.this" in state_resources(stack, "dev")
    assert dynamodb.describe_table(TableName=TABLE)["Table"]["TableStatus"] == "ACTIVE"


# --- checkov ----------------------------------------------------------------------------------

CHECKOV_VERSION = "3.3.30"
CHECKOV_INSTALL_TIMEOUT_S = 900
# Every check the module skips, each with a one-line reason next to the resource. Adding a skip
# means adding it here too: a skipped check is a decision, not a pass.
EXPECTED_SKIPS = {
    ("CKV2_AWS_11", "aws_vpc.this"),
    ("CKV_AWS_119", "aws_dynamodb_table.this"),
    ("CKV_AWS_158", "aws_cloudwatch_log_group.this"),
    ("CKV_AWS_338", "aws_cloudwatch_log_group.this"),
    ("CKV_AWS_91", "aws_lb.this"),
    ("CKV2_AWS_28", "aws_lb.this"),
    ("CKV_AWS_378", "aws_lb_target_group.orchestrator"),
    ("CKV_AWS_2", "aws_lb_listener.http"),
    ("CKV_AWS_103", "aws_lb_listener.http"),
    ("CKV_AWS_260", "aws_security_group_rule.alb_http"),
    ("CKV_AWS_358", "aws_iam_policy_document.github_assume"),
    ("CKV_AWS_356", "aws_iam_policy_document.github_deploy"),
    ("CKV_AWS_111", "aws_iam_policy_document.github_deploy"),
    ("CKV_AWS_26", "aws_sns_topic.alarms"),
    ("CKV_AWS_149", "aws_secretsmanager_secret.worker_token"),
    ("CKV2_AWS_57", "aws_secretsmanager_secret.worker_token"),
    ("CKV_AWS_149", "aws_secretsmanager_secret.api_token"),
    ("CKV2_AWS_57", "aws_secretsmanager_secret.api_token"),
}


def checkov_executable() -> pathlib.Path:
    """$CHECKOV_BIN, else checkov in a cached venv of its own (installed from PyPI on first use:
    checkov's pins conflict with the project's dependencies)."""
    if os.environ.get("CHECKOV_BIN"):
        return pathlib.Path(os.environ["CHECKOV_BIN"])
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    home = cache / "ghost-engine" / f"checkov-{CHECKOV_VERSION}"
    executable = home / "bin" / "checkov"
    marker = home / ".installed"
    if not marker.exists():
        venv.EnvBuilder(clear=True, with_pip=True).create(home)
        pip = subprocess.run([str(home / "bin" / "python"), "-m", "pip", "install", "--quiet",
                              f"checkov=={CHECKOV_VERSION}"],
                             capture_output=True, text=True, timeout=CHECKOV_INSTALL_TIMEOUT_S)
        assert pip.returncode == 0, f"installing checkov failed:\n{pip.stderr[-3000:]}"
        marker.write_text(CHECKOV_VERSION + "\n")
    return executable


@pytest.mark.timeout(CHECKOV_INSTALL_TIMEOUT_S + 300)
def test_checkov_finds_nothing_and_every_skip_is_the_expected_one_with_a_reason():
    started = time.monotonic()
    executable = checkov_executable()
    proc = subprocess.run(
        [str(executable), "-d", "infra", "--framework", "terraform", "--skip-download", "--output", "json"],
        cwd=ROOT, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"}, capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    results = report["results"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in results["failed_checks"]]
    assert failed == [], proc.stdout[-3000:]
    skipped = {(c["check_id"], c["resource"].split("[")[0]) for c in results["skipped_checks"]}
    assert skipped == EXPECTED_SKIPS
    assert all(c["check_result"]["suppress_comment"].strip() for c in results["skipped_checks"])
    assert report["summary"]["passed"] > 100
    assert proc.returncode == 0
    print(f"checkov {CHECKOV_VERSION}: {report['summary']} in {time.monotonic() - started:.1f}s")
