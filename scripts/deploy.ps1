#!/usr/bin/env pwsh
#
# Deploy one immutable image tag to the orchestrator and worker ECS services.
# PowerShell port of deploy.sh, function for function (each names its bash twin): same arguments,
# environment, output and exit codes. Change both together.
#
# For each service: check the tag is in its ECR repository (both, before anything in ECS changes),
# copy the latest ACTIVE revision of the service's task-definition family (Terraform owns every
# field but the image: a change it registered goes live here) with the container's image swapped
# to <repo uri>:<tag>, register it as a new revision, update the service (--force-new-deployment),
# wait until every service is stable, then check each runs the new revision and that no rollout
# failed or rolled back. If anything fails after the first service was updated, both services are
# put back on the revisions they ran before (no mixed versions), and the run says so.
#
# Waiting is its own describe-services loop, bounded by DEPLOY_TIMEOUT_SECONDS, with one progress
# line per poll (the AWS CLI's `ecs wait services-stable` is silent, gives up at 600 s whatever the
# bound, and can succeed after a circuit-breaker rollback, hence also the check afterwards).
# AWS settings as every tool here resolves them (lib/aws.ps1; README "AWS settings"): no --region.
# Needs: aws (CLI v1 or v2), python (python3 off Windows: runs taskdefinition.py beside this
# script, which edits the task-definition JSON), PowerShell 7.
#Requires -Version 7.0

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# bash: none (deploy.sh writes ${NAME:-DEFAULT}): an unset or empty variable gives the default.
function Get-EnvOrDefault([string]$Name, [string]$Default) {
  $value = [Environment]::GetEnvironmentVariable($Name)
  if ($value) { $value } else { $Default }
}

Set-Variable -Option ReadOnly -Name PROG -Value (Split-Path -Leaf $PSCommandPath)
# Exit-WithError (every failure exits 1, not the AWS CLI's own status: hence the $LASTEXITCODE
# checks) and Exit-WithUsageError.
. (Join-Path $PSScriptRoot 'lib' 'errors.ps1')
# Resolve-AwsRegion and Get-AwsTarget: the AWS settings every tool here shares.
. (Join-Path $PSScriptRoot 'lib' 'aws.ps1')
Set-Variable -Option ReadOnly -Name CLUSTER -Value (Get-EnvOrDefault 'ECS_CLUSTER' 'ghost-engine-cluster-dev')
Set-Variable -Option ReadOnly -Name SERVICES -Value @((Get-EnvOrDefault 'ORCHESTRATOR_SERVICE' 'orchestrator'), (Get-EnvOrDefault 'WORKER_SERVICE' 'worker'))
Set-Variable -Option ReadOnly -Name REPOSITORIES -Value @((Get-EnvOrDefault 'ORCHESTRATOR_REPOSITORY' 'ghost-engine-orchestrator-dev'), (Get-EnvOrDefault 'WORKER_REPOSITORY' 'ghost-engine-worker-dev'))
Set-Variable -Option ReadOnly -Name TIMEOUT_SECONDS -Value (Get-EnvOrDefault 'DEPLOY_TIMEOUT_SECONDS' '600')
Set-Variable -Option ReadOnly -Name POLL_SECONDS -Value (Get-EnvOrDefault 'DEPLOY_POLL_SECONDS' '10')
Set-Variable -Option ReadOnly -Name PYTHON -Value $(if ($IsWindows) { 'python' } else { 'python3' })
# The JSON work (a copy of the task definition with one image swapped) is in taskdefinition.py.
Set-Variable -Option ReadOnly -Name TASK_DEFINITION -Value (Join-Path $PSScriptRoot 'taskdefinition.py')
# An ECR image tag: 1-128 characters, the first a letter, digit or underscore.
Set-Variable -Option ReadOnly -Name TAG_PATTERN -Value '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'
# The services not yet stable after the last poll (Write-ServiceStates sets it).
$script:unstable = ''

# bash: usage
function Get-Usage {
  @"
Usage: $PROG IMAGE_TAG

Deploy IMAGE_TAG (already pushed to both ECR repositories) to both ECS services.

Environment (default):
  AWS_REGION               region (AWS_DEFAULT_REGION, else AWS_PROFILE's region, else us-east-1);
                           AWS_ENDPOINT_URL and credentials as usual (README "AWS settings")
  ECS_CLUSTER              cluster (ghost-engine-cluster-dev)
  ORCHESTRATOR_SERVICE     service and container name (orchestrator)
  WORKER_SERVICE           service and container name (worker)
  ORCHESTRATOR_REPOSITORY  ECR repository (ghost-engine-orchestrator-dev)
  WORKER_REPOSITORY        ECR repository (ghost-engine-worker-dev)
  DEPLOY_TIMEOUT_SECONDS   how long to wait for both services to be stable (600)
  DEPLOY_POLL_SECONDS      seconds between progress lines while waiting, 1-15 (10)

Exit status: 0 deployed and verified, 1 deploy failed, 2 bad usage.
"@
}

# bash: check_usage. Exit 2 unless the arguments are one valid IMAGE_TAG and the environment's
# settings are valid.
function Assert-Usage([string[]]$Arguments) {
  if ($Arguments.Count -ne 1) { Exit-WithUsageError "expected 1 argument (IMAGE_TAG), got $($Arguments.Count)" }
  $tag = $Arguments[0]
  if ($tag.StartsWith('-')) { Exit-WithUsageError "unknown option: $tag" }
  if ($tag -cnotmatch $TAG_PATTERN) {
    Exit-WithUsageError "invalid image tag '$tag': 1-128 of A-Z a-z 0-9 _ . -, not starting with . or -" }
  if ($TIMEOUT_SECONDS -cnotmatch '^[1-9][0-9]*$') {
    Exit-WithUsageError "DEPLOY_TIMEOUT_SECONDS must be a whole number of seconds > 0, got '$TIMEOUT_SECONDS'" }
  if ($POLL_SECONDS -cnotmatch '^([1-9]|1[0-5])$') {
    Exit-WithUsageError "DEPLOY_POLL_SECONDS must be a whole number of seconds from 1 to 15, got '$POLL_SECONDS'" }
}

# bash: aws_cli. PowerShell cannot hold an empty AWS_PAGER; every aws output below is captured, so
# no pager runs.
function Invoke-AwsCli { & aws @args }

# bash: require_tag. Fail unless repository $Repo holds tag $Tag.
function Assert-ImageTag([string]$Repo, [string]$Tag) {
  Invoke-AwsCli ecr describe-images --repository-name $Repo --image-ids "imageTag=$Tag" | Out-Null
  if ($LASTEXITCODE -ne 0) { Exit-WithError "image tag '$Tag' not found in ECR repository '$Repo'; nothing deployed" }
}

# bash: prepare_task_definition. Write to file $Out the registration input for the latest ACTIVE
# revision of service $Service's task-definition family with image $Repo:$Tag; return the
# service's current task definition.
function New-TaskDefinitionInput([string]$Service, [string]$Repo, [string]$Tag, [string]$Out) {
  $current = Invoke-AwsCli ecs describe-services --cluster $CLUSTER --services $Service `
    --query "services[?status=='ACTIVE'].taskDefinition | [0]" --output text
  if ($LASTEXITCODE -ne 0) { $current = '' }
  if ($current -eq 'None' -or -not $current) { Exit-WithError "service '$Service' not found in cluster '$CLUSTER'" }
  $uri = Invoke-AwsCli ecr describe-repositories --repository-names $Repo `
    --query 'repositories[0].repositoryUri' --output text
  if ($LASTEXITCODE -ne 0) { exit 1 }
  $family = (($current -split '/')[-1] -split ':')[0]
  # A family name alone means its latest ACTIVE revision.
  $described = Invoke-AwsCli ecs describe-task-definition --task-definition $family --include TAGS --output json
  if ($LASTEXITCODE -eq 0) { $registration = $described | & $PYTHON $TASK_DEFINITION --prog $PROG $Service "${uri}:$Tag" }
  if ($LASTEXITCODE -ne 0) { Exit-WithError "cannot prepare a task definition for service '$Service' from family $family" }
  Set-Content -LiteralPath $Out -Value $registration -Encoding utf8NoBOM
  $current
}

# bash: register_and_update. Register file $InputFile as a new revision and point service $Service
# at it; return the new ARN.
function Update-ServiceRevision([string]$Service, [string]$InputFile) {
  $arn = Invoke-AwsCli ecs register-task-definition --cli-input-json "file://$InputFile" `
    --query 'taskDefinition.taskDefinitionArn' --output text
  if ($LASTEXITCODE -ne 0) { exit 1 }
  Invoke-AwsCli ecs update-service --cluster $CLUSTER --service $Service `
    --task-definition $arn --force-new-deployment --query 'service.serviceName' --output text | Out-Null
  if ($LASTEXITCODE -ne 0) { exit 1 }
  $arn
}

# bash: report_services. Print one progress line, "[<Elapsed>s] " then per service its desired,
# running and pending tasks, the primary deployment's rollout state, and the deployments when more
# than one. Set $unstable to the services not stable yet (stable: one deployment, runningCount ==
# desiredCount). Exit 1 if a rollout FAILED (ECS's circuit breaker gave up on it).
function Write-ServiceStates([int]$Elapsed, [string[]]$Names) {
  $rows = Invoke-AwsCli ecs describe-services --cluster $CLUSTER --services @Names --output text --query `
    "services[].[serviceName, length(deployments), desiredCount, runningCount, pendingCount, deployments[?status=='PRIMARY'] | [0].rolloutState]"
  if ($LASTEXITCODE -ne 0) { exit 1 }
  $line = ''; $failed = ''
  $script:unstable = ''
  foreach ($row in @($rows)) {
    $name, $deployments, $desired, $running, $pending, $rollout = $row -split '\s+'
    $line += "$(if ($line) { '; ' })${name}: desired $desired, running $running, pending $pending, rollout $rollout"
    if ($deployments -ne '1') { $line += ", $deployments deployments" }
    if (-not ($deployments -eq '1' -and $running -eq $desired)) { $script:unstable += " $name" }
    if ($rollout -eq 'FAILED') { $failed = $name }
  }
  Write-Output ('[{0,4}s] {1}' -f $Elapsed, $line)
  if ($failed) { Exit-WithError "service '$failed': deployment rollout FAILED (see the service's events)" }
}

# bash: wait_stable. Poll the services every POLL_SECONDS, a progress line each time, until every
# one is stable; fail once DEPLOY_TIMEOUT_SECONDS have passed, naming those that are not.
function Wait-ServicesStable([string[]]$Names) {
  $clock = [Diagnostics.Stopwatch]::StartNew()
  while ($true) {
    Write-ServiceStates ([int][math]::Floor($clock.Elapsed.TotalSeconds)) $Names
    if (-not $script:unstable) { return }
    $elapsed = [int][math]::Floor($clock.Elapsed.TotalSeconds)
    if ($elapsed -ge [int]$TIMEOUT_SECONDS) {
      Exit-WithError "timed out after ${TIMEOUT_SECONDS}s waiting for service(s) to stabilise:$($script:unstable)" }
    Start-Sleep -Seconds ([math]::Min([int]$TIMEOUT_SECONDS - $elapsed, [int]$POLL_SECONDS))
  }
}

# bash: verify_service. Succeed if service $Service runs task definition $Arn with a single PRIMARY
# deployment not FAILED.
function Confirm-ServiceRevision([string]$Service, [string]$Arn) {
  $state = Invoke-AwsCli ecs describe-services --cluster $CLUSTER --services $Service --output text `
    --query "services[0].[taskDefinition, length(deployments[?status=='PRIMARY']), deployments[?status=='PRIMARY'] | [0].rolloutState]"
  if ($LASTEXITCODE -ne 0) { exit 1 }
  $actual, $primaries, $rollout = "$state" -split '\s+'
  if ($actual -ne $Arn) { Exit-WithError "service '$Service' runs $actual, not ${Arn}: the deployment was rolled back" }
  if (-not ($primaries -eq '1' -and $rollout -ne 'FAILED')) {
    Exit-WithError "service '$Service': rollout did not complete (PRIMARY deployments: $primaries, rolloutState: $rollout)" }
}

# bash: roll_back. Put every service back on the revision it ran before this deploy ($Previous),
# so a failed rollout of one never leaves the other on the new version; wait for them as the
# deploy does.
function Invoke-RollBack([string[]]$Previous) {
  [Console]::Error.WriteLine("${PROG}: rolling back both services to their previous revisions (no mixed versions)")
  foreach ($i in 0, 1) {
    $current = Invoke-AwsCli ecs describe-services --cluster $CLUSTER --services $SERVICES[$i] `
      --query 'services[0].taskDefinition' --output text
    if ($LASTEXITCODE -ne 0) { $current = '' }
    if ($current -eq $Previous[$i]) {
      [Console]::Error.WriteLine("${PROG}: $($SERVICES[$i]): on $(($Previous[$i] -split '/')[-1]) (not moved, or rolled back by ECS)")
      continue
    }
    Invoke-AwsCli ecs update-service --cluster $CLUSTER --service $SERVICES[$i] `
      --task-definition $Previous[$i] --query 'service.serviceName' --output text | Out-Null
    if ($LASTEXITCODE -eq 0) {
      [Console]::Error.WriteLine("${PROG}: $($SERVICES[$i]): $(($current -split '/')[-1]) -> $(($Previous[$i] -split '/')[-1]) (rolled back)")
    } else {
      [Console]::Error.WriteLine("${PROG}: $($SERVICES[$i]): could not be rolled back to $(($Previous[$i] -split '/')[-1])")
    }
  }
  # bash runs its wait_stable in a subshell, where a timeout ends the subshell only; here the
  # same bounded describe-services loop, returning instead of exiting.
  $clock = [Diagnostics.Stopwatch]::StartNew(); $stable = $false
  while ($true) {
    $rows = Invoke-AwsCli ecs describe-services --cluster $CLUSTER --services $SERVICES --output text `
      --query 'services[].[length(deployments), desiredCount, runningCount]'
    $stable = $LASTEXITCODE -eq 0 -and -not ($rows | Where-Object {
        $deployments, $desired, $running = "$_" -split '\s+'; -not ($deployments -eq '1' -and $running -eq $desired) })
    if ($stable -or $clock.Elapsed.TotalSeconds -ge [int]$TIMEOUT_SECONDS) { break }
    Start-Sleep -Seconds ([int]$POLL_SECONDS)
  }
  if ($stable) {
    [Console]::Error.WriteLine("${PROG}: rolled back: $($SERVICES[0]) $(($Previous[0] -split '/')[-1]), $($SERVICES[1]) $(($Previous[1] -split '/')[-1]) (stable)")
  } else {
    [Console]::Error.WriteLine("${PROG}: rollback requested, but the services were not stable within ${TIMEOUT_SECONDS}s")
  }
}

# bash: main (and on_exit: the finally block)
function Invoke-Main([string[]]$Arguments) {
  if ($Arguments.Count -ge 1 -and ($Arguments[0] -ceq '-h' -or $Arguments[0] -ceq '--help')) {
    Write-Output (Get-Usage)
    exit 0
  }
  Assert-Usage $Arguments
  Resolve-AwsRegion
  $tag = $Arguments[0]; $previous = @('', ''); $arns = @('', ''); $rollbackArmed = $false
  Write-Output "deploying $tag to cluster $CLUSTER in $(Get-AwsTarget 'ECS')"
  $workdir = (New-Item -ItemType Directory -Path (Join-Path ([IO.Path]::GetTempPath()) ([IO.Path]::GetRandomFileName()))).FullName
  try {
    foreach ($i in 0, 1) { Assert-ImageTag $REPOSITORIES[$i] $tag }
    foreach ($i in 0, 1) {
      $previous[$i] = New-TaskDefinitionInput $SERVICES[$i] $REPOSITORIES[$i] $tag (Join-Path $workdir "$i.json")
    }
    foreach ($i in 0, 1) {
      $rollbackArmed = $true  # from here a failure may leave the services on different versions
      $arns[$i] = Update-ServiceRevision $SERVICES[$i] (Join-Path $workdir "$i.json")
      Write-Output "$($SERVICES[$i]): $(($previous[$i] -split '/')[-1]) -> $(($arns[$i] -split '/')[-1]) (image tag $tag)"
    }
    Wait-ServicesStable $SERVICES
    foreach ($i in 0, 1) { Confirm-ServiceRevision $SERVICES[$i] $arns[$i] }
    $rollbackArmed = $false
    Write-Output "deployed ${tag}: $($SERVICES[0]) $(($arns[0] -split '/')[-1]), $($SERVICES[1]) $(($arns[1] -split '/')[-1]) (stable, verified)"
  }
  finally {
    # Reached by every exit inside try (Exit-WithError's `exit 1` included), as bash's EXIT trap.
    if ($rollbackArmed) { Invoke-RollBack $previous }
    Remove-Item -LiteralPath $workdir -Recurse -Force
  }
  exit 0
}

Invoke-Main $args
