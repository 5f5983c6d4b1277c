#!/usr/bin/env bash
#
# Create (or bring into line) the S3 bucket that holds Terraform's state for every environment of
# infra/aws/terraform, then print the `terraform init` line of each environment.
#
# The bucket: versioning on (every state version kept, so a bad apply can be undone), default
# encryption (SSE-S3), all public access blocked. Each environment's state is its own object
# (environments/<env>.s3.tfbackend: key ghost-engine/<env>.tfstate), locked by Terraform with an
# S3 lock file beside it (use_lockfile, Terraform 1.10+): no DynamoDB lock table to create.
# Running it again changes nothing that is already right. Run it once per AWS account.
# AWS settings as every tool here resolves them (lib/aws.sh; README "AWS settings"): no --region.
# scripts/bootstrap-state.ps1 is its PowerShell port: change both together.

set -o errexit -o nounset -o pipefail

readonly PROG="${0##*/}"
# shellcheck source-path=SCRIPTDIR source=lib/errors.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"
# shellcheck source-path=SCRIPTDIR source=lib/aws.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/aws.sh"
readonly ENVIRONMENTS=(dev staging prod)
# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a
# letter or digit.
readonly BUCKET_PATTERN='^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'

usage() {
  cat <<EOF
Usage: ${PROG} [BUCKET]

Create the Terraform state bucket BUCKET with versioning, encryption and no public access,
and print each environment's terraform init line.

Environment (default):
  TF_STATE_BUCKET  the bucket when no BUCKET is given (ghost-engine-tfstate-<account id>-<region>)
  AWS_REGION       region (AWS_DEFAULT_REGION, else AWS_PROFILE's region, else us-east-1);
                   AWS_ENDPOINT_URL and credentials as usual (README "AWS settings")

Exit status: 0 the bucket is ready, 1 an AWS call failed, 2 bad usage.
EOF
}

# Create the bucket unless it exists (and is ours: head-bucket fails on someone else's).
create_bucket() {
  local bucket="$1"
  if aws s3api head-bucket --bucket "${bucket}" >/dev/null 2>&1; then
    echo "${PROG}: bucket ${bucket} exists; checking its settings" >&2
    return
  fi
  echo "${PROG}: creating bucket ${bucket} in $(describe_aws_target S3)" >&2
  if [[ "${AWS_REGION}" == "us-east-1" ]]; then # the one region that refuses a LocationConstraint
    aws s3api create-bucket --bucket "${bucket}" >/dev/null || die "could not create bucket ${bucket}"
  else
    aws s3api create-bucket --bucket "${bucket}" \
      --create-bucket-configuration "LocationConstraint=${AWS_REGION}" >/dev/null ||
      die "could not create bucket ${bucket}"
  fi
}

# Versioning, default encryption and the public access block: set every time (idempotent).
secure_bucket() {
  local bucket="$1"
  aws s3api put-bucket-versioning --bucket "${bucket}" --versioning-configuration Status=Enabled ||
    die "could not turn on versioning of ${bucket}"
  aws s3api put-bucket-encryption --bucket "${bucket}" --server-side-encryption-configuration \
    '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"},"BucketKeyEnabled":true}]}' ||
    die "could not set default encryption of ${bucket}"
  aws s3api put-public-access-block --bucket "${bucket}" --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true ||
    die "could not block public access to ${bucket}"
  echo "${PROG}: bucket ${bucket}: versioning on, encrypted (SSE-S3), public access blocked" >&2
}

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
  fi
  (($# <= 1)) || usage_error "expected at most one argument, the bucket name"
  [[ "${1:-}" != -* ]] || usage_error "unknown option $1"
  resolve_aws_region
  local bucket="${1:-${TF_STATE_BUCKET:-}}" account environment
  if [[ -z "${bucket}" ]]; then
    account="$(aws sts get-caller-identity --query Account --output text)" ||
      die "could not read the account id (aws sts get-caller-identity); check the credentials"
    bucket="ghost-engine-tfstate-${account}-${AWS_REGION}"
  fi
  [[ "${bucket}" =~ ${BUCKET_PATTERN} ]] ||
    usage_error "bucket ${bucket}: 3-63 lowercase letters, digits, dots and hyphens"
  create_bucket "${bucket}"
  secure_bucket "${bucket}"
  echo "${PROG}: each environment's state, from infra/aws/terraform:" >&2
  for environment in "${ENVIRONMENTS[@]}"; do
    echo "terraform init -reconfigure -backend-config=environments/${environment}.s3.tfbackend" \
      "-backend-config=bucket=${bucket} -backend-config=region=${AWS_REGION}"
  done
}

main "$@"
