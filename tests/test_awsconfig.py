"""awsconfig: the one resolution of AWS settings (README "AWS settings"): the region chain
AWS_REGION, AWS_DEFAULT_REGION, the profile's region, us-east-1; the endpoint variables; and
errors that say what to set when a profile does not exist or no credentials are found."""

from __future__ import annotations

import pytest

import awsconfig

NO_ENV: dict[str, str] = {}


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    """An AWS config file with a default profile and a named one, each with its own region;
    no credentials file, no instance metadata."""
    path = tmp_path / "config"
    path.write_text("[default]\nregion = ap-south-1\n[profile team]\nregion = eu-west-2\n[profile bare]\n")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return path


@pytest.mark.parametrize(("environ", "expected"), [
    ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-west-2", "AWS_PROFILE": "team"}, ("eu-west-1", "AWS_REGION")),
    ({"AWS_DEFAULT_REGION": "us-west-2", "AWS_PROFILE": "team"}, ("us-west-2", "AWS_DEFAULT_REGION")),
    ({"AWS_PROFILE": "team"}, ("eu-west-2", "profile team")),
    ({}, ("ap-south-1", "profile default")),
    ({"AWS_PROFILE": "bare"}, ("us-east-1", "default")),
], ids=["AWS_REGION", "AWS_DEFAULT_REGION", "named-profile", "default-profile", "last-default"])
def test_region_follows_the_sdk_chain_with_us_east_1_last(config_file, monkeypatch, environ, expected):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)  # the profile's region is read by botocore from the process
    settings = awsconfig.resolve(environ)
    assert (settings.region, settings.region_from) == expected
    assert awsconfig.client("dynamodb", environ).meta.region_name == expected[0]


def test_without_a_config_file_the_region_is_us_east_1(config_file, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    assert awsconfig.resolve(NO_ENV) == awsconfig.AwsSettings("us-east-1", "default", None, None)


def test_the_service_endpoint_wins_over_the_general_one_and_both_are_reported(config_file):
    both = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:2"}
    assert awsconfig.resolve(both).endpoint == "http://127.0.0.1:2"
    assert awsconfig.resolve(both, "ecs").endpoint == "http://127.0.0.1:1"
    assert awsconfig.resolve({"AWS_REGION": "eu-west-1", **both}).describe() == (
        "eu-west-1 (AWS_REGION), endpoint http://127.0.0.1:2")
    assert awsconfig.resolve({}).describe() == "ap-south-1 (profile default)"


@pytest.mark.parametrize("environ", [{"AWS_PROFILE": "nope"}, {"AWS_PROFILE": "nope", "AWS_REGION": "eu-west-1"}],
                         ids=["alone", "with-a-region"])
def test_a_profile_that_does_not_exist_is_named_even_when_a_region_is_set(config_file, monkeypatch, environ):
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(awsconfig.AwsConfigError) as info:
        awsconfig.resolve(environ)
    assert str(info.value) == ("AWS_PROFILE=nope names no profile in the AWS config or credentials file; set "
                               "AWS_PROFILE to one of `aws configure list-profiles`, or unset it")


def test_missing_credentials_say_what_to_set(config_file):
    with pytest.raises(awsconfig.AwsConfigError) as info:
        awsconfig.require_credentials(NO_ENV)
    assert str(info.value) == (
        "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any values for a local server "
        "such as moto), or AWS_PROFILE naming a profile that has credentials")


def test_credentials_from_the_environment_are_enough(config_file, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    awsconfig.require_credentials(NO_ENV)
