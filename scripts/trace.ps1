#!/usr/bin/env pwsh
#
# Prints one job's timeline across both services (orchestrator and worker), one line per
# event sorted by timestamp, from JSON log lines in files, on stdin, or in CloudWatch Logs
# (AWS CLI filter-log-events on both log groups), after saying on stderr which source it reads.
# Needs python (python3 off Windows); CloudWatch needs the aws CLI (AWS settings as every tool
# here: lib/aws.ps1). PowerShell 7.3+: it passes "" and embedded quotes to native commands unchanged.
# Line-for-line port of scripts/trace.sh (same arguments, environment variables, output
# and exit codes; both run jobtimeline.py; each function names its bash twin): change both together.
#Requires -Version 7.3

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

Set-Variable -Option Constant -Name PROG -Value (Split-Path -Leaf $PSCommandPath)
# Exit-WithError and Exit-WithUsageError: the error style every script here shares.
. (Join-Path $PSScriptRoot 'lib' 'errors.ps1')
# Resolve-AwsRegion and Get-AwsTarget (README "AWS settings"): CloudWatch only.
. (Join-Path $PSScriptRoot 'lib' 'aws.ps1')
Set-Variable -Option Constant -Name DEFAULT_SINCE_MINUTES -Value 60
Set-Variable -Option Constant -Name DEFAULT_PAGE_SIZE -Value 1000
Set-Variable -Option Constant -Name ORCHESTRATOR_GROUP -Value $(if ($env:ORCHESTRATOR_LOG_GROUP) { $env:ORCHESTRATOR_LOG_GROUP } else { '/ecs/ghost-engine-orchestrator-dev' })
Set-Variable -Option Constant -Name WORKER_GROUP -Value $(if ($env:WORKER_LOG_GROUP) { $env:WORKER_LOG_GROUP } else { '/ecs/ghost-engine-worker-dev' })
# Ids go into CloudWatch filter patterns as quoted terms: the request-id alphabet, no quotes.
Set-Variable -Option Constant -Name ID_PATTERN -Value '^[A-Za-z0-9._:;=/+-]+$'
Set-Variable -Option Constant -Name PYTHON -Value $(if ($IsWindows) { 'python' } else { 'python3' })
# The JSON work (matching, sorting, rendering) is in jobtimeline.py beside this script.
Set-Variable -Option Constant -Name TIMELINE -Value (Join-Path $PSScriptRoot 'jobtimeline.py')

# bash: usage
function Get-Usage {
  @"
Usage: $PROG [options] JOB_ID [LOG_FILE...]

Prints one job's timeline across both services, one line per event sorted by timestamp:
the lines whose jobId is JOB_ID, and the lines without a jobId that share a requestId
with them. Each line: timestamp, service, level, message, the other fields as key=value
(EMF metric values shown, the _aws directives not), the error's type and message, and
under an ERROR line its stack.

Sources:
  LOG_FILE...          JSON lines of either service, mixed freely; '-' reads stdin;
                       lines that are not JSON are ignored
  (none)               stdin when it is not a terminal, else CloudWatch Logs
  --cloudwatch         CloudWatch Logs: aws logs filter-log-events on both log groups
                       (env ORCHESTRATOR_LOG_GROUP, default /ecs/ghost-engine-orchestrator-dev;
                       env WORKER_LOG_GROUP, default /ecs/ghost-engine-worker-dev;
                       env AWS_REGION, else AWS_DEFAULT_REGION, else AWS_PROFILE's region,
                       else us-east-1; AWS_ENDPOINT_URL etc. as usual: README "AWS settings")
  --since MINUTES      CloudWatch: search the last MINUTES minutes (default $DEFAULT_SINCE_MINUTES)
  --page-size N        CloudWatch: events per filter-log-events call, 1-10000 (default $DEFAULT_PAGE_SIZE)
  -h, --help           show this help

Before reading, one line on stderr names the source: the files (or stdin), or the log groups,
region and time range.
Exit status: 0 lines found; 1 no lines found or the AWS CLI failed; 2 bad usage.
"@
}

# bash: fetch_term. Prints the message of every event in both log groups that contains TERM, one a line.
function Get-TermLines([string]$Term, [long]$StartMs, [long]$PageSize) {
  foreach ($group in @($ORCHESTRATOR_GROUP, $WORKER_GROUP)) {
    & aws logs filter-log-events --log-group-name $group `
      --start-time $StartMs --filter-pattern "`"$Term`"" --page-size $PageSize `
      --query 'events[].[message]' --output text
    if ($LASTEXITCODE -ne 0) { Exit-WithError "aws logs filter-log-events failed on $group" }
  }
}

# bash: from_cloudwatch. The job's lines in CloudWatch: those containing the job id, then those
# containing one of their request ids (lines threaded by request id need not carry the job id).
function Write-CloudWatchTimeline([string]$JobId, [long]$Since, [long]$PageSize) {
  if (-not (Get-Command aws -ErrorAction SilentlyContinue)) { Exit-WithError 'the aws CLI is not installed' }
  Resolve-AwsRegion
  $startS = [DateTimeOffset]::UtcNow.ToUnixTimeSeconds() - $Since * 60
  $startMs = $startS * 1000
  $startIso = [DateTimeOffset]::FromUnixTimeSeconds($startS).UtcDateTime.ToString('yyyy-MM-ddTHH:mm:ssZ', [Globalization.CultureInfo]::InvariantCulture)
  [Console]::Error.WriteLine("${PROG}: reading CloudWatch Logs $ORCHESTRATOR_GROUP, $WORKER_GROUP in $(Get-AwsTarget 'LOGS'), $startIso to now (last $Since min)")
  $lines = @(Get-TermLines $JobId $startMs $PageSize)
  $rids = @($lines | & $PYTHON $TIMELINE --prog $PROG request-ids $JobId)
  foreach ($rid in $rids) {
    if (-not $rid) { continue }
    $lines += @(Get-TermLines $rid $startMs $PageSize)
  }
  $lines | & $PYTHON $TIMELINE --prog $PROG timeline $JobId `
    "CloudWatch Logs $ORCHESTRATOR_GROUP, $WORKER_GROUP (last $Since min)" '-'
  exit $LASTEXITCODE
}

# bash: announce_files. Say on stderr which files the timeline is read from ('-' is stdin).
function Write-Sources([string[]]$Files) {
  $names = @($Files | ForEach-Object { if ($_ -ceq '-') { 'stdin' } else { $_ } })
  [Console]::Error.WriteLine("${PROG}: reading $($names -join ', ')")
}

# bash: main. Lines piped to the script arrive as $Piped (pwsh reads a redirected stdin into $input).
function Invoke-Main([string[]]$Argv, [object[]]$Piped) {
  $jobId = ''; $cloudWatch = $false; [long]$since = $DEFAULT_SINCE_MINUTES; [long]$pageSize = $DEFAULT_PAGE_SIZE
  $files = @()
  for ($i = 0; $i -lt $Argv.Count; $i++) {
    $arg = $Argv[$i]
    switch -CaseSensitive -Regex ($arg) {
      '^(-h|--help)$' { Write-Output (Get-Usage); exit 0 }
      '^--cloudwatch$' { $cloudWatch = $true; break }
      '^(--since|--page-size)$' {
        if ($i + 1 -ge $Argv.Count) { Exit-WithUsageError "$arg needs a value" }
        if ($Argv[$i + 1] -cnotmatch '^[1-9][0-9]*$') { Exit-WithUsageError "$arg must be a whole number > 0, got '$($Argv[$i + 1])'" }
        if ($arg -ceq '--since') { $since = $Argv[$i + 1] } else { $pageSize = $Argv[$i + 1] }
        $i += 1; break }
      '^-.' { Exit-WithUsageError "unknown option: $arg" }
      default { if (-not $jobId) { $jobId = $arg } else { $files += $arg } }
    }
  }
  if (-not $jobId) { Exit-WithUsageError 'JOB_ID is required' }
  if ($jobId -cnotmatch $ID_PATTERN) { Exit-WithUsageError "JOB_ID may hold only A-Z a-z 0-9 . _ : ; = / + -, got '$jobId'" }
  if ($pageSize -gt 10000) { Exit-WithUsageError "--page-size must be at most 10000, got '$pageSize'" }
  if ($cloudWatch -and $files.Count -gt 0) {
    Exit-WithUsageError "--cloudwatch reads no LOG_FILE, got '$($files[0])'"
  }
  if (-not $cloudWatch -and $files.Count -eq 0) {
    if (-not [Console]::IsInputRedirected -and $Piped.Count -eq 0) { $cloudWatch = $true } else { $files = @('-') }
  }
  if ($cloudWatch) {
    Write-CloudWatchTimeline $jobId $since $pageSize
  } else {
    Write-Sources $files
    # Lines piped to the script, or else the console's stdin, feed '-'.
    $stdin = if ($Piped.Count -gt 0) { $Piped } elseif ($files -contains '-') { [Console]::In.ReadToEnd() -split "`r?`n" } else { @() }
    $stdin | & $PYTHON $TIMELINE --prog $PROG timeline $jobId '' @files
    exit $LASTEXITCODE
  }
}

Invoke-Main $args @($input)
