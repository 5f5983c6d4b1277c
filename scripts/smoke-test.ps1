#!/usr/bin/env pwsh
#
# Smoke test of a running Ghost Engine orchestrator: checks /healthz, submits one
# scene job, follows /status (one line per change of state or progress) and prints
# the result. Needs PowerShell 7 (Invoke-WebRequest -SkipHttpErrorCheck).
# Line-for-line port of scripts/smoke-test.sh (same arguments, environment variables,
# output and exit codes): change both together.
#Requires -Version 7.0

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

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
$script:requestId = ''
$script:jobId = ''
$script:statusUrl = ''
$script:httpStatus = ''
$script:httpBody = ''

function Get-Usage {
  $name = Split-Path -Leaf $PSCommandPath
  @"
Usage: $name [options] [BASE_URL]

Submits one scene job to the orchestrator at BASE_URL, follows it to the end and
prints the result.

  BASE_URL                orchestrator URL (env BASE_URL, default $DEFAULT_BASE_URL)
  -t, --timeout SECONDS   give up after this many whole seconds (env SMOKE_TIMEOUT_SECONDS,
                          default $DEFAULT_TIMEOUT_SECONDS)
  -i, --interval SECONDS  pause between polls of /status (env SMOKE_POLL_INTERVAL_SECONDS,
                          default $DEFAULT_INTERVAL_SECONDS)
  -p, --prompt TEXT       scene prompt (env PROMPT, default "a spooky hallway")
  -s, --seed N            integer seed (env SEED, default 123)
      --style NAME        style, empty to send none (env STYLE, default doom)
  -h, --help              show this help

Every request carries one generated X-Request-Id (printed first) to find the run in logs.
Exit status: 0 job done; 1 unreachable, job failed or timed out; 2 bad usage.
"@
}

function Stop-WithError([string]$Message) {
  [Console]::Error.WriteLine("error: $Message")
  exit 1
}

function Stop-WithUsageError([string]$Message) {
  [Console]::Error.WriteLine("error: $Message")
  [Console]::Error.WriteLine((Get-Usage))
  exit 2
}

function Read-Arguments([string[]]$Argv) {
  $haveUrl = $false
  $i = 0
  while ($i -lt $Argv.Count) {
    $arg = $Argv[$i]
    switch -CaseSensitive -Regex ($arg) {
      '^(-h|--help)$' { Write-Output (Get-Usage); exit 0 }
      '^(-t|--timeout|-i|--interval|-p|--prompt|-s|--seed|--style)$' {
        if ($i + 1 -ge $Argv.Count) { Stop-WithUsageError "$arg needs a value" }
        switch -CaseSensitive -Regex ($arg) {
          '^(-t|--timeout)$' { $script:timeout = $Argv[$i + 1] }
          '^(-i|--interval)$' { $script:interval = $Argv[$i + 1] }
          '^(-p|--prompt)$' { $script:prompt = $Argv[$i + 1] }
          '^(-s|--seed)$' { $script:seed = $Argv[$i + 1] }
          '^--style$' { $script:style = $Argv[$i + 1] }
        }
        $i += 2; break }
      '^-' { Stop-WithUsageError "unknown option: $arg" }
      default {
        if ($haveUrl) { Stop-WithUsageError "too many arguments: $arg" }
        $script:baseUrl = $arg; $haveUrl = $true; $i += 1 }
    }
  }
  if ($script:timeout -cnotmatch '^[1-9][0-9]*$') {
    Stop-WithUsageError "timeout must be a whole number of seconds > 0, got '$($script:timeout)'" }
  if ($script:interval -cnotmatch '^[0-9]*\.?[0-9]+$') {
    Stop-WithUsageError "interval must be a number of seconds, got '$($script:interval)'" }
  if ($script:seed -cnotmatch '^-?[0-9]+$') { Stop-WithUsageError "seed must be an integer, got '$($script:seed)'" }
  if (-not $script:prompt) { Stop-WithUsageError 'prompt must not be empty' }
  $script:baseUrl = $script:baseUrl.TrimEnd('/')
}

# Sends METHOD URL [JSON]; sets httpStatus and httpBody. Returns $false if nothing answered.
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

# The field at a dotted path of JSON: strings raw, null or absent as nothing, anything
# else as JSON (objects and lists indented).
function Get-JsonField([string]$Json, [string]$Path) {
  try { $value = ConvertFrom-Json -InputObject $Json } catch { Stop-WithError 'the server did not answer JSON' }
  foreach ($key in $Path.Split('.')) {
    $property = if ($value -is [pscustomobject]) { $value.PSObject.Properties[$key] } else { $null }
    $value = if ($property) { $property.Value } else { $null }
  }
  if ($value -is [string]) { return $value }
  if ($null -ne $value) { return (ConvertTo-Json -InputObject $value -Depth 64 -Compress:($value -isnot [pscustomobject] -and $value -isnot [array])) }
  return ''
}

function Test-Health {
  if (-not (Invoke-Http 'GET' "$($script:baseUrl)/healthz")) { Stop-WithError "cannot reach $($script:baseUrl)/healthz" }
  if ($script:httpStatus -ne '200') { Stop-WithError "GET /healthz answered HTTP $($script:httpStatus): $($script:httpBody)" }
  if ((Get-JsonField $script:httpBody 'ok') -ne 'true') { Stop-WithError "GET /healthz is not ok: $($script:httpBody)" }
  Write-Output 'healthz ok'
}

# Posts the job; sets jobId and statusUrl.
function Submit-Job {
  $body = [ordered]@{ prompt = $script:prompt; seed = [long]$script:seed }
  if ($script:style) { $body.style = $script:style }
  $data = ConvertTo-Json -InputObject $body -Compress
  if (-not (Invoke-Http 'POST' "$($script:baseUrl)/generate-scene" $data)) { Stop-WithError "cannot reach $($script:baseUrl)/generate-scene" }
  if ($script:httpStatus -ne '202') { Stop-WithError "POST /generate-scene answered HTTP $($script:httpStatus): $($script:httpBody)" }
  $script:jobId = Get-JsonField $script:httpBody 'jobId'
  $script:statusUrl = $script:baseUrl + (Get-JsonField $script:httpBody 'statusUrl')
  Write-Output "job $($script:jobId) submitted"
}

function Watch-Job {
  $start = [Diagnostics.Stopwatch]::StartNew()
  $last = ''
  while ($true) {
    if (-not (Invoke-Http 'GET' $script:statusUrl)) { Stop-WithError "cannot reach $($script:statusUrl)" }
    if ($script:httpStatus -ne '200') { Stop-WithError "GET $($script:statusUrl) answered HTTP $($script:httpStatus): $($script:httpBody)" }
    try { $null = ConvertFrom-Json -InputObject $script:httpBody } catch { Stop-WithError 'GET /status did not answer JSON' }
    $elapsed = $start.Elapsed.TotalSeconds.ToString('F1', $INVARIANT).PadLeft(5)
    $state = Get-JsonField $script:httpBody 'state'
    $percent = [int][math]::Round([double](Get-JsonField $script:httpBody 'progress') * 100)
    if ("$state $percent" -ne $last) {
      Write-Output ('[{0}s] {1,-8} {2,3}%' -f $elapsed, $state, $percent)
      $last = "$state $percent"
    }
    switch ($state) {
      'done' { Write-Output 'result:'; Write-Output (Get-JsonField $script:httpBody 'result'); return }
      'failed' { Stop-WithError "job $($script:jobId) failed: $(Get-JsonField $script:httpBody 'error')" }
    }
    if ([int]$elapsed.Trim().Split('.')[0] -ge [int]$script:timeout) {
      Stop-WithError "job $($script:jobId) not finished after $($script:timeout)s (last: $state $percent%)" }
    Start-Sleep -Milliseconds ([int]([double]::Parse($script:interval, $INVARIANT) * 1000))
  }
}

function Main([string[]]$Argv) {
  Read-Arguments $Argv
  $script:requestId = 'smoke-' + [guid]::NewGuid().ToString('N').Substring(0, 12)
  Write-Output "smoke test of $($script:baseUrl) (X-Request-Id: $($script:requestId))"
  Test-Health
  Submit-Job
  Watch-Job
  exit 0
}

Main $args
