#!/usr/bin/env pwsh
#
# Prints one job's timeline across both services (orchestrator and worker), one line per
# event sorted by timestamp, from JSON log lines in files, on stdin, or in CloudWatch Logs
# (AWS CLI filter-log-events on both log groups). Needs python (python3 off Windows);
# CloudWatch needs the aws CLI. PowerShell 7.3+: it passes "" and embedded quotes to
# native commands unchanged.
# Line-for-line port of scripts/trace.sh (same arguments, environment variables, output
# and exit codes, and the same embedded Python program): change both together.
#Requires -Version 7.3

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

Set-Variable -Option Constant -Name DEFAULT_SINCE_MINUTES -Value 60
Set-Variable -Option Constant -Name DEFAULT_PAGE_SIZE -Value 1000
Set-Variable -Option Constant -Name ORCHESTRATOR_GROUP -Value $(if ($env:ORCHESTRATOR_LOG_GROUP) { $env:ORCHESTRATOR_LOG_GROUP } else { '/ecs/ghost-engine-orchestrator-dev' })
Set-Variable -Option Constant -Name WORKER_GROUP -Value $(if ($env:WORKER_LOG_GROUP) { $env:WORKER_LOG_GROUP } else { '/ecs/ghost-engine-worker-dev' })
Set-Variable -Option Constant -Name REGION -Value $(if ($env:AWS_REGION) { $env:AWS_REGION } else { 'us-east-1' })
# Ids go into CloudWatch filter patterns as quoted terms: the request-id alphabet, no quotes.
Set-Variable -Option Constant -Name ID_PATTERN -Value '^[A-Za-z0-9._:;=/+-]+$'
Set-Variable -Option Constant -Name PYTHON -Value $(if ($IsWindows) { 'python' } else { 'python3' })
# The JSON work. "request-ids JOB_ID": the request ids of the job's lines on stdin.
# "timeline JOB_ID LABEL SOURCE...": the job's lines from files ('-' is stdin), rendered.
# Kept free of double quotes so PowerShell passes it to python3 -c unchanged.
Set-Variable -Option Constant -Name PROGRAM -Value @'
import json, os, re, sys

HIDDEN = ('timestamp', 'level', 'service', 'message', 'jobId', '_aws', 'error')
SAFE_ID = re.compile(r'^[A-Za-z0-9._:;=/+-]+$')


def read_lines(source):
    if source == '-':
        return sys.stdin.readlines()
    try:
        with open(source, encoding='utf-8', errors='replace') as stream:
            return stream.readlines()
    except OSError as exc:
        print(f'error: cannot read {source}: {exc.strerror}', file=sys.stderr)
        sys.exit(2)


def documents(sources):
    '''Each distinct JSON object line of the sources, in input order.'''
    seen, docs = set(), []
    for raw in (line.strip() for source in sources for line in read_lines(source)):
        if raw.startswith('{') and raw not in seen:
            seen.add(raw)
            try:
                docs.append(json.loads(raw))
            except ValueError:
                pass
    return [doc for doc in docs if isinstance(doc, dict)]


def request_ids(docs, job_id):
    return {d['requestId'] for d in docs if d.get('jobId') == job_id and isinstance(d.get('requestId'), str)}


def belongs(doc, job_id, rids):
    '''A line with the job id, or one without a job id that shares a request id with those.'''
    if 'jobId' in doc:
        return doc['jobId'] == job_id
    return isinstance(doc.get('requestId'), str) and doc['requestId'] in rids


def show(value):
    if isinstance(value, str) and value and not re.search(r'[\s\x22]', value):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(',', ':'))


def render(doc):
    head = [str(doc.get(key, '-')) for key in ('timestamp', 'service', 'level', 'message')]
    line = f'{head[0]} {head[1]:<12} {head[2]:<7} {head[3]}'
    fields = [f'{key}={show(value)}' for key, value in doc.items() if key not in HIDDEN]
    if fields:
        line += '  ' + ' '.join(fields)
    error = doc.get('error')
    if isinstance(error, dict):
        kind, text = (str(error.get(key, '?')) for key in ('type', 'message'))
        line += '  error=' + kind + ': ' + ' '.join(text.splitlines())
        if doc.get('level') == 'ERROR':
            line += ''.join('\n    ' + row for row in str(error.get('stack', '')).splitlines())
    elif error is not None:
        line += '  error=' + show(error)
    return line


def main(mode, job_id, label='', *sources):
    sys.stdin.reconfigure(encoding='utf-8', errors='replace')
    sys.stdout.reconfigure(errors='replace')
    docs = documents(sources or ['-'])
    rids = request_ids(docs, job_id)
    if mode == 'request-ids':
        print('\n'.join(sorted(rid for rid in rids if SAFE_ID.match(rid))))
        return 0
    lines = sorted((d for d in docs if belongs(d, job_id, rids)), key=lambda d: str(d.get('timestamp', '')))
    if not lines:
        where = label or ', '.join('stdin' if s == '-' else s for s in sources)
        print(f'error: no log lines for job {job_id} in {where}', file=sys.stderr)
        return 1
    for doc in lines:
        print(render(doc))
    return 0


try:
    sys.exit(main(*sys.argv[1:]))
except BrokenPipeError:  # the reader stopped early (| head): not an error
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
'@

function Get-Usage {
  $name = Split-Path -Leaf $PSCommandPath
  @"
Usage: $name [options] JOB_ID [LOG_FILE...]

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
                       env AWS_REGION, default us-east-1; AWS_ENDPOINT_URL etc. as usual)
  --since MINUTES      CloudWatch: search the last MINUTES minutes (default $DEFAULT_SINCE_MINUTES)
  --page-size N        CloudWatch: events per filter-log-events call, 1-10000 (default $DEFAULT_PAGE_SIZE)
  -h, --help           show this help

Exit status: 0 lines found; 1 no lines found or the AWS CLI failed; 2 bad usage.
"@
}

function Stop-WithUsageError([string]$Message) {
  [Console]::Error.WriteLine("error: $Message")
  [Console]::Error.WriteLine((Get-Usage))
  exit 2
}

# Prints the message of every event in both log groups that contains TERM, one a line.
function Get-TermLines([string]$Term, [long]$StartMs, [long]$PageSize) {
  foreach ($group in @($ORCHESTRATOR_GROUP, $WORKER_GROUP)) {
    & aws logs filter-log-events --region $REGION --log-group-name $group `
      --start-time $StartMs --filter-pattern "`"$Term`"" --page-size $PageSize `
      --query 'events[].[message]' --output text
    if ($LASTEXITCODE -ne 0) {
      [Console]::Error.WriteLine("error: aws logs filter-log-events failed on $group")
      exit 1
    }
  }
}

# The job's lines in CloudWatch: those containing the job id, then those containing one
# of their request ids (lines threaded by request id need not carry the job id).
function Read-CloudWatch([string]$JobId, [long]$Since, [long]$PageSize) {
  if (-not (Get-Command aws -ErrorAction SilentlyContinue)) { [Console]::Error.WriteLine('error: the aws CLI is not installed'); exit 1 }
  $startMs = ([DateTimeOffset]::UtcNow.ToUnixTimeSeconds() - $Since * 60) * 1000
  $lines = @(Get-TermLines $JobId $startMs $PageSize)
  $rids = @($lines | & $PYTHON -c $PROGRAM request-ids $JobId)
  foreach ($rid in $rids) {
    if (-not $rid) { continue }
    $lines += @(Get-TermLines $rid $startMs $PageSize)
  }
  $lines | & $PYTHON -c $PROGRAM timeline $JobId `
    "CloudWatch Logs $ORCHESTRATOR_GROUP, $WORKER_GROUP (last $Since min)" -
  exit $LASTEXITCODE
}

function Main([string[]]$Argv, [object[]]$Piped) {
  $jobId = ''; $cloudWatch = $false; [long]$since = $DEFAULT_SINCE_MINUTES; [long]$pageSize = $DEFAULT_PAGE_SIZE
  $files = @()
  for ($i = 0; $i -lt $Argv.Count; $i++) {
    $arg = $Argv[$i]
    switch -CaseSensitive -Regex ($arg) {
      '^(-h|--help)$' { Write-Output (Get-Usage); exit 0 }
      '^--cloudwatch$' { $cloudWatch = $true; break }
      '^(--since|--page-size)$' {
        if ($i + 1 -ge $Argv.Count) { Stop-WithUsageError "$arg needs a value" }
        if ($Argv[$i + 1] -cnotmatch '^[1-9][0-9]*$') { Stop-WithUsageError "$arg must be a whole number > 0, got '$($Argv[$i + 1])'" }
        if ($arg -ceq '--since') { $since = $Argv[$i + 1] } else { $pageSize = $Argv[$i + 1] }
        $i += 1; break }
      '^-.' { Stop-WithUsageError "unknown option: $arg" }
      default { if (-not $jobId) { $jobId = $arg } else { $files += $arg } }
    }
  }
  if (-not $jobId) { Stop-WithUsageError 'JOB_ID is required' }
  if ($jobId -cnotmatch $ID_PATTERN) { Stop-WithUsageError "JOB_ID may hold only A-Z a-z 0-9 . _ : ; = / + -, got '$jobId'" }
  if ($pageSize -gt 10000) { Stop-WithUsageError "--page-size must be at most 10000, got '$pageSize'" }
  if ($cloudWatch -and $files.Count -gt 0) {
    Stop-WithUsageError "--cloudwatch reads no LOG_FILE, got '$($files[0])'"
  }
  if (-not $cloudWatch -and $files.Count -eq 0) {
    if (-not [Console]::IsInputRedirected -and $Piped.Count -eq 0) { $cloudWatch = $true } else { $files = @('-') }
  }
  if ($cloudWatch) {
    Read-CloudWatch $jobId $since $pageSize
  } else {
    # Lines piped to the script, or else the console's stdin, feed '-'.
    $stdin = if ($Piped.Count -gt 0) { $Piped } elseif ($files -contains '-') { [Console]::In.ReadToEnd() -split "`r?`n" } else { @() }
    $stdin | & $PYTHON -c $PROGRAM timeline $jobId '' @files
    exit $LASTEXITCODE
  }
}

Main $args @($input)
