#!/usr/bin/env bash
#
# Prints one job's timeline across both services (orchestrator and worker), one line per
# event sorted by timestamp, from JSON log lines in files, on stdin, or in CloudWatch Logs
# (AWS CLI filter-log-events on both log groups), after saying on stderr which source it reads.
# Needs python3; CloudWatch needs the aws CLI (AWS settings as every tool here: lib/aws.sh).
# scripts/trace.ps1 is a line-for-line PowerShell port: change both together.

set -o errexit -o nounset -o pipefail

readonly PROG="${0##*/}"
# die and usage_error: the error style every script here shares.
# shellcheck source-path=SCRIPTDIR source=lib/errors.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"
# resolve_aws_region and describe_aws_target (README "AWS settings"): CloudWatch only.
# shellcheck source-path=SCRIPTDIR source=lib/aws.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/aws.sh"
readonly DEFAULT_SINCE_MINUTES=60
readonly DEFAULT_PAGE_SIZE=1000
readonly ORCHESTRATOR_GROUP="${ORCHESTRATOR_LOG_GROUP:-/ecs/ghost-engine-orchestrator-dev}"
readonly WORKER_GROUP="${WORKER_LOG_GROUP:-/ecs/ghost-engine-worker-dev}"
# Ids go into CloudWatch filter patterns as quoted terms: the request-id alphabet, no quotes.
readonly ID_PATTERN='^[A-Za-z0-9._:;=/+-]+$'
# The JSON work (matching, sorting, rendering) is in jobtimeline.py beside this script.
TIMELINE="$(dirname "${BASH_SOURCE[0]}")/jobtimeline.py"
readonly TIMELINE

usage() {
  cat <<EOF
Usage: ${PROG} [options] JOB_ID [LOG_FILE...]

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
  --since MINUTES      CloudWatch: search the last MINUTES minutes (default ${DEFAULT_SINCE_MINUTES})
  --page-size N        CloudWatch: events per filter-log-events call, 1-10000 (default ${DEFAULT_PAGE_SIZE})
  -h, --help           show this help

Before reading, one line on stderr names the source: the files (or stdin), or the log groups,
region and time range.
Exit status: 0 lines found; 1 no lines found or the AWS CLI failed; 2 bad usage.
EOF
}

# Prints the message of every event in both log groups that contains TERM, one a line.
fetch_term() {
  local term="$1" start_ms="$2" page_size="$3" group
  for group in "${ORCHESTRATOR_GROUP}" "${WORKER_GROUP}"; do
    aws logs filter-log-events --log-group-name "${group}" \
      --start-time "${start_ms}" --filter-pattern "\"${term}\"" --page-size "${page_size}" \
      --query 'events[].[message]' --output text </dev/null \
      || die "aws logs filter-log-events failed on ${group}"
  done
}

# The job's lines in CloudWatch: those containing the job id, then those containing one
# of their request ids (lines threaded by request id need not carry the job id).
from_cloudwatch() {
  local job_id="$1" since="$2" page_size="$3" start_s start_ms start_iso lines more rid rids
  command -v aws >/dev/null || die "the aws CLI is not installed"
  resolve_aws_region
  start_s=$(($(date +%s) - since * 60))
  start_ms=$((start_s * 1000))
  TZ=UTC printf -v start_iso '%(%Y-%m-%dT%H:%M:%SZ)T' "${start_s}"
  echo "${PROG}: reading CloudWatch Logs ${ORCHESTRATOR_GROUP}, ${WORKER_GROUP} in $(describe_aws_target LOGS)," \
    "${start_iso} to now (last ${since} min)" >&2
  lines="$(fetch_term "${job_id}" "${start_ms}" "${page_size}")" || exit 1
  rids="$(python3 "${TIMELINE}" --prog "${PROG}" request-ids "${job_id}" <<<"${lines}")"
  while IFS= read -r rid; do
    [[ -n "${rid}" ]] || continue
    more="$(fetch_term "${rid}" "${start_ms}" "${page_size}")" || exit 1
    lines+=$'\n'"${more}"
  done <<<"${rids}"
  python3 "${TIMELINE}" --prog "${PROG}" timeline "${job_id}" \
    "CloudWatch Logs ${ORCHESTRATOR_GROUP}, ${WORKER_GROUP} (last ${since} min)" - <<<"${lines}"
}

# Say on stderr which files the timeline is read from ('-' is stdin).
announce_files() {
  local names=("${@/#-/stdin}") joined
  printf -v joined '%s, ' "${names[@]}"
  echo "${PROG}: reading ${joined%, }" >&2
}

main() {
  local job_id="" cloudwatch=false since="${DEFAULT_SINCE_MINUTES}" page_size="${DEFAULT_PAGE_SIZE}"
  local -a files=()
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --cloudwatch) cloudwatch=true ;;
      --since | --page-size)
        (($# > 1)) || usage_error "$1 needs a value"
        [[ "$2" =~ ^[1-9][0-9]*$ ]] || usage_error "$1 must be a whole number > 0, got '$2'"
        if [[ "$1" == --since ]]; then since="$2"; else page_size="$2"; fi
        shift ;;
      -?*) usage_error "unknown option: $1" ;;
      *) if [[ -z "${job_id}" ]]; then job_id="$1"; else files+=("$1"); fi ;;
    esac
    shift
  done
  [[ -n "${job_id}" ]] || usage_error "JOB_ID is required"
  [[ "${job_id}" =~ ${ID_PATTERN} ]] || usage_error "JOB_ID may hold only A-Z a-z 0-9 . _ : ; = / + -, got '${job_id}'"
  ((page_size <= 10000)) || usage_error "--page-size must be at most 10000, got '${page_size}'"
  if [[ "${cloudwatch}" == true ]] && ((${#files[@]} > 0)); then
    usage_error "--cloudwatch reads no LOG_FILE, got '${files[0]}'"
  fi
  if [[ "${cloudwatch}" == false ]] && ((${#files[@]} == 0)); then
    if [[ -t 0 ]]; then cloudwatch=true; else files=(-); fi
  fi
  if [[ "${cloudwatch}" == true ]]; then
    from_cloudwatch "${job_id}" "${since}" "${page_size}"
  else
    announce_files "${files[@]}"
    python3 "${TIMELINE}" --prog "${PROG}" timeline "${job_id}" "" "${files[@]}"
  fi
}

main "$@"
