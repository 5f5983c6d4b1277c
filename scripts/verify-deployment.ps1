#!/usr/bin/env pwsh
#
# Checks every "Done means Done" of the seed's four steps against a deployed stack and prints a
# checklist: one line per check, PASS/FAIL/SKIP, its evidence and the time it took. It runs
# smoke-test.ps1 against BASE_URL (its job is the one job it submits), reads that job's row,
# its log lines (trace.ps1 --cloudwatch), the JobSucceeded metric, the alarms and both ECS services.
# Read-only apart from that job; --restart (opt-in) forces a new orchestrator deployment.
# Needs PowerShell 7.3+, python (python3 off Windows: runs deploymentcheck.py beside this script
# for the JSON) and the aws CLI.
# PowerShell port of verify-deployment.sh, function for function (each names its bash twin): same
# arguments, environment, output and exit codes. Change both together.
#Requires -Version 7.3

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# bash: none (verify-deployment.sh writes ${NAME:-DEFAULT}): an unset or empty variable gives the default.
function Get-EnvOrDefault([string]$Name, [string]$Default) {
  $value = [Environment]::GetEnvironmentVariable($Name)
  if ($value) { $value } else { $Default }
}

Set-Variable -Option Constant -Name PROG -Value (Split-Path -Leaf $PSCommandPath)
# Exit-WithError and Exit-WithUsageError: the error style every script here shares.
. (Join-Path $PSScriptRoot 'lib' 'errors.ps1')
Set-Variable -Option Constant -Name CHECKS -Value (Join-Path $PSScriptRoot 'deploymentcheck.py')
Set-Variable -Option Constant -Name DEFAULT_REGION -Value 'us-east-1'
Set-Variable -Option Constant -Name DEFAULT_WAIT_SECONDS -Value 180
Set-Variable -Option Constant -Name DEFAULT_INTERVAL_SECONDS -Value 10
Set-Variable -Option Constant -Name WINDOW_MINUTES -Value 15
Set-Variable -Option Constant -Name REQUEST_TIMEOUT_SECONDS -Value 10
Set-Variable -Option Constant -Name PYTHON -Value $(if ($IsWindows) { 'python' } else { 'python3' })
# The smoke test and the trace run as their own pwsh processes, as the bash script runs its twins.
Set-Variable -Option Constant -Name PWSH -Value (Get-Process -Id $PID).Path

# Settings (Read-Arguments and Resolve-Names fill in the rest).
$script:project = 'ghost-engine'
$script:environment = Get-EnvOrDefault 'ENVIRONMENT' 'dev'
$script:region = ''; $script:regionSource = ''
$script:cluster = Get-EnvOrDefault 'ECS_CLUSTER' ''
$script:table = Get-EnvOrDefault 'JOBS_TABLE_NAME' ''
$script:namespace = Get-EnvOrDefault 'METRICS_NAMESPACE' 'GhostEngine'
$script:services = @((Get-EnvOrDefault 'ORCHESTRATOR_SERVICE' 'orchestrator'), (Get-EnvOrDefault 'WORKER_SERVICE' 'worker'))
$script:groups = @((Get-EnvOrDefault 'ORCHESTRATOR_LOG_GROUP' ''), (Get-EnvOrDefault 'WORKER_LOG_GROUP' ''))
$script:waitSeconds = Get-EnvOrDefault 'VERIFY_WAIT_SECONDS' "$DEFAULT_WAIT_SECONDS"
$script:interval = Get-EnvOrDefault 'VERIFY_POLL_INTERVAL_SECONDS' "$DEFAULT_INTERVAL_SECONDS"
$script:restartTimeout = Get-EnvOrDefault 'DEPLOY_TIMEOUT_SECONDS' '600'
$script:expectedTag = Get-EnvOrDefault 'EXPECTED_IMAGE_TAG' ''
$script:restart = $false
$script:baseUrl = Get-EnvOrDefault 'BASE_URL' ''
# What the checks share: the smoke test's job and request id, the last result, the tallies.
$script:jobId = ''; $script:requestId = ''; $script:result = ''; $script:evidence = ''
$script:failed = @(); $script:passes = 0; $script:skips = 0
$script:workDir = ''

# bash: usage
function Get-Usage {
  @"
Usage: $PROG [options] BASE_URL

Checks every "Done means Done" of the four steps against a deployed stack and prints one line
per check (PASS, FAIL or SKIP, the evidence, the time it took), grouped by step:
  1. Kernel         /healthz; the smoke test against BASE_URL: its job accepted, /status
                    moving to done, the smoke test passing
  2. Persistence    the job's row in the table as /status shows it; --restart: see below
  3. Observability  the job's log lines in both log groups threaded by one request id
                    (the trace script, --cloudwatch); log retention; JobSucceeded in the last
                    $WINDOW_MINUTES min; the alarms
  4. Deploy         each service runs an image tagged with a 40-hex commit SHA, its PRIMARY
                    rollout COMPLETED with running = desired; /healthz still green
Read-only, apart from the smoke test's one job. Names default to the Terraform's.

  BASE_URL                the orchestrator's public URL, the ALB (env BASE_URL)
      --region NAME       AWS region (env AWS_REGION, AWS_DEFAULT_REGION, the region of
                          AWS_PROFILE's profile, else $DEFAULT_REGION); AWS_ENDPOINT_URL as usual
      --project NAME      first part of the default names (default ghost-engine)
      --environment NAME  last part of the default names and the metric's Environment
                          (env ENVIRONMENT, default dev)
      --cluster NAME      ECS cluster (env ECS_CLUSTER, default <project>-cluster-<environment>)
      --table NAME        jobs table (env JOBS_TABLE_NAME, default <project>-jobs-<environment>)
      --namespace NAME    metrics namespace (env METRICS_NAMESPACE, default GhostEngine)
      --expect-tag SHA    the image tag both services must run (env EXPECTED_IMAGE_TAG)
      --wait SECONDS      how long to wait for log lines and the metric to appear
                          (env VERIFY_WAIT_SECONDS, default $DEFAULT_WAIT_SECONDS), polling every
                          VERIFY_POLL_INTERVAL_SECONDS (default $DEFAULT_INTERVAL_SECONDS)
      --restart           DISRUPTIVE: force a new deployment of the orchestrator service, wait
                          until it is stable (env DEPLOY_TIMEOUT_SECONDS, default 600) and read
                          the job again through BASE_URL; without it that check is SKIP
  -h, --help              show this help
Services and log groups: env ORCHESTRATOR_SERVICE, WORKER_SERVICE (default orchestrator,
worker), ORCHESTRATOR_LOG_GROUP, WORKER_LOG_GROUP (default /ecs/<project>-<service>-<environment>).
The smoke test reads its own variables (SMOKE_TIMEOUT_SECONDS, ...).

Exit status: 0 no check failed; 1 a check failed; 2 bad usage.
"@
}

# bash: parse_args
function Read-Arguments([string[]]$Argv) {
  $haveUrl = $false
  for ($i = 0; $i -lt $Argv.Count; $i++) {
    $arg = $Argv[$i]
    switch -CaseSensitive -Regex ($arg) {
      '^(-h|--help)$' { Write-Output (Get-Usage); exit 0 }
      '^--restart$' { $script:restart = $true; break }
      '^--(region|project|environment|cluster|table|namespace|expect-tag|wait)$' {
        if ($i + 1 -ge $Argv.Count) { Exit-WithUsageError "$arg needs a value" }
        $value = $Argv[$i + 1]
        switch -CaseSensitive ($arg) {
          '--region' { $script:region = $value; $script:regionSource = '--region' }
          '--project' { $script:project = $value }
          '--environment' { $script:environment = $value }
          '--cluster' { $script:cluster = $value }
          '--table' { $script:table = $value }
          '--namespace' { $script:namespace = $value }
          '--expect-tag' { $script:expectedTag = $value }
          '--wait' { $script:waitSeconds = $value }
        }
        $i += 1; break }
      '^-.' { Exit-WithUsageError "unknown option: $arg" }
      default {
        if ($haveUrl) { Exit-WithUsageError "too many arguments: $arg" }
        $script:baseUrl = $arg; $haveUrl = $true }
    }
  }
  if (-not $script:baseUrl) { Exit-WithUsageError 'BASE_URL is required' }
  if ($script:baseUrl -cnotmatch '^https?://[^/]+') { Exit-WithUsageError "BASE_URL must start with http:// or https://, got '$($script:baseUrl)'" }
  if ($script:waitSeconds -cnotmatch '^[0-9]+$') { Exit-WithUsageError "--wait must be a whole number of seconds, got '$($script:waitSeconds)'" }
  if ($script:interval -cnotmatch '^[0-9]*\.?[0-9]+$') {
    Exit-WithUsageError "VERIFY_POLL_INTERVAL_SECONDS must be a number of seconds, got '$($script:interval)'"
  }
  if ($script:restartTimeout -cnotmatch '^[1-9][0-9]*$') {
    Exit-WithUsageError "DEPLOY_TIMEOUT_SECONDS must be a whole number of seconds > 0, got '$($script:restartTimeout)'"
  }
  if ($script:expectedTag -and $script:expectedTag -cnotmatch '^[0-9a-f]{40}$') {
    Exit-WithUsageError "--expect-tag must be a 40-hex commit SHA, got '$($script:expectedTag)'"
  }
  $script:baseUrl = $script:baseUrl.TrimEnd('/')
}

# bash: resolve_names. The region as the AWS SDKs resolve it (never overriding what the user set), then the names.
function Resolve-Names {
  if (-not $script:region) {
    if ($env:AWS_REGION) { $script:region = $env:AWS_REGION; $script:regionSource = 'AWS_REGION' }
    elseif ($env:AWS_DEFAULT_REGION) { $script:region = $env:AWS_DEFAULT_REGION; $script:regionSource = 'AWS_DEFAULT_REGION' }
    else {
      $fromProfile = & aws configure get region 2>$null
      if ($LASTEXITCODE -eq 0 -and $fromProfile) {
        $script:region = "$fromProfile".Trim(); $script:regionSource = "profile $(Get-EnvOrDefault 'AWS_PROFILE' 'default')"
      } else { $script:region = $DEFAULT_REGION; $script:regionSource = 'default' }
    }
  }
  if (-not $script:cluster) { $script:cluster = "$($script:project)-cluster-$($script:environment)" }
  if (-not $script:table) { $script:table = "$($script:project)-jobs-$($script:environment)" }
  if (-not $script:groups[0]) { $script:groups[0] = "/ecs/$($script:project)-orchestrator-$($script:environment)" }
  if (-not $script:groups[1]) { $script:groups[1] = "/ecs/$($script:project)-worker-$($script:environment)" }
}

# bash: aws_cli
function Invoke-AwsCli { & aws --region $script:region @args }

# bash: aws_to. Runs the AWS CLI with stdout to file $Out; on failure sets the check's FAIL evidence.
function Invoke-AwsTo([string]$Out, [string[]]$Arguments) {
  $errFile = Join-Path $script:workDir 'aws.err'
  Invoke-AwsCli @Arguments > $Out 2> $errFile
  if ($LASTEXITCODE -eq 0) { return $true }
  $script:result = 'FAIL'
  $last = @(Get-Content $errFile | Where-Object { $_.Trim() }) | Select-Object -Last 1
  $script:evidence = "aws $($Arguments[0]) $($Arguments[1]) failed: $last"
  return $false
}

# bash: judge. Runs deploymentcheck.py; its "RESULT<TAB>evidence" line becomes the check's result.
function Invoke-Judge([string]$InputFile, [string[]]$Arguments) {
  $line = if ($InputFile) { Get-Content -Raw $InputFile | & $PYTHON $CHECKS @Arguments } else { & $PYTHON $CHECKS @Arguments }
  if ($LASTEXITCODE -ne 0 -or -not $line) { $line = "FAIL`tdeploymentcheck.py failed" }
  $parts = "$line".Split("`t", 2)
  $script:result = $parts[0]
  $script:evidence = $parts[1]
}

# bash: now_ms
function Get-NowMs { [DateTimeOffset]::UtcNow.ToUnixTimeMilliseconds() }

# bash: report. Prints one checklist line and counts it.
function Write-Report([string]$Status, [string]$Name, [string]$Text, [long]$Ms) {
  Write-Output ('  {0,-4}  {1,-22} {2} ({3}.{4} s)' -f $Status, $Name, $Text, [math]::Floor($Ms / 1000), [math]::Floor(($Ms % 1000) / 100))
  switch ($Status) {
    'PASS' { $script:passes += 1 }
    'SKIP' { $script:skips += 1 }
    default { $script:failed += $Name }
  }
}

# bash: run_check. Runs check scriptblock $Check (with $Arguments) and reports it under $Name.
function Invoke-Check([string]$Name, [scriptblock]$Check, [object[]]$Arguments = @()) {
  $start = Get-NowMs
  $script:result = 'FAIL'; $script:evidence = ''
  $null = & $Check @Arguments
  Write-Report $script:result $Name $script:evidence ((Get-NowMs) - $start)
}

# bash: http_get. GET BASE_URL$Path (with the smoke test's request id, once there is one) into file $Out.
function Invoke-HttpGet([string]$Path, [string]$Out) {
  $rid = if ($script:requestId) { $script:requestId } else { 'verify' }
  try {
    $response = Invoke-WebRequest -Uri "$($script:baseUrl)$Path" -TimeoutSec $REQUEST_TIMEOUT_SECONDS `
      -Headers @{ 'Accept' = 'application/json'; 'X-Request-Id' = $rid } -SkipHttpErrorCheck
  } catch {
    Set-Content -Path (Join-Path $script:workDir 'curl.err') -Value $_.Exception.Message
    return $false
  }
  Set-Content -NoNewline -Path $Out -Value ("$($response.Content)`n$([int]$response.StatusCode)")
  return $true
}

# bash: check_health
function Test-Health {
  if (-not (Invoke-HttpGet '/healthz' (Join-Path $script:workDir 'health'))) {
    $script:evidence = "cannot reach $($script:baseUrl)/healthz: $(Get-Content (Join-Path $script:workDir 'curl.err') | Select-Object -Last 1)"
    return
  }
  Invoke-Judge (Join-Path $script:workDir 'health') @('health')
}

# bash: stamp_lines. Stamps each line of the pipeline with the milliseconds since $Start.
function Add-Stamp([long]$Start) {
  process { "$((Get-NowMs) - $Start) $_" }
}

# bash: run_smoke. Runs smoke-test.ps1 BASE_URL and reports three checks from what it printed.
function Invoke-Smoke {
  $out = Join-Path $script:workDir 'smoke.out'; $err = Join-Path $script:workDir 'smoke.err'
  $start = Get-NowMs
  & $PWSH -NoLogo -NoProfile -NonInteractive -File (Join-Path $PSScriptRoot 'smoke-test.ps1') $script:baseUrl 2> $err |
    Add-Stamp $start | Set-Content -Path $out
  $status = $LASTEXITCODE
  $lines = @(& $PYTHON $CHECKS smoke $out $err "$status")
  $script:jobId = $lines[0]
  $script:requestId = $lines[1]
  $names = @('job accepted', 'status to done', 'smoke test')
  for ($i = 0; $i -lt 3; $i++) {
    $parts = $lines[$i + 2].Split("`t", 3)
    Write-Report $parts[0] $names[$i] $parts[2] ([long]$parts[1])
  }
}

# bash: check_row
function Test-Row {
  if (-not $script:jobId) { $script:result = 'SKIP'; $script:evidence = 'no job: the smoke test submitted none'; return }
  $http = Join-Path $script:workDir 'status.http'; $status = Join-Path $script:workDir 'status.json'
  if (-not (Invoke-HttpGet "/status/$($script:jobId)" $http)) { $script:evidence = "cannot reach $($script:baseUrl)/status/$($script:jobId)"; return }
  Set-Content -Path $status -Value (@(Get-Content $http) | Select-Object -SkipLast 1)
  $row = Join-Path $script:workDir 'row.json'
  $key = "{`"jobId`": {`"S`": `"$($script:jobId)`"}}"
  if (-not (Invoke-AwsTo $row @('dynamodb', 'get-item', '--table-name', $script:table, '--consistent-read', '--output', 'json',
    '--key', $key))) { return }
  Invoke-Judge $row @('row', $script:table, $script:jobId, $status)
}

# bash: check_restart
function Test-Restart {
  if (-not $script:restart) {
    $script:result = 'SKIP'; $script:evidence = 'not requested (--restart forces a new orchestrator deployment)'
    return
  }
  $status = Join-Path $script:workDir 'status.json'
  if (-not (Test-Path $status) -or -not (Get-Content -Raw $status)) {
    $script:result = 'SKIP'; $script:evidence = 'no job read before the restart'; return
  }
  if (-not (Invoke-AwsTo ([IO.Path]::GetTempFileName()) @('ecs', 'update-service', '--cluster', $script:cluster, '--service',
    $script:services[0], '--force-new-deployment', '--query', 'service.serviceName', '--output', 'text'))) { return }
  $waiter = Start-Process -FilePath aws -NoNewWindow -PassThru -ArgumentList @('--region', $script:region, 'ecs', 'wait',
    'services-stable', '--cluster', $script:cluster, '--services', $script:services[0])
  if (-not $waiter.WaitForExit([int]$script:restartTimeout * 1000) -or $waiter.ExitCode -ne 0) {
    if (-not $waiter.HasExited) { $waiter.Kill() }
    $script:evidence = "$($script:services[0]) not stable within $($script:restartTimeout)s after the forced deployment"
    return
  }
  $http = Join-Path $script:workDir 'after.http'; $after = Join-Path $script:workDir 'after.json'
  if (-not (Invoke-HttpGet "/status/$($script:jobId)" $http)) { $script:evidence = "cannot reach $($script:baseUrl) after the restart"; return }
  Set-Content -Path $after -Value (@(Get-Content $http) | Select-Object -SkipLast 1)
  Invoke-Judge $after @('same-job', $script:jobId, $status)
}

# bash: check_logs. trace.ps1 --cloudwatch, polled until the job's lines are threaded or --wait runs out.
function Test-Logs {
  if (-not $script:jobId) { $script:result = 'SKIP'; $script:evidence = 'no job: the smoke test submitted none'; return }
  $deadline = (Get-NowMs) + [long]$script:waitSeconds * 1000
  $out = Join-Path $script:workDir 'trace.out'; $err = Join-Path $script:workDir 'trace.err'
  $saved = @($env:AWS_REGION, $env:ORCHESTRATOR_LOG_GROUP, $env:WORKER_LOG_GROUP)
  $env:AWS_REGION = $script:region; $env:ORCHESTRATOR_LOG_GROUP = $script:groups[0]; $env:WORKER_LOG_GROUP = $script:groups[1]
  try {
    while ($true) {
      $null | & $PWSH -NoLogo -NoProfile -NonInteractive -File (Join-Path $PSScriptRoot 'trace.ps1') --cloudwatch `
        --since $WINDOW_MINUTES $script:jobId > $out 2> $err
      Invoke-Judge $out @('threaded', $script:jobId, $script:requestId, $err)
      if ($script:result -eq 'PASS' -or (Get-NowMs) -ge $deadline) { return }
      Start-Sleep -Seconds ([double]$script:interval)
    }
  } finally {
    $env:AWS_REGION, $env:ORCHESTRATOR_LOG_GROUP, $env:WORKER_LOG_GROUP = $saved
  }
}

# bash: check_retention
function Test-Retention {
  $all = Join-Path $script:workDir 'groups.json'; $one = Join-Path $script:workDir 'group.json'
  Set-Content -Path $all -Value ''
  foreach ($group in $script:groups) {
    if (-not (Invoke-AwsTo $one @('logs', 'describe-log-groups', '--log-group-name-prefix', $group, '--output', 'json'))) { return }
    Get-Content -Raw $one | Add-Content -Path $all
  }
  Invoke-Judge $all (@('retention') + $script:groups)
}

# bash: check_metric. JobSucceeded (Sum) over the last WINDOW_MINUTES, polled until seen or --wait runs out.
function Test-Metric {
  $deadline = (Get-NowMs) + [long]$script:waitSeconds * 1000
  $out = Join-Path $script:workDir 'metric.json'
  while ($true) {
    $now = [DateTimeOffset]::UtcNow.ToUnixTimeSeconds()
    if (-not (Invoke-AwsTo $out @('cloudwatch', 'get-metric-statistics', '--namespace', $script:namespace,
      '--metric-name', 'JobSucceeded', '--dimensions', 'Name=Service,Value=orchestrator', "Name=Environment,Value=$($script:environment)",
      '--start-time', "$($now - $WINDOW_MINUTES * 60)", '--end-time', "$($now + 60)", '--period', '60', '--statistics', 'Sum',
      '--output', 'json'))) { return }
    Invoke-Judge $out @('metric', 'JobSucceeded', "$WINDOW_MINUTES",
      "$($script:namespace) Service=orchestrator Environment=$($script:environment)")
    if ($script:result -eq 'PASS' -or (Get-NowMs) -ge $deadline) { return }
    Start-Sleep -Seconds ([double]$script:interval)
  }
}

# bash: check_alarms
function Test-Alarms {
  $p = $script:project; $e = $script:environment
  $names = @("$p-alb-5xx-$e", "$p-job-failed-$e", "$p-orchestrator-running-tasks-$e", "$p-worker-running-tasks-$e")
  $out = Join-Path $script:workDir 'alarms.json'
  if (-not (Invoke-AwsTo $out (@('cloudwatch', 'describe-alarms', '--alarm-names') + $names + @('--output', 'json')))) { return }
  Invoke-Judge $out (@('alarms') + $names)
}

# bash: load_services. Both services in one describe-services call, shared by the image and rollout checks.
function Read-Services {
  $out = Join-Path $script:workDir 'services.json'
  if (-not (Invoke-AwsTo $out (@('ecs', 'describe-services', '--cluster', $script:cluster, '--services') + $script:services +
    @('--output', 'json')))) {
    Set-Content -Path (Join-Path $script:workDir 'services.err') -Value $script:evidence
  }
}

# bash: check_image
function Test-Image([string]$Service) {
  $servicesErr = Join-Path $script:workDir 'services.err'
  if (Test-Path $servicesErr) { $script:evidence = (Get-Content -Raw $servicesErr).Trim(); return }
  $arn = Get-Content -Raw (Join-Path $script:workDir 'services.json') | & $PYTHON $CHECKS task-definition $Service
  if (-not $arn) { $script:evidence = "service $Service not found in cluster $($script:cluster)"; return }
  $td = Join-Path $script:workDir 'td.json'
  if (-not (Invoke-AwsTo $td @('ecs', 'describe-task-definition', '--task-definition', "$arn".Trim(), '--output', 'json'))) { return }
  Invoke-Judge $td @('image', $Service, $script:expectedTag)
}

# bash: check_rollout
function Test-Rollout([string]$Service) {
  $servicesErr = Join-Path $script:workDir 'services.err'
  if (Test-Path $servicesErr) { $script:evidence = (Get-Content -Raw $servicesErr).Trim(); return }
  Invoke-Judge (Join-Path $script:workDir 'services.json') @('rollout', $Service)
}

# bash: main
function Invoke-Main([string[]]$Arguments) {
  Read-Arguments $Arguments
  if (-not (Get-Command aws -ErrorAction SilentlyContinue)) { Exit-WithError 'the aws CLI is not installed' }
  Resolve-Names
  $script:workDir = Join-Path ([IO.Path]::GetTempPath()) ([IO.Path]::GetRandomFileName())
  $null = New-Item -ItemType Directory -Path $script:workDir
  try {
    Write-Output ("Verifying $($script:baseUrl): region $($script:region) ($($script:regionSource)), cluster $($script:cluster)," +
      " services $($script:services -join ' '), table $($script:table)")
    Write-Output '1. Kernel'
    Invoke-Check 'healthz' ${function:Test-Health}
    Invoke-Smoke
    Write-Output '2. Persistence'
    Invoke-Check 'table row' ${function:Test-Row}
    Invoke-Check 'restart' ${function:Test-Restart}
    Write-Output '3. Observability'
    Invoke-Check 'logs threaded' ${function:Test-Logs}
    Invoke-Check 'log retention' ${function:Test-Retention}
    Invoke-Check 'metric JobSucceeded' ${function:Test-Metric}
    Invoke-Check 'alarms' ${function:Test-Alarms}
    Write-Output '4. Deploy'
    Read-Services
    foreach ($service in $script:services) { Invoke-Check "$service image" ${function:Test-Image} @($service) }
    foreach ($service in $script:services) { Invoke-Check "$service rollout" ${function:Test-Rollout} @($service) }
    Invoke-Check 'healthz after' ${function:Test-Health}
    Write-Output "$($script:passes) PASS, $($script:failed.Count) FAIL, $($script:skips) SKIP"
  } finally {
    Remove-Item -Recurse -Force $script:workDir
  }
  if ($script:failed.Count -gt 0) { Exit-WithError "$($script:failed.Count) check(s) failed: $($script:failed -join ', ')" }
}

Invoke-Main $args
