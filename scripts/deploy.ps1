#!/usr/bin/env pwsh
#
# Deploy one immutable image tag to the orchestrator and worker ECS services.
# PowerShell port of deploy.sh, function for function: same arguments, environment, output and exit codes.
#
# For each service: check the tag is in its ECR repository (both, before anything in ECS changes),
# copy the service's current task definition with the container's image swapped to <repo uri>:<tag>,
# register it as a new revision, update the service (--force-new-deployment), wait until every
# service is stable, then check each runs the new revision and that no rollout failed or rolled back.
#
# Waiting is a bounded describe-services poll (as `aws ecs wait services-stable` does: one
# deployment, runningCount == desiredCount), but with our own timeout and interval.
# Needs: aws (CLI v1 or v2), PowerShell 7 (edits the task-definition JSON natively).
#Requires -Version 7.0

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function env_or([string]$Name, [string]$Default) {
  $value = [Environment]::GetEnvironmentVariable($Name)
  if ($value) { $value } else { $Default }
}

Set-Variable -Option ReadOnly -Name PROG -Value 'deploy.ps1'
Set-Variable -Option ReadOnly -Name REGION -Value (env_or 'AWS_REGION' (env_or 'AWS_DEFAULT_REGION' 'us-east-1'))
Set-Variable -Option ReadOnly -Name CLUSTER -Value (env_or 'ECS_CLUSTER' 'ghost-engine-cluster-dev')
Set-Variable -Option ReadOnly -Name SERVICES -Value @((env_or 'ORCHESTRATOR_SERVICE' 'orchestrator'), (env_or 'WORKER_SERVICE' 'worker'))
Set-Variable -Option ReadOnly -Name REPOSITORIES -Value @((env_or 'ORCHESTRATOR_REPOSITORY' 'ghost-engine-orchestrator-dev'), (env_or 'WORKER_REPOSITORY' 'ghost-engine-worker-dev'))
Set-Variable -Option ReadOnly -Name TIMEOUT_SECONDS -Value (env_or 'DEPLOY_TIMEOUT_SECONDS' '600')
# Fields describe-task-definition returns that register-task-definition refuses.
Set-Variable -Option ReadOnly -Name READ_ONLY_FIELDS -Value 'taskDefinitionArn revision status requiresAttributes compatibilities registeredAt registeredBy deregisteredAt'

function usage {
  @"
Usage: ${PROG} IMAGE_TAG

Deploy IMAGE_TAG (already pushed to both ECR repositories) to both ECS services.

Environment (default):
  AWS_REGION               region (AWS_DEFAULT_REGION, else us-east-1)
  ECS_CLUSTER              cluster (ghost-engine-cluster-dev)
  ORCHESTRATOR_SERVICE     service and container name (orchestrator)
  WORKER_SERVICE           service and container name (worker)
  ORCHESTRATOR_REPOSITORY  ECR repository (ghost-engine-orchestrator-dev)
  WORKER_REPOSITORY        ECR repository (ghost-engine-worker-dev)
  DEPLOY_TIMEOUT_SECONDS   how long to wait for both services to be stable (600)

Exit status: 0 deployed and verified, 1 deploy failed, 2 bad usage.
"@
}

# Print an error and exit 1. Every failure exits 1, not the AWS CLI's own status: hence the $LASTEXITCODE checks.
function die([string]$Message) {
  [Console]::Error.WriteLine("${PROG}: $Message")
  exit 1
}

# PowerShell cannot hold an empty AWS_PAGER; every aws output below is captured, so no pager runs.
function aws_cli { & aws --region $REGION @args }

# Fail unless repository $Repo holds tag $Tag.
function require_tag([string]$Repo, [string]$Tag) {
  aws_cli ecr describe-images --repository-name $Repo --image-ids "imageTag=$Tag" | Out-Null
  if ($LASTEXITCODE -ne 0) { die "image tag '$Tag' not found in ECR repository '$Repo'; nothing deployed" }
}

# Write to file $Out the registration input for service $Service's task definition with image $Repo:$Tag.
function prepare_task_definition([string]$Service, [string]$Repo, [string]$Tag, [string]$Out) {
  $current = aws_cli ecs describe-services --cluster $CLUSTER --services $Service `
    --query "services[?status=='ACTIVE'].taskDefinition | [0]" --output text
  if ($LASTEXITCODE -ne 0) { $current = '' }
  if ($current -eq 'None' -or -not $current) { die "service '$Service' not found in cluster '$CLUSTER'" }
  $uri = aws_cli ecr describe-repositories --repository-names $Repo `
    --query 'repositories[0].repositoryUri' --output text
  if ($LASTEXITCODE -ne 0) { exit 1 }
  $json = aws_cli ecs describe-task-definition --task-definition $current --include TAGS --output json
  if ($LASTEXITCODE -ne 0) { die "cannot prepare a task definition for service '$Service' from $current" }
  $doc = ($json -join "`n") | ConvertFrom-Json -AsHashtable
  $td = $doc['taskDefinition']
  foreach ($field in $READ_ONLY_FIELDS -split ' ') {
    $td.Remove($field)
  }
  $containers = @($td['containerDefinitions'] | Where-Object { $_['name'] -eq $Service })
  if ($containers.Count -eq 0) {
    die "no container named '$Service' in task definition $($td['family'])"
  }
  $containers[0]['image'] = "${uri}:$Tag"
  if ($doc['tags']) {
    $td['tags'] = $doc['tags']
  }
  $td | ConvertTo-Json -Depth 100 -Compress | Set-Content -LiteralPath $Out -Encoding utf8NoBOM
  $current
}

# Register file $InputFile as a new revision and point service $Service at it; return the new ARN.
function register_and_update([string]$Service, [string]$InputFile) {
  $arn = aws_cli ecs register-task-definition --cli-input-json "file://$InputFile" `
    --query 'taskDefinition.taskDefinitionArn' --output text
  if ($LASTEXITCODE -ne 0) { exit 1 }
  aws_cli ecs update-service --cluster $CLUSTER --service $Service `
    --task-definition $arn --force-new-deployment --query 'service.serviceName' --output text | Out-Null
  if ($LASTEXITCODE -ne 0) { exit 1 }
  $arn
}

# Wait with the AWS CLI's own waiter (`aws ecs wait services-stable`: one deployment and
# runningCount == desiredCount for every service; it polls every 15 s), bounded by
# DEPLOY_TIMEOUT_SECONDS. If it does not succeed, name the services that are not stable.
function wait_stable([string[]]$Names) {
  $waiter = Start-Process -FilePath aws -NoNewWindow -PassThru -ArgumentList (@('--region', $REGION, 'ecs', 'wait',
    'services-stable', '--cluster', $CLUSTER, '--services') + $Names)
  $status = 0
  if ($waiter.WaitForExit([int]$TIMEOUT_SECONDS * 1000)) { $status = $waiter.ExitCode } else { $waiter.Kill(); $status = 124 }
  if ($status -eq 0) { return }
  $rows = aws_cli ecs describe-services --cluster $CLUSTER --services @Names --output text --query `
    "services[].[serviceName, length(deployments), runningCount, desiredCount, length(deployments[?rolloutState=='FAILED'])]"
  if ($LASTEXITCODE -ne 0) { exit 1 }
  $unstable = ''
  foreach ($row in @($rows)) {
    $name, $deployments, $running, $desired, $failed = $row -split '\s+'
    if ($failed -ne '0') { die "service '$name': deployment rollout FAILED (see the service's events)" }
    if (-not ($deployments -eq '1' -and $running -eq $desired)) { $unstable += " $name" }
  }
  if ($status -eq 124) { die "timed out after ${TIMEOUT_SECONDS}s waiting for service(s) to stabilise:$unstable" }
  die "aws ecs wait services-stable failed (exit $status); not stable:$(if ($unstable) { $unstable } else { ' none' })"
}

# Succeed if service $Service runs task definition $Arn with a single PRIMARY deployment not FAILED.
function verify_service([string]$Service, [string]$Arn) {
  $state = aws_cli ecs describe-services --cluster $CLUSTER --services $Service --output text `
    --query "services[0].[taskDefinition, length(deployments[?status=='PRIMARY']), deployments[?status=='PRIMARY'] | [0].rolloutState]"
  if ($LASTEXITCODE -ne 0) { exit 1 }
  $actual, $primaries, $rollout = "$state" -split '\s+'
  if ($actual -ne $Arn) { die "service '$Service' runs $actual, not ${Arn}: the deployment was rolled back" }
  if (-not ($primaries -eq '1' -and $rollout -ne 'FAILED')) {
    die "service '$Service': rollout did not complete (PRIMARY deployments: $primaries, rolloutState: $rollout)" }
}

function main([string[]]$Arguments) {
  if ($Arguments.Count -ge 1 -and ($Arguments[0] -eq '-h' -or $Arguments[0] -eq '--help')) {
    usage
    exit 0
  }
  if ($Arguments.Count -ne 1 -or $Arguments[0] -cnotmatch '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$') {
    [Console]::Error.Write((usage | Out-String))
    exit 2
  }
  if ($TIMEOUT_SECONDS -cnotmatch '^[1-9][0-9]*$') {
    [Console]::Error.WriteLine("${PROG}: DEPLOY_TIMEOUT_SECONDS must be a whole number of seconds > 0")
    exit 2
  }
  $tag = $Arguments[0]; $previous = @('', ''); $arns = @('', '')
  $workdir = New-Item -ItemType Directory -Path (Join-Path ([IO.Path]::GetTempPath()) ([IO.Path]::GetRandomFileName()))
  try {
    foreach ($i in 0, 1) { require_tag $REPOSITORIES[$i] $tag }
    foreach ($i in 0, 1) {
      $previous[$i] = prepare_task_definition $SERVICES[$i] $REPOSITORIES[$i] $tag (Join-Path $workdir "$i.json")
    }
    foreach ($i in 0, 1) {
      $arns[$i] = register_and_update $SERVICES[$i] (Join-Path $workdir "$i.json")
      Write-Output "$($SERVICES[$i]): $(($previous[$i] -split '/')[-1]) -> $(($arns[$i] -split '/')[-1]) (image tag $tag)"
    }
    wait_stable $SERVICES
    foreach ($i in 0, 1) { verify_service $SERVICES[$i] $arns[$i] }
    Write-Output "deployed ${tag}: $($SERVICES[0]) $(($arns[0] -split '/')[-1]), $($SERVICES[1]) $(($arns[1] -split '/')[-1]) (stable, verified)"
  }
  finally {
    Remove-Item -LiteralPath $workdir -Recurse -Force
  }
}

main $args
