#!/usr/bin/env bash
#
# Smoke test of a running Ghost Engine orchestrator: checks /healthz, submits one
# scene job, follows /status (one line per change of state or progress) and ends with one
# line, PASS or FAIL, with the job id and how long it took (the result's JSON with --verbose).
# Needs bash 5 ($EPOCHREALTIME), curl, od, and python3 for the JSON only (it builds the request
# body and reads the answers; jq is not assumed).
# scripts/smoke-test.ps1 is a line-for-line PowerShell port: change both together.

set -o errexit -o nounset -o pipefail

readonly PROG="${0##*/}"
# die and usage_error: the error style every script here shares.
# shellcheck source-path=SCRIPTDIR source=lib/errors.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"
readonly DEFAULT_BASE_URL="http://localhost:8080"
readonly DEFAULT_TIMEOUT_SECONDS=120
readonly DEFAULT_INTERVAL_SECONDS=0.5
readonly REQUEST_TIMEOUT_SECONDS=10
# Prints the field at a dotted path of the JSON on stdin: strings raw, null or absent
# as nothing, anything else as JSON (objects and lists indented). Exit 1 if it is not JSON.
readonly JSON_GET_PY='
import json, sys
try:
    value = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
for key in sys.argv[1].split("."):
    value = value.get(key) if isinstance(value, dict) else None
if isinstance(value, str):
    print(value)
elif value is not None:
    print(json.dumps(value, indent=2 if isinstance(value, (dict, list)) else None))
'
# Prints "<state>\t<progress percent>" for a /status body on stdin. Exit 1 if it is not JSON.
readonly STATUS_FIELDS_PY='
import json, sys
try:
    doc = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
state, percent = doc.get("state"), round(float(doc.get("progress") or 0) * 100)
print(f"{state}\t{percent}")
'
readonly REQUEST_BODY_PY='
import json, sys
prompt, seed, style = sys.argv[1:]
print(json.dumps({"prompt": prompt, "seed": int(seed), **({"style": style} if style else {})}))
'

# Settings (parse_args may override them) and the state the steps share.
base_url="${BASE_URL:-${DEFAULT_BASE_URL}}"
timeout="${SMOKE_TIMEOUT_SECONDS:-${DEFAULT_TIMEOUT_SECONDS}}"
interval="${SMOKE_POLL_INTERVAL_SECONDS:-${DEFAULT_INTERVAL_SECONDS}}"
prompt="${PROMPT:-a spooky hallway}"
seed="${SEED:-123}"
style="${STYLE-doom}"
output="normal"  # quiet: progress and the final line only; verbose: also the result's JSON
request_id=""
job_id=""
status_url=""
http_status=""
http_body=""
started_us=""  # the run's start, then the job's submission: what "in <s>" counts from

usage() {
  cat <<EOF
Usage: ${PROG} [options] [BASE_URL]

Submits one scene job to the orchestrator at BASE_URL and follows it to the end. The
last line is "PASS job <id> in <seconds>s", or "FAIL [job <id>] in <seconds>s: <why>"
(the error is also on stderr).

  BASE_URL                orchestrator URL (env BASE_URL, default ${DEFAULT_BASE_URL})
  -t, --timeout SECONDS   give up after this many whole seconds (env SMOKE_TIMEOUT_SECONDS,
                          default ${DEFAULT_TIMEOUT_SECONDS})
  -i, --interval SECONDS  pause between polls of /status (env SMOKE_POLL_INTERVAL_SECONDS,
                          default ${DEFAULT_INTERVAL_SECONDS})
  -p, --prompt TEXT       scene prompt (env PROMPT, default "a spooky hallway")
  -s, --seed N            integer seed (env SEED, default 123)
      --style NAME        style, empty to send none (env STYLE, default doom)
  -q, --quiet             print only the progress lines and the last line
  -v, --verbose           also print the result's JSON before the last line
  -h, --help              show this help

Every request carries one generated X-Request-Id (printed first unless --quiet) to find the
run in logs.
Exit status: 0 job done; 1 unreachable, job failed or timed out; 2 bad usage.
EOF
}

parse_args() {
  local have_url="no"
  while (( $# > 0 )); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      -q | --quiet) output="quiet"; shift ;;
      -v | --verbose) output="verbose"; shift ;;
      -t | --timeout | -i | --interval | -p | --prompt | -s | --seed | --style)
        (( $# >= 2 )) || usage_error "$1 needs a value"
        case "$1" in
          -t | --timeout) timeout="$2" ;;
          -i | --interval) interval="$2" ;;
          -p | --prompt) prompt="$2" ;;
          -s | --seed) seed="$2" ;;
          --style) style="$2" ;;
        esac
        shift 2 ;;
      -*) usage_error "unknown option: $1" ;;
      *)
        [[ "${have_url}" == "no" ]] || usage_error "too many arguments: $1"
        base_url="$1"; have_url="yes"; shift ;;
    esac
  done
  [[ "${timeout}" =~ ^[1-9][0-9]*$ ]] \
    || usage_error "timeout must be a whole number of seconds > 0, got '${timeout}'"
  [[ "${interval}" =~ ^[0-9]*\.?[0-9]+$ ]] \
    || usage_error "interval must be a number of seconds, got '${interval}'"
  [[ "${seed}" =~ ^-?[0-9]+$ ]] || usage_error "seed must be an integer, got '${seed}'"
  [[ -n "${prompt}" ]] || usage_error "prompt must not be empty"
  base_url="${base_url%/}"
}

# Sends METHOD URL [JSON]; sets http_status and http_body. Fails if nothing answered.
http() {
  local method="$1" url="$2" data="${3-}" response
  local args=(--silent --show-error --max-time "${REQUEST_TIMEOUT_SECONDS}" -X "${method}"
    -H "X-Request-Id: ${request_id}" -H "Accept: application/json" --write-out '\n%{http_code}')
  if [[ -n "${data}" ]]; then
    args+=(-H "Content-Type: application/json" --data-binary "${data}")
  fi
  response="$(curl "${args[@]}" "${url}")" || return 1
  http_status="${response##*$'\n'}"
  http_body="${response%$'\n'*}"
}

json_get() {
  python3 -c "${JSON_GET_PY}" "$2" <<<"$1"
}

# Print $1 unless --quiet.
say() {
  [[ "${output}" == "quiet" ]] || echo "$1"
}

# Seconds since started_us, to a tenth ("2.3").
elapsed() {
  local tenths=$((($(now_us) - started_us) / 100000))
  echo "$((tenths / 10)).$((tenths % 10))"
}

# The last line, FAIL, on stdout (the run's, even from inside a command substitution), then the
# error on stderr; exit 1.
fail() {
  echo "FAIL${job_id:+ job ${job_id}} in $(elapsed)s: $*" >&3
  die "$*"
}

# Microseconds since the epoch, from bash's clock ($EPOCHREALTIME without its decimal point).
now_us() {
  echo "${EPOCHREALTIME//[!0-9]/}"
}

# A random smoke-<12 hex digits> id (6 bytes of /dev/urandom) for the X-Request-Id header.
new_request_id() {
  local hex
  hex="$(od -An -N6 -tx1 /dev/urandom)"
  echo "smoke-${hex//[!0-9a-f]/}"
}

check_health() {
  local ok
  http GET "${base_url}/healthz" || fail "cannot reach ${base_url}/healthz"
  [[ "${http_status}" == "200" ]] || fail "GET /healthz answered HTTP ${http_status}: ${http_body}"
  ok="$(json_get "${http_body}" ok)" || fail "the server did not answer JSON"
  [[ "${ok}" == "true" ]] || fail "GET /healthz is not ok: ${http_body}"
  say "healthz ok"
}

# Posts the job; sets job_id and status_url.
submit_job() {
  local body
  body="$(python3 -c "${REQUEST_BODY_PY}" "${prompt}" "${seed}" "${style}")"
  http POST "${base_url}/generate-scene" "${body}" || fail "cannot reach ${base_url}/generate-scene"
  [[ "${http_status}" == "202" ]] || fail "POST /generate-scene answered HTTP ${http_status}: ${http_body}"
  started_us="$(now_us)"
  job_id="$(json_get "${http_body}" jobId)" || fail "the server did not answer JSON"
  status_url="${base_url}$(json_get "${http_body}" statusUrl)"
  say "job ${job_id} submitted"
}

follow_job() {
  local fields seconds state percent last=""
  while true; do
    http GET "${status_url}" || fail "cannot reach ${status_url}"
    [[ "${http_status}" == "200" ]] || fail "GET ${status_url} answered HTTP ${http_status}: ${http_body}"
    fields="$(python3 -c "${STATUS_FIELDS_PY}" <<<"${http_body}")" || fail "GET /status did not answer JSON"
    IFS=$'\t' read -r state percent <<<"${fields}"
    seconds="$(elapsed)"
    if [[ "${state} ${percent}" != "${last}" ]]; then
      printf '[%5ss] %-8s %3s%%\n' "${seconds}" "${state}" "${percent}"
      last="${state} ${percent}"
    fi
    case "${state}" in
      done)
        if [[ "${output}" == "verbose" ]]; then echo "result:"; json_get "${http_body}" result; fi
        echo "PASS job ${job_id} in $(elapsed)s"
        return 0 ;;
      failed) fail "job ${job_id} failed: $(json_get "${http_body}" error)" ;;
    esac
    ((${seconds%.*} < timeout)) || fail "job ${job_id} not finished after ${timeout}s (last: ${state} ${percent}%)"
    sleep "${interval}"
  done
}

main() {
  parse_args "$@"
  exec 3>&1  # fail writes the last line here, also from inside $(...)
  started_us="$(now_us)"
  request_id="$(new_request_id)"
  say "smoke test of ${base_url} (X-Request-Id: ${request_id})"
  check_health
  submit_job
  follow_job
}

main "$@"
