"""scripts/bootstrap-state.sh (and its PowerShell port) against a real moto server: the
Terraform state bucket, created once with versioning, encryption and no public access, and the
`terraform init` line of each environment."""

from __future__ import annotations

import os

import pytest

import scriptrun
from conftest import MotoServer

DEFAULT_BUCKET = "ghost-engine-tfstate-123456789012-us-east-1"  # moto's account id


def init_lines(bucket: str, region: str = "us-east-1") -> str:
    return "".join(f"terraform init -reconfigure -backend-config=environments/{env}.s3.tfbackend "
                   f"-backend-config=bucket={bucket} -backend-config=region={region}\n"
                   for env in ("dev", "staging", "prod"))


@pytest.fixture
def moto():
    server = MotoServer()
    yield server
    server.stop()


def bootstrap(script, moto: MotoServer, *args: str, **env: str):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return scriptrun.run(script, *args, env={**clean, **moto.env(), **env}, timeout=120)


@pytest.mark.parametrize("script", scriptrun.variants("bootstrap-state"))
def test_creates_the_private_versioned_encrypted_bucket_once_and_prints_each_init_line(script, moto):
    import boto3

    first = bootstrap(script, moto)
    assert (first.returncode, first.stdout) == (0, init_lines(DEFAULT_BUCKET)), first.stderr
    assert first.stderr.splitlines() == [
        f"{script.name}: creating bucket {DEFAULT_BUCKET} in us-east-1 (AWS_REGION), endpoint {moto.endpoint}",
        f"{script.name}: bucket {DEFAULT_BUCKET}: versioning on, encrypted (SSE-S3), public access blocked",
        f"{script.name}: each environment's state, from infra/aws/terraform:"]
    s3 = boto3.client("s3", endpoint_url=moto.endpoint)
    assert s3.get_bucket_versioning(Bucket=DEFAULT_BUCKET)["Status"] == "Enabled"
    [rule] = s3.get_bucket_encryption(Bucket=DEFAULT_BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert all(s3.get_public_access_block(Bucket=DEFAULT_BUCKET)["PublicAccessBlockConfiguration"].values())
    s3.put_object(Bucket=DEFAULT_BUCKET, Key="ghost-engine/dev.tfstate", Body=b"{}")

    again = bootstrap(script, moto)
    assert (again.returncode, again.stdout) == (0, init_lines(DEFAULT_BUCKET)), again.stderr
    assert again.stderr.splitlines()[0] == f"{script.name}: bucket {DEFAULT_BUCKET} exists; checking its settings"
    assert s3.get_object(Bucket=DEFAULT_BUCKET, Key="ghost-engine/dev.tfstate")["Body"].read() == b"{}"


@pytest.mark.parametrize("script", scriptrun.variants("bootstrap-state"))
def test_a_bucket_named_by_tf_state_bucket_in_another_region_gets_its_location_constraint(script, moto):
    import boto3

    result = bootstrap(script, moto, AWS_REGION="eu-west-1", TF_STATE_BUCKET="acme-tfstate")
    assert (result.returncode, result.stdout) == (0, init_lines("acme-tfstate", "eu-west-1")), result.stderr
    s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="eu-west-1")
    assert s3.get_bucket_location(Bucket="acme-tfstate")["LocationConstraint"] == "eu-west-1"


@pytest.mark.parametrize("script", scriptrun.variants("bootstrap-state"))
@pytest.mark.parametrize(("args", "message"), [
    (["a", "b"], "expected at most one argument, the bucket name"),
    (["--bucket"], "unknown option --bucket"),
    (["Not_A_Bucket"], "bucket Not_A_Bucket: 3-63 lowercase letters, digits, dots and hyphens"),
])
def test_bad_usage_exits_2_with_the_reason_and_the_usage(script, moto, args, message):
    result = bootstrap(script, moto, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{script.name}: {message}\nUsage: {script.name} [BUCKET]\n")
    assert result.stdout == ""


@pytest.mark.parametrize("script", scriptrun.variants("bootstrap-state"))
def test_help_prints_the_usage_and_exits_0(script, moto):
    result = bootstrap(script, moto, "--help")
    assert (result.returncode, result.stdout.splitlines()[0]) == (0, f"Usage: {script.name} [BUCKET]")


@pytest.mark.parametrize("script", scriptrun.variants("bootstrap-state"))
def test_an_unreachable_endpoint_fails_with_exit_1_naming_the_step(script, moto):
    result = bootstrap(script, moto, "some-bucket", AWS_ENDPOINT_URL="http://127.0.0.1:9",
                       AWS_MAX_ATTEMPTS="1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"{script.name}: could not create bucket some-bucket"
