#!/usr/bin/env pwsh
#
# Create (or bring into line) the S3 bucket that holds Terraform's state for every environment of
# infra/aws/terraform, then print the `terraform init` line of each environment.
# PowerShell port of bootstrap-state.sh, function for function (each names its bash twin): same
# arguments, environment, output and exit codes. Change both together.
#
# The bucket: versioning on (every state version kept, so a bad apply can be undone), default
# encryption (SSE-S3), all public access blocked. Each environment's state is its own object
# (environments/<env>.s3.tfbackend: key ghost-engine/<env>.tfstate), locked by Terraform with an
# S3 lock file beside it (use_lockfile, Terraform 1.10+): no DynamoDB lock table to create.
# Running it again changes nothing that is already right. Run it once per AWS account.
# AWS settings as every tool here resolves them (lib/aws.ps1; README "AWS settings"): no --region.
#Requires -Version 7.0

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

Set-Variable -Option ReadOnly -Name PROG -Value (Split-Path -Leaf $PSCommandPath)
. (Join-Path $PSScriptRoot 'lib' 'errors.ps1')
. (Join-Path $PSScriptRoot 'lib' 'aws.ps1')
Set-Variable -Option ReadOnly -Name ENVIRONMENTS -Value @('dev', 'staging', 'prod')
# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a
# letter or digit.
Set-Variable -Option ReadOnly -Name BUCKET_PATTERN -Value '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'

# bash: usage
function Get-Usage {
  @"
Usage: $PROG [BUCKET]

Create the Terraform state bucket BUCKET with versioning, encryption and no public access,
and print each environment's terraform init line.

Environment (default):
  TF_STATE_BUCKET  the bucket when no BUCKET is given (ghost-engine-tfstate-<account id>-<region>)
  AWS_REGION       region (AWS_DEFAULT_REGION, else AWS_PROFILE's region, else us-east-1);
                   AWS_ENDPOINT_URL and credentials as usual (README "AWS settings")

Exit status: 0 the bucket is ready, 1 an AWS call failed, 2 bad usage.
"@
}

# bash: create_bucket. Create the bucket unless it exists (and is ours: head-bucket fails on
# someone else's).
function New-StateBucket([string]$Bucket) {
  & aws s3api head-bucket --bucket $Bucket *> $null
  if ($LASTEXITCODE -eq 0) {
    [Console]::Error.WriteLine("${PROG}: bucket $Bucket exists; checking its settings")
    return
  }
  [Console]::Error.WriteLine("${PROG}: creating bucket $Bucket in $(Get-AwsTarget 'S3')")
  if ($env:AWS_REGION -eq 'us-east-1') { # the one region that refuses a LocationConstraint
    & aws s3api create-bucket --bucket $Bucket > $null
  } else {
    & aws s3api create-bucket --bucket $Bucket --create-bucket-configuration "LocationConstraint=$env:AWS_REGION" > $null
  }
  if ($LASTEXITCODE -ne 0) { Exit-WithError "could not create bucket $Bucket" }
}

# bash: secure_bucket. Versioning, default encryption and the public access block: set every
# time (idempotent).
function Protect-StateBucket([string]$Bucket) {
  & aws s3api put-bucket-versioning --bucket $Bucket --versioning-configuration Status=Enabled
  if ($LASTEXITCODE -ne 0) { Exit-WithError "could not turn on versioning of $Bucket" }
  & aws s3api put-bucket-encryption --bucket $Bucket --server-side-encryption-configuration `
    '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"},"BucketKeyEnabled":true}]}'
  if ($LASTEXITCODE -ne 0) { Exit-WithError "could not set default encryption of $Bucket" }
  & aws s3api put-public-access-block --bucket $Bucket --public-access-block-configuration `
    'BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true'
  if ($LASTEXITCODE -ne 0) { Exit-WithError "could not block public access to $Bucket" }
  [Console]::Error.WriteLine("${PROG}: bucket ${Bucket}: versioning on, encrypted (SSE-S3), public access blocked")
}

# bash: main
function Invoke-Main([string[]]$Arguments) {
  if ($Arguments.Count -ge 1 -and ($Arguments[0] -eq '-h' -or $Arguments[0] -eq '--help')) {
    Get-Usage
    exit 0
  }
  if ($Arguments.Count -gt 1) { Exit-WithUsageError 'expected at most one argument, the bucket name' }
  if ($Arguments.Count -eq 1 -and $Arguments[0].StartsWith('-')) { Exit-WithUsageError "unknown option $($Arguments[0])" }
  Resolve-AwsRegion
  $bucket = if ($Arguments.Count -eq 1) { $Arguments[0] } else { "$env:TF_STATE_BUCKET" }
  if (-not $bucket) {
    $account = & aws sts get-caller-identity --query Account --output text
    if ($LASTEXITCODE -ne 0) { Exit-WithError 'could not read the account id (aws sts get-caller-identity); check the credentials' }
    $bucket = "ghost-engine-tfstate-$account-$env:AWS_REGION"
  }
  if ($bucket -cnotmatch $BUCKET_PATTERN) {
    Exit-WithUsageError "bucket ${bucket}: 3-63 lowercase letters, digits, dots and hyphens"
  }
  New-StateBucket $bucket
  Protect-StateBucket $bucket
  [Console]::Error.WriteLine("${PROG}: each environment's state, from infra/aws/terraform:")
  foreach ($environment in $ENVIRONMENTS) {
    "terraform init -reconfigure -backend-config=environments/$environment.s3.tfbackend -backend-config=bucket=$bucket -backend-config=region=$env:AWS_REGION"
  }
}

Invoke-Main $args
