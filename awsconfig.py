"""One resolution of the AWS settings for every tool in this repository (README "AWS settings").

The same order as the AWS SDKs, written down once (scripts/lib/aws.sh and aws.ps1 are its shell
ports, and Terraform's provider follows it on its own):

- region: ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else the ``region`` of the profile
  (``AWS_PROFILE``, else ``default``) in the AWS config file, else ``us-east-1``;
- endpoint: ``AWS_ENDPOINT_URL_<SERVICE>``, else ``AWS_ENDPOINT_URL``, else AWS's own (botocore
  reads these itself; this module only reports them);
- credentials: botocore's chain (environment, profile, container or instance role).

botocore alone reads ``AWS_DEFAULT_REGION`` but not ``AWS_REGION`` (which ECS sets), and has no
last default, hence this module. A profile that does not exist and credentials that cannot be
found are ``AwsConfigError``s whose message says what to set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config import ConfigError

DEFAULT_REGION = "us-east-1"
# What --help lists under the service's own variables (all unset by default).
VARIABLES = (
    ("AWS_REGION", f"unset: AWS_DEFAULT_REGION, else the profile's region, else {DEFAULT_REGION}"),
    ("AWS_DEFAULT_REGION", "unset"),
    ("AWS_PROFILE", "unset (the default profile)"),
    ("AWS_ENDPOINT_URL", "unset (AWS)"),
    ("AWS_ENDPOINT_URL_DYNAMODB", "unset: AWS_ENDPOINT_URL"),
    ("AWS_ACCESS_KEY_ID", "unset: the profile, else the task or instance role"),
    ("AWS_SECRET_ACCESS_KEY", "unset"),
)
NO_CREDENTIALS = ("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any values for a "
                  "local server such as moto), or AWS_PROFILE naming a profile that has credentials")


class AwsConfigError(ConfigError):
    """The AWS settings cannot work as given (a profile that does not exist, no credentials)."""


@dataclass(frozen=True)
class AwsSettings:
    """Where AWS calls go: the region and the setting it came from, the endpoint if overridden."""

    region: str
    region_from: str  # "AWS_REGION", "AWS_DEFAULT_REGION", "profile <name>" or "default"
    endpoint: str | None
    profile: str | None

    def describe(self) -> str:
        """``us-east-1 (AWS_REGION), endpoint http://127.0.0.1:8000``: for the tools' output."""
        endpoint = f", endpoint {self.endpoint}" if self.endpoint else ""
        return f"{self.region} ({self.region_from}){endpoint}"


def resolve(environ: Mapping[str, str], service: str = "dynamodb") -> AwsSettings:
    """The settings ``environ`` gives for calls to ``service``; ``AwsConfigError`` when
    ``AWS_PROFILE`` names a profile the config files do not have."""
    profile = environ.get("AWS_PROFILE") or None
    endpoint = environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or environ.get("AWS_ENDPOINT_URL") or None
    region = _profile_region(profile)  # also when unused: a profile that does not exist is an error
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if environ.get(name):
            return AwsSettings(environ[name], name, endpoint, profile)
    if region:
        return AwsSettings(region, f"profile {profile or 'default'}", endpoint, profile)
    return AwsSettings(DEFAULT_REGION, "default", endpoint, profile)


def _profile_region(profile: str | None) -> str | None:
    import botocore.exceptions
    import botocore.session

    session = botocore.session.Session(profile=profile)
    try:
        return session.get_config_variable("region") or None
    except botocore.exceptions.ProfileNotFound:
        raise AwsConfigError(f"AWS_PROFILE={profile} names no profile in the AWS config or credentials file; "
                             "set AWS_PROFILE to one of `aws configure list-profiles`, or unset it") from None


def client(service: str, environ: Mapping[str, str], **kwargs: Any) -> Any:
    """A boto3 client for ``service`` in the resolved region (endpoint and credentials from
    botocore's own chain); ``AwsConfigError`` for a missing profile."""
    import boto3

    return boto3.session.Session(region_name=resolve(environ, service).region).client(service, **kwargs)


def require_credentials(environ: Mapping[str, str]) -> None:
    """``AwsConfigError`` naming what to set unless botocore's chain finds credentials."""
    import boto3

    resolve(environ)  # a missing profile first: it is the more precise message
    if boto3.session.Session().get_credentials() is None:
        raise AwsConfigError(NO_CREDENTIALS)
