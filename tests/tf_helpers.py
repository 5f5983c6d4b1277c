"""Run the Terraform module in infra/aws/terraform from tests, offline, without touching the repo.

Every run works on a copy of the module in a temp directory, with its own CLI config (the
provider comes from the machine's filesystem mirror when there is one), ``TF_DATA_DIR`` and
local state, so no ``.terraform/``, lock file or state ever lands in the repository.

``shared_stack()`` applies the whole module once per pytest session against its own moto
server, as the dev environment (environments/dev.tfvars) with its state in S3 (the moto
server's bucket made by scripts/bootstrap-state.sh, locked with a lock file), and hands every
caller the same :class:`TerraformStack`: outputs, endpoint and environment for boto3 / the AWS
CLI. ``apply_stack(..., environment="prod", moto=...)`` applies another environment beside it. Use it from a session fixture::

    @pytest.fixture(scope="session")
    def terraform_stack(tmp_path_factory, request):
        return tf_helpers.shared_stack(tmp_path_factory, request)

``unapplied_module()`` is an initialised copy with no state, for plans with other variables
(a few seconds each). ``shared_https_stack()`` is the one other apply: the same module with a
certificate and a domain (HTTPS listener, Route 53 alias), on a moto server of its own.

Before any plan, the moto server gets what ``infra/aws/account`` creates once per real account
(the GitHub OIDC provider, which the module looks up and never owns).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from conftest import AWS_TEST_ENV, ROOT, MotoServer

MODULE_DIR = ROOT / "infra" / "aws" / "terraform"
TERRAFORM = shutil.which("terraform")
SKIP_REASON = (
    "terraform is not on PATH: install Terraform >= 1.11 (https://developer.hashicorp.com/terraform/install, "
    "or hashicorp/setup-terraform in GitHub Actions)"
)
requires_terraform = pytest.mark.skipif(TERRAFORM is None, reason=SKIP_REASON)

# Where the machine image keeps the AWS provider (filesystem-mirror layout); override with
# TF_PROVIDER_MIRROR. Without a mirror, terraform downloads the provider from the registry.
DEFAULT_PROVIDER_MIRROR = pathlib.Path("/opt/tf-plugins")

# The tag of the first task-definition revision: a commit SHA, like every tag the pipeline pushes.
STACK_IMAGE_TAG = "5af881e0c3b2a1d4e5f60718293a4b5c6d7e8f90"
# Variables of the test stack: the two required ones, deletion protection off, and the optional
# API token on (so the one apply covers both secrets); everything else is the module's defaults
# (the dev names).
STACK_VARS = {
    "api_token_enabled": "true",
    "orchestrator_desired_count": "2",  # the worker's default is 2: both at MOTO_RUNNING_TASKS
    "deletion_protection_enabled": "false",
    "github_repository": "example-owner/ghost-engine",
    "image_tag": STACK_IMAGE_TAG,
}
# moto reports this many running tasks per ECS service; equal to the desired counts, so
# services are stable at once.
MOTO_RUNNING_TASKS = "2"
# The HTTPS variant's public name, in a hosted zone the test creates in moto first.
HTTPS_DOMAIN = "api.example.com"
HTTPS_ZONE = "example.com"
GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"

# moto server with the Application Auto Scaling tag calls it lacks (autoscaling.tf's targets are tagged).
MOTO_PROGRAM = (str(ROOT / "tests" / "motoserver.py"),)

APPLY_TIMEOUT_S = 600
COMMAND_TIMEOUT_S = 300


def provider_mirror() -> pathlib.Path | None:
    """The provider mirror directory, or None to use the public registry."""
    path = pathlib.Path(os.environ.get("TF_PROVIDER_MIRROR") or DEFAULT_PROVIDER_MIRROR)
    return path if (path / "registry.terraform.io" / "hashicorp" / "aws").is_dir() else None


def write_cli_config(path: pathlib.Path) -> pathlib.Path:
    """A Terraform CLI config that installs hashicorp/aws from the mirror, if there is one."""
    mirror = provider_mirror()
    if mirror is None:
        path.write_text("# no provider mirror on this machine: use the registry\n")
    else:
        path.write_text(
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
            '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
            '  direct {\n    exclude = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
            "}\n"
        )
    return path


def terraform_env(workdir: pathlib.Path, aws_env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for terraform: CLI config and data dir in ``workdir``, test AWS credentials."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "TF_"))}
    env.update(AWS_TEST_ENV)
    env.update(aws_env or {})
    env.update({
        "TF_CLI_CONFIG_FILE": str(write_cli_config(workdir / "terraform.rc")),
        "TF_DATA_DIR": str(workdir / "tf-data"),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    })
    return env


def copy_module(workdir: pathlib.Path, local_state: bool = True) -> pathlib.Path:
    """Copy the module's .tf files and environments/ to ``workdir/module`` and return that
    directory. ``local_state``: a backend_override.tf keeps the state in a local file there
    instead of the S3 backend (backend.tf), as the module's README says for a throwaway state."""
    target = workdir / "module"
    target.mkdir(parents=True)
    for source in MODULE_DIR.glob("*.tf"):
        shutil.copy2(source, target / source.name)
    shutil.copytree(MODULE_DIR / "environments", target / "environments")
    if local_state:
        (target / "backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')
    return target


# The S3 backend's settings for a moto server, beside the environment's file and the bucket.
MOTO_BACKEND = """endpoints = {{ s3 = "{endpoint}" }}
use_path_style              = true
skip_credentials_validation = true
skip_requesting_account_id  = true
skip_metadata_api_check     = true
skip_region_validation      = true
"""
STATE_BUCKET = "ghost-engine-tfstate-123456789012-us-east-1"  # bootstrap-state.sh's default on moto


def bootstrap_state(moto: MotoServer) -> subprocess.CompletedProcess[str]:
    """Run scripts/bootstrap-state.sh against ``moto`` (creates STATE_BUCKET)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    return subprocess.run([str(ROOT / "scripts" / "bootstrap-state.sh")], env={**env, **moto.env()},
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def s3_backend_args(workdir: pathlib.Path, moto: MotoServer, environment: str) -> list[str]:
    """``terraform init`` arguments for the S3 backend of ``environment`` on ``moto``: the
    line bootstrap-state.sh prints, plus the moto server's endpoint settings."""
    settings = workdir / "moto.s3.tfbackend"
    settings.write_text(MOTO_BACKEND.format(endpoint=moto.endpoint))
    return [f"-backend-config=environments/{environment}.s3.tfbackend", f"-backend-config=bucket={STATE_BUCKET}",
            "-backend-config=region=us-east-1", f"-backend-config={settings}"]


def run(args: list[str], cwd: pathlib.Path, env: dict[str, str], timeout: float = COMMAND_TIMEOUT_S,
        ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """Run ``terraform <args>`` in ``cwd``; fail with its output on an unexpected exit code."""
    proc = subprocess.run([TERRAFORM or "terraform", *args], cwd=cwd, env=env, timeout=timeout,
                          capture_output=True, text=True)
    if proc.returncode not in ok_codes:
        raise AssertionError(
            f"terraform {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def var_args(variables: dict[str, str | None]) -> list[str]:
    """``-var`` arguments; a None value sets nothing (the tfvars file or the default decides)."""
    return [f"-var={name}={value}" for name, value in variables.items() if value is not None]


def error_diagnostics(json_lines: str) -> list[dict[str, Any]]:
    """The error diagnostics in the output of ``terraform <command> -json``."""
    messages = [json.loads(line) for line in json_lines.splitlines() if line.startswith("{")]
    return [m["diagnostic"] for m in messages
            if m.get("type") == "diagnostic" and m["diagnostic"]["severity"] == "error"]


@dataclasses.dataclass
class UnappliedModule:
    """An initialised working copy of the module with no state, against a moto server: for plans
    with other variables than the shared stack's, and for ``terraform import``."""

    module_dir: pathlib.Path
    tf_env: dict[str, str]

    def terraform(self, *args: str, ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        return run(list(args), self.module_dir, self.tf_env, ok_codes=ok_codes)

    def plan_errors(self, variables: dict[str, str]) -> list[dict[str, Any]]:
        """Run a plan that must fail; its error diagnostics."""
        proc = self.terraform("plan", "-json", "-no-color", *var_args(variables), ok_codes=(1,))
        return error_diagnostics(proc.stdout)

    def plan_json(self, variables: dict[str, str]) -> dict[str, Any]:
        """Plan with ``variables``; the plan as ``terraform show -json`` gives it."""
        self.terraform("plan", "-no-color", "-out=tfplan", *var_args(variables))
        return json.loads(self.terraform("show", "-json", "tfplan").stdout)


def boto_client(moto: MotoServer, service: str):
    import boto3  # only the AWS tests need it

    return boto3.client(service, endpoint_url=moto.endpoint, region_name=AWS_TEST_ENV["AWS_REGION"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def prepare_account(moto: MotoServer) -> str:
    """What ``infra/aws/account`` creates once per account: the GitHub OIDC provider (its ARN)."""
    iam = boto_client(moto, "iam")
    for provider in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        if provider["Arn"].endswith("/token.actions.githubusercontent.com"):
            return provider["Arn"]
    return iam.create_open_id_connect_provider(Url=GITHUB_OIDC_URL, ClientIDList=["sts.amazonaws.com"])[
        "OpenIDConnectProviderArn"]


def prepare_https(moto: MotoServer) -> dict[str, str]:
    """An ACM certificate for HTTPS_DOMAIN and its hosted zone in moto; the variables naming them."""
    certificate = boto_client(moto, "acm").request_certificate(
        DomainName=HTTPS_DOMAIN, ValidationMethod="DNS")["CertificateArn"]
    zone = boto_client(moto, "route53").create_hosted_zone(
        Name=HTTPS_ZONE, CallerReference="ghost-engine-tests")["HostedZone"]["Id"].split("/")[-1]
    return {"certificate_arn": certificate, "domain_name": HTTPS_DOMAIN, "route53_zone_id": zone}


def unapplied_module(workdir: pathlib.Path, moto: MotoServer) -> UnappliedModule:
    """Copy the module to ``workdir`` and ``terraform init`` it, to plan against ``moto``."""
    prepare_account(moto)
    module_dir = copy_module(workdir)  # local state (backend_override.tf)
    env = terraform_env(workdir, moto.env())
    run(["init", "-no-color"], module_dir, env)
    return UnappliedModule(module_dir, env)


@dataclasses.dataclass
class TerraformStack:
    """The applied module: its moto server, working copy, outputs and how long each step took."""

    moto: MotoServer
    module_dir: pathlib.Path
    tf_env: dict[str, str]
    variables: dict[str, str | None]
    outputs: dict[str, Any]
    plan_json: dict[str, Any]
    timings: dict[str, float]
    environment: str = "dev"
    owns_moto: bool = True

    @property
    def endpoint(self) -> str:
        return self.moto.endpoint

    def aws_env(self) -> dict[str, str]:
        """Environment for boto3 / the AWS CLI / scripts that should talk to this stack."""
        return self.moto.env()

    def client(self, service: str):
        return boto_client(self.moto, service)

    def terraform(self, *args: str, ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        """Run terraform in the stack's working copy (same state, same moto server)."""
        return run(list(args), self.module_dir, self.tf_env, timeout=APPLY_TIMEOUT_S, ok_codes=ok_codes)

    def var_args(self, **overrides: str) -> list[str]:
        """The arguments a plan/apply/destroy of this stack needs: its tfvars and variables."""
        return [f"-var-file=environments/{self.environment}.tfvars", *var_args({**self.variables, **overrides})]

    def close(self) -> None:
        if self.owns_moto:
            self.moto.stop()


def apply_stack(workdir: pathlib.Path, variables: dict[str, str | None] | None = None, environment: str = "dev",
                moto: MotoServer | None = None,
                prepare: Callable[[MotoServer], dict[str, str]] | None = None) -> TerraformStack:
    """``terraform apply`` the whole module as ``environment`` (its tfvars, its state object in
    the S3 state bucket) against ``moto``, or a new moto server whose state bucket this makes
    with scripts/bootstrap-state.sh. The stack owns (and stops) only a server it started.
    ``prepare`` creates what the apply needs first and returns more variables."""
    own_moto = moto is None
    moto = moto or MotoServer(extra_env={"MOTO_ECS_SERVICE_RUNNING": MOTO_RUNNING_TASKS}, program=MOTO_PROGRAM)
    try:
        if own_moto:
            bootstrap = bootstrap_state(moto)
            assert bootstrap.returncode == 0, bootstrap.stderr
        prepare_account(moto)
        variables = {**STACK_VARS, **(variables or {}), **(prepare(moto) if prepare else {})}
        module_dir = copy_module(workdir, local_state=False)
        env = terraform_env(workdir, moto.env())
        timings: dict[str, float] = {}

        def timed(step: str, *args: str) -> subprocess.CompletedProcess[str]:
            started = time.monotonic()
            proc = run(list(args), module_dir, env, timeout=APPLY_TIMEOUT_S)
            timings[step] = round(time.monotonic() - started, 1)
            return proc

        timed("init", "init", "-no-color", *s3_backend_args(workdir, moto, environment))
        timed("plan", "plan", "-no-color", "-out=tfplan", f"-var-file=environments/{environment}.tfvars",
              *var_args(variables))
        timed("apply", "apply", "-no-color", "tfplan")
        plan_json = json.loads(run(["show", "-json", "tfplan"], module_dir, env).stdout)
        outputs = {name: out["value"] for name, out in
                   json.loads(run(["output", "-json"], module_dir, env).stdout).items()}
    except BaseException:
        if own_moto:
            moto.stop()
        raise
    return TerraformStack(moto, module_dir, env, variables, outputs, plan_json, timings, environment, own_moto)


_SHARED: dict[str, TerraformStack] = {}


def _shared(key: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
            prepare: Callable[[MotoServer], dict[str, str]] | None = None) -> TerraformStack:
    if TERRAFORM is None:
        pytest.skip(SKIP_REASON)
    if key not in _SHARED:
        stack = apply_stack(tmp_path_factory.mktemp(f"terraform-{key}"), prepare=prepare)
        _SHARED[key] = stack

        def _close() -> None:
            stack.close()
            _SHARED.pop(key, None)

        request.addfinalizer(_close)
    return _SHARED[key]


def shared_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> TerraformStack:
    """The session's one applied stack, created on first use and stopped at session end.

    Call it from a session-scoped fixture; any number of test modules may do so.
    """
    return _shared("stack", tmp_path_factory, request)


def shared_https_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> TerraformStack:
    """The session's applied stack with certificate_arn, domain_name and route53_zone_id set."""
    return _shared("https", tmp_path_factory, request, prepare=prepare_https)
