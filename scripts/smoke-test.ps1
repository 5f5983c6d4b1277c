#!/usr/bin/env pwsh
#
# Smoke test of a running Ghost Engine orchestrator: checks /healthz, submits one
# scene job, follows /status (one line per change of state or progress) and ends with one
# line, PASS or FAIL, with the job id and how long it took (the result's JSON with --verbose).
# Needs PowerShell 7 (Invoke-WebRequest -SkipHttpErrorCheck).
# Line-for-line port of scripts/smoke-test.sh (same arguments, environment variables,
# output and exit codes; each function names its bash twin): change both together.
#Requires -Version 7.0

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
# Invoke-WebRequest would otherwise draw a progress bar for every request.
$ProgressPreference = 'SilentlyContinue'

Set-Variable -Option Constant -Name PROG -Value (Split-Path -Leaf $PSCommandPath)
# Exit-WithError and Exit-WithUsageError: the error style every script here shares.
. (Join-Path $PSScriptRoot 'lib' 'errors.ps1')
Set-Variable -Option Constant -Name DEFAULT_BASE_URL -Value 'http://localhost:8080'
Set-Variable -Option Constant -Name DEFAULT_TIMEOUT_SECONDS -Value '120'
Set-Variable -Option Constant -Name DEFAULT_INTERVAL_SECONDS -Value '0.5'
Set-Variable -Option Constant -Name REQUEST_TIMEOUT_SECONDS -Value 10
Set-Variable -Option Constant -Name INVARIANT -Value ([Globalization.CultureInfo]::InvariantCulture)

# Settings (Read-Arguments may override them) and the state the steps share.
$script:baseUrl = if ($env:BASE_URL) { $env:BASE_URL } else { $DEFAULT_BASE_URL }
$script:timeout = if ($env:SMOKE_TIMEOUT_SECONDS) { $env:SMOKE_TIMEOUT_SECONDS } else { $DEFAULT_TIMEOUT_SECONDS }
$script:interval = if ($env:SMOKE_POLL_INTERVAL_SECONDS) { $env:SMOKE_POLL_INTERVAL_SECONDS } else { $DEFAULT_INTERVAL_SECONDS }
$script:prompt = if ($env:PROMPT) { $env:PROMPT } else { 'a spooky hallway' }
$script:seed = if ($env:SEED) { $env:SEED } else { '123' }
$script:style = if ($null -ne $env:STYLE) { $env:STYLE } else { 'doom' }
$script:output = 'normal'  # quiet: progress and the final line only; verbose: also the result's JSON
$script:requestId = ''
$script:jobId = ''
$script:statusUrl = ''
$script:httpStatus = ''
$script:httpBody = ''
$script:clock = [Diagnostics.Stopwatch]::StartNew()  # the run's start, then the job's submission

# bash: usage
function Get-Usage {
  @"
Usage: $PROG [options] [BASE_URL]

Submits one scene job to the orchestrator at BASE_URL and follows it to the end. The
last line is "PASS job <id> in <seconds>s", or "FAIL [job <id>] in <seconds>s: <why>"
(the error is also on stderr).

  BASE_URL                orchestrator URL (env BASE_URL, default $DEFAULT_BASE_URL)
  -t, --timeout SECONDS   give up after this many whole seconds (env SMOKE_TIMEOUT_SECONDS,
                          default $DEFAULT_TIMEOUT_SECONDS)
  -i, --interval SECONDS  pause between polls of /status (env SMOKE_POLL_INTERVAL_SECONDS,
                          default $DEFAULT_INTERVAL_SECONDS)
  -p, --prompt TEXT       scene prompt (env PROMPT, default "a spooky hallway")
  -s, --seed N            integer seed (env SEED, default 123)
      --style NAME        style, empty to send none (env STYLE, default doom)
  -q, --quiet             print only the progress lines and the last line
  -v, --verbose           also print the result's JSON before the last line
  -h, --help              show this help

Every request carries one generated X-Request-Id (printed first unless --quiet) to find the
run in logs.
Exit status: 0 job done; 1 unreachable, job failed or timed out; 2 bad usage.
"@
}

# bash: parse_args
function Read-Arguments([string[]]$Argv) {
  $haveUrl = $false
  $i = 0
  while ($i -lt $Argv.Count) {
    $arg = $Argv[$i]
    switch -CaseSensitive -Regex ($arg) {
      '^(-h|--help)$' { Write-Output (Get-Usage); exit 0 }
      '^(-q|--quiet)$' { $script:output = 'quiet'; $i += 1; break }
      '^(-v|--verbose)$' { $script:output = 'verbose'; $i += 1; break }
      '^(-t|--timeout|-i|--interval|-p|--prompt|-s|--seed|--style)$' {
        if ($i + 1 -ge $Argv.Count) { Exit-WithUsageError "$arg needs a value" }
        switch -CaseSensitive -Regex ($arg) {
          '^(-t|--timeout)$' { $script:timeout = $Argv[$i + 1] }
          '^(-i|--interval)$' { $script:interval = $Argv[$i + 1] }
          '^(-p|--prompt)$' { $script:prompt = $Argv[$i + 1] }
          '^(-s|--seed)$' { $script:seed = $Argv[$i + 1] }
          '^--style$' { $script:style = $Argv[$i + 1] }
        }
        $i += 2; break }
      '^-' { Exit-WithUsageError "unknown option: $arg" }
      default {
        if ($haveUrl) { Exit-WithUsageError "too many arguments: $arg" }
        $script:baseUrl = $arg; $haveUrl = $true; $i += 1 }
    }
  }
  if ($script:timeout -cnotmatch '^[1-9][0-9]*$') {
    Exit-WithUsageError "timeout must be a whole number of seconds > 0, got '$($script:timeout)'" }
  if ($script:interval -cnotmatch '^[0-9]*\.?[0-9]+$') {
    Exit-WithUsageError "interval must be a number of seconds, got '$($script:interval)'" }
  if ($script:seed -cnotmatch '^-?[0-9]+$') { Exit-WithUsageError "seed must be an integer, got '$($script:seed)'" }
  if (-not $script:prompt) { Exit-WithUsageError 'prompt must not be empty' }
  $script:baseUrl = $script:baseUrl -creplace '/$', ''
}

# bash: http. Sends METHOD URL [JSON]; sets httpStatus and httpBody. Returns $false if nothing answered.
function Invoke-Http([string]$Method, [string]$Url, [string]$Data = '') {
  $request = @{ Method = $Method; Uri = $Url; TimeoutSec = $REQUEST_TIMEOUT_SECONDS; SkipHttpErrorCheck = $true
    Headers = @{ 'X-Request-Id' = $script:requestId; 'Accept' = 'application/json' } }
  if ($Data) {
    $request.ContentType = 'application/json'; $request.Body = [Text.Encoding]::UTF8.GetBytes($Data)
  }
  try { $response = Invoke-WebRequest @request } catch { [Console]::Error.WriteLine($_.Exception.Message); return $false }
  $script:httpStatus = [string][int]$response.StatusCode
  $script:httpBody = [string]$response.Content
  return $true
}

# bash: json_get. The field at a dotted path of JSON: strings raw, null or absent as nothing,
# anything else as JSON (objects and lists indented).
function Get-JsonField([string]$Json, [string]$Path) {
  try { $value = ConvertFrom-Json -InputObject $Json } catch { Exit-WithFailure 'the server did not answer JSON' }
  foreach ($key in $Path.Split('.')) {
    $property = if ($value -is [pscustomobject]) { $value.PSObject.Properties[$key] } else { $null }
    $value = if ($property) { $property.Value } else { $null }
  }
  if ($value -is [string]) { return $value }
  if ($null -ne $value) { return (ConvertTo-Json -InputObject $value -Depth 64 -Compress:($value -isnot [pscustomobject] -and $value -isnot [array])) }
  return ''
}

# bash: say. Print $Line unless --quiet.
function Write-Message([string]$Line) {
  if ($script:output -ne 'quiet') { Write-Output $Line }
}

# bash: elapsed. Seconds since the clock started, to a tenth ("2.3").
function Get-Elapsed {
  ([math]::Floor($script:clock.Elapsed.TotalSeconds * 10) / 10).ToString('F1', $INVARIANT)
}

# bash: fail. The last line, FAIL, on stdout (the console's, even from inside a captured call), then
# the error on stderr; exit 1.
function Exit-WithFailure([string]$Message) {
  [Console]::Out.WriteLine("FAIL$(if ($script:jobId) { " job $($script:jobId)" }) in $(Get-Elapsed)s: $Message")
  Exit-WithError $Message
}

# bash: new_request_id. A random smoke-<12 hex digits> id for the X-Request-Id header.
function New-RequestId {
  'smoke-' + [guid]::NewGuid().ToString('N').Substring(0, 12)
}

# bash: check_health
function Assert-Health {
  if (-not (Invoke-Http 'GET' "$($script:baseUrl)/healthz")) { Exit-WithFailure "cannot reach $($script:baseUrl)/healthz" }
  if ($script:httpStatus -ne '200') { Exit-WithFailure "GET /healthz answered HTTP $($script:httpStatus): $($script:httpBody)" }
  $ok = Get-JsonField $script:httpBody 'ok'
  if ($ok -ne 'true') { Exit-WithFailure "GET /healthz is not ok: $($script:httpBody)" }
  Write-Message 'healthz ok'
}

# bash: submit_job. Posts the job; sets jobId and statusUrl. The seed goes into the body as the
# digits of the integer it is, whatever its size (as the bash script's Python does): the server,
# not this script, refuses one past 64 bits.
function Submit-Job {
  $seedDigits = [Numerics.BigInteger]::Parse($script:seed, $INVARIANT).ToString($INVARIANT)
  $fields = @("`"prompt`":$(ConvertTo-Json -InputObject $script:prompt -Compress)", "`"seed`":$seedDigits")
  if ($script:style) { $fields += "`"style`":$(ConvertTo-Json -InputObject $script:style -Compress)" }
  $data = '{' + ($fields -join ',') + '}'
  if (-not (Invoke-Http 'POST' "$($script:baseUrl)/generate-scene" $data)) { Exit-WithFailure "cannot reach $($script:baseUrl)/generate-scene" }
  if ($script:httpStatus -ne '202') { Exit-WithFailure "POST /generate-scene answered HTTP $($script:httpStatus): $($script:httpBody)" }
  $script:clock.Restart()
  $script:jobId = Get-JsonField $script:httpBody 'jobId'
  $script:statusUrl = $script:baseUrl + (Get-JsonField $script:httpBody 'statusUrl')
  Write-Message "job $($script:jobId) submitted"
}

# bash: follow_job
function Watch-Job {
  $last = ''
  while ($true) {
    if (-not (Invoke-Http 'GET' $script:statusUrl)) { Exit-WithFailure "cannot reach $($script:statusUrl)" }
    if ($script:httpStatus -ne '200') { Exit-WithFailure "GET $($script:statusUrl) answered HTTP $($script:httpStatus): $($script:httpBody)" }
    try { $null = ConvertFrom-Json -InputObject $script:httpBody } catch { Exit-WithFailure 'GET /status did not answer JSON' }
    $state = Get-JsonField $script:httpBody 'state'
    $percent = [int][math]::Round([double](Get-JsonField $script:httpBody 'progress') * 100)
    $seconds = Get-Elapsed
    if ("$state $percent" -ne $last) {
      Write-Output ('[{0,5}s] {1,-8} {2,3}%' -f $seconds, $state, $percent)
      $last = "$state $percent"
    }
    switch ($state) {
      'done' {
        if ($script:output -eq 'verbose') { Write-Output 'result:'; Write-Output (Get-JsonField $script:httpBody 'result') }
        Write-Output "PASS job $($script:jobId) in $(Get-Elapsed)s"
        return }
      'failed' { Exit-WithFailure "job $($script:jobId) failed: $(Get-JsonField $script:httpBody 'error')" }
    }
    if ([math]::Floor([double]::Parse($seconds, $INVARIANT)) -ge [int]$script:timeout) {
      Exit-WithFailure "job $($script:jobId) not finished after $($script:timeout)s (last: $state $percent%)" }
    Start-Sleep -Milliseconds ([int]([double]::Parse($script:interval, $INVARIANT) * 1000))
  }
}

# bash: main
function Invoke-Main([string[]]$Arguments) {
  Read-Arguments $Arguments
  $script:clock.Restart()
  $script:requestId = New-RequestId
  Write-Message "smoke test of $($script:baseUrl) (X-Request-Id: $($script:requestId))"
  Assert-Health
  Submit-Job
  Watch-Job
  exit 0
}

Invoke-Main $args
