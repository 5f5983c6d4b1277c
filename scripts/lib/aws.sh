# Sourced by the bash scripts in scripts/ that call AWS (after lib/errors.sh): the one resolution
# of AWS settings (README "AWS settings"; awsconfig.py is the Python side). Region: AWS_REGION,
# else AWS_DEFAULT_REGION, else the region of the profile (AWS_PROFILE, else default), else
# us-east-1. It is exported as AWS_DEFAULT_REGION too, which is the variable the AWS CLI v1 reads,
# so no command needs --region. AWS_ENDPOINT_URL[_<SERVICE>] the CLI honours by itself.
# scripts/lib/aws.ps1 is its PowerShell port: change both together.
# shellcheck shell=bash

readonly AWS_LAST_DEFAULT_REGION="us-east-1"

# Resolve the region (see above), export it as AWS_REGION and AWS_DEFAULT_REGION, and set
# AWS_REGION_FROM to the setting it came from. Exit 1 if AWS_PROFILE names no profile.
resolve_aws_region() {
  local profile_region status=0
  profile_region="$(aws configure get region 2>/dev/null)" || status=$?
  if ((status == 255)); then
    die "AWS_PROFILE=${AWS_PROFILE:-} names no profile in the AWS config or credentials file; set AWS_PROFILE to one of \`aws configure list-profiles\`, or unset it"
  fi
  if [[ -n "${AWS_REGION:-}" ]]; then
    AWS_REGION_FROM="AWS_REGION"
  elif [[ -n "${AWS_DEFAULT_REGION:-}" ]]; then
    AWS_REGION="${AWS_DEFAULT_REGION}" AWS_REGION_FROM="AWS_DEFAULT_REGION"
  elif [[ -n "${profile_region}" ]]; then
    AWS_REGION="${profile_region}" AWS_REGION_FROM="profile ${AWS_PROFILE:-default}"
  else
    AWS_REGION="${AWS_LAST_DEFAULT_REGION}" AWS_REGION_FROM="default"
  fi
  export AWS_REGION AWS_DEFAULT_REGION="${AWS_REGION}"
  readonly AWS_REGION_FROM
}

# Print where AWS calls go: "<region> (<where it came from>)[, endpoint <url>]" for service $1
# (e.g. ECS), as awsconfig.AwsSettings.describe does.
describe_aws_target() {
  local service_endpoint="AWS_ENDPOINT_URL_$1" endpoint
  endpoint="${!service_endpoint:-${AWS_ENDPOINT_URL:-}}"
  echo "${AWS_REGION} (${AWS_REGION_FROM})${endpoint:+, endpoint ${endpoint}}"
}
