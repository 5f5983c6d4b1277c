# Dot-sourced by the PowerShell scripts in scripts/ that call AWS (after lib/errors.ps1): the one
# resolution of AWS settings (README "AWS settings"; awsconfig.py is the Python side). Region:
# AWS_REGION, else AWS_DEFAULT_REGION, else the region of the profile (AWS_PROFILE, else default),
# else us-east-1. It is set as AWS_DEFAULT_REGION too, which is the variable the AWS CLI v1 reads,
# so no command needs --region. AWS_ENDPOINT_URL[_<SERVICE>] the CLI honours by itself.
# Port of scripts/lib/aws.sh: change both together.

Set-Variable -Option ReadOnly -Name AWS_LAST_DEFAULT_REGION -Value 'us-east-1'

# bash: resolve_aws_region. Resolve the region (see above), set it as AWS_REGION and
# AWS_DEFAULT_REGION, and set $AwsRegionFrom to the setting it came from. Exit 1 if AWS_PROFILE
# names no profile.
function Resolve-AwsRegion {
  $profileRegion = & aws configure get region 2>$null
  if ($LASTEXITCODE -eq 255) {
    Exit-WithError "AWS_PROFILE=$env:AWS_PROFILE names no profile in the AWS config or credentials file; set AWS_PROFILE to one of ``aws configure list-profiles``, or unset it"
  }
  if ($env:AWS_REGION) {
    $region = $env:AWS_REGION; $from = 'AWS_REGION'
  } elseif ($env:AWS_DEFAULT_REGION) {
    $region = $env:AWS_DEFAULT_REGION; $from = 'AWS_DEFAULT_REGION'
  } elseif ($profileRegion) {
    $region = "$profileRegion"; $from = "profile $(if ($env:AWS_PROFILE) { $env:AWS_PROFILE } else { 'default' })"
  } else {
    $region = $AWS_LAST_DEFAULT_REGION; $from = 'default'
  }
  $env:AWS_REGION = $region
  $env:AWS_DEFAULT_REGION = $region
  Set-Variable -Scope Script -Option ReadOnly -Name AwsRegionFrom -Value $from
}

# bash: describe_aws_target. Where AWS calls go: "<region> (<where it came from>)[, endpoint <url>]"
# for service $Service (e.g. ECS), as awsconfig.AwsSettings.describe does.
function Get-AwsTarget([string]$Service) {
  $endpoint = [Environment]::GetEnvironmentVariable("AWS_ENDPOINT_URL_$Service")
  if (-not $endpoint) { $endpoint = $env:AWS_ENDPOINT_URL }
  "$env:AWS_REGION ($AwsRegionFrom)$(if ($endpoint) { ", endpoint $endpoint" })"
}
