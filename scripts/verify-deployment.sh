#!/usr/bin/env bash
#
# Checks every "Done means Done" of the seed's four steps against a deployed stack and prints a
# checklist: one line per check, PASS/FAIL/SKIP, its evidence and the time it took. It runs
# smoke-test.sh against BASE_URL (its job is the one job it submits), reads that job's row,
# its log lines (trace.sh --cloudwatch), the JobSucceeded metric, the alarms and both ECS services.
# Read-only apart from that job; --restart (opt-in) forces a new orchestrator deployment.
# Needs bash 5, curl, python3 (runs deploymentcheck.py beside this script for the JSON), aws, timeout.
# scripts/verify-deployment.ps1 is a function-for-function PowerShell port: change both together.

set -o errexit -o nounset -o pipefail

readonly PROG="${0##*/}"
# die and usage_error: the error style every script here shares.
# shellcheck source-path=SCRIPTDIR source=lib/errors.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"
HERE="$(dirname "${BASH_SOURCE[0]}")"
readonly HERE
readonly CHECKS="${HERE}/deploymentcheck.py"
readonly DEFAULT_REGION="us-east-1"
readonly DEFAULT_WAIT_SECONDS=180
readonly DEFAULT_INTERVAL_SECONDS=10
readonly WINDOW_MINUTES=15
readonly REQUEST_TIMEOUT_SECONDS=10

# Settings (parse_args and resolve_names fill in the rest).
project="ghost-engine"
environment="${ENVIRONMENT:-dev}"
region="" region_source=""
cluster="${ECS_CLUSTER:-}"
table="${JOBS_TABLE_NAME:-}"
namespace="${METRICS_NAMESPACE:-GhostEngine}"
services=("${ORCHESTRATOR_SERVICE:-orchestrator}" "${WORKER_SERVICE:-worker}")
groups=("${ORCHESTRATOR_LOG_GROUP:-}" "${WORKER_LOG_GROUP:-}")
wait_seconds="${VERIFY_WAIT_SECONDS:-${DEFAULT_WAIT_SECONDS}}"
interval="${VERIFY_POLL_INTERVAL_SECONDS:-${DEFAULT_INTERVAL_SECONDS}}"
restart_timeout="${DEPLOY_TIMEOUT_SECONDS:-600}"
expected_tag="${EXPECTED_IMAGE_TAG:-}"
restart=false
base_url="${BASE_URL:-}"
# What the checks share: the smoke test's job and request id, the last result, the tallies.
job_id="" request_id="" result="" evidence="" failed=() passes=0 skips=0

usage() {
  cat <<EOF
Usage: ${PROG} [options] BASE_URL

Checks every "Done means Done" of the four steps against a deployed stack and prints one line
per check (PASS, FAIL or SKIP, the evidence, the time it took), grouped by step:
  1. Kernel         /healthz; the smoke test against BASE_URL: its job accepted, /status
                    moving to done, the smoke test passing
  2. Persistence    the job's row in the table as /status shows it; --restart: see below
  3. Observability  the job's log lines in both log groups threaded by one request id
                    (the trace script, --cloudwatch); log retention; JobSucceeded in the last
                    ${WINDOW_MINUTES} min; the alarms
  4. Deploy         each service runs an image tagged with a 40-hex commit SHA, its PRIMARY
                    rollout COMPLETED with running = desired; /healthz still green
Read-only, apart from the smoke test's one job. Names default to the Terraform's.

  BASE_URL                the orchestrator's public URL, the ALB (env BASE_URL)
      --region NAME       AWS region (env AWS_REGION, AWS_DEFAULT_REGION, the region of
                          AWS_PROFILE's profile, else ${DEFAULT_REGION}); AWS_ENDPOINT_URL as usual
      --project NAME      first part of the default names (default ghost-engine)
      --environment NAME  last part of the default names and the metric's Environment
                          (env ENVIRONMENT, default dev)
      --cluster NAME      ECS cluster (env ECS_CLUSTER, default <project>-cluster-<environment>)
      --table NAME        jobs table (env JOBS_TABLE_NAME, default <project>-jobs-<environment>)
      --namespace NAME    metrics namespace (env METRICS_NAMESPACE, default GhostEngine)
      --expect-tag SHA    the image tag both services must run (env EXPECTED_IMAGE_TAG)
      --wait SECONDS      how long to wait for log lines and the metric to appear
                          (env VERIFY_WAIT_SECONDS, default ${DEFAULT_WAIT_SECONDS}), polling every
                          VERIFY_POLL_INTERVAL_SECONDS (default ${DEFAULT_INTERVAL_SECONDS})
      --restart           DISRUPTIVE: force a new deployment of the orchestrator service, wait
                          until it is stable (env DEPLOY_TIMEOUT_SECONDS, default 600) and read
                          the job again through BASE_URL; without it that check is SKIP
  -h, --help              show this help
Services and log groups: env ORCHESTRATOR_SERVICE, WORKER_SERVICE (default orchestrator,
worker), ORCHESTRATOR_LOG_GROUP, WORKER_LOG_GROUP (default /ecs/<project>-<service>-<environment>).
The smoke test reads its own variables (SMOKE_TIMEOUT_SECONDS, ...).

Exit status: 0 no check failed; 1 a check failed; 2 bad usage.
EOF
}

parse_args() {
  local have_url="no"
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --restart) restart=true; shift ;;
      --region | --project | --environment | --cluster | --table | --namespace | --expect-tag | --wait)
        (($# >= 2)) || usage_error "$1 needs a value"
        case "$1" in
          --region) region="$2"; region_source="--region" ;;
          --project) project="$2" ;;
          --environment) environment="$2" ;;
          --cluster) cluster="$2" ;;
          --table) table="$2" ;;
          --namespace) namespace="$2" ;;
          --expect-tag) expected_tag="$2" ;;
          --wait) wait_seconds="$2" ;;
        esac
        shift 2 ;;
      -?*) usage_error "unknown option: $1" ;;
      *)
        [[ "${have_url}" == "no" ]] || usage_error "too many arguments: $1"
        base_url="$1"; have_url="yes"; shift ;;
    esac
  done
  [[ -n "${base_url}" ]] || usage_error "BASE_URL is required"
  [[ "${base_url}" =~ ^https?://[^/]+ ]] || usage_error "BASE_URL must start with http:// or https://, got '${base_url}'"
  [[ "${wait_seconds}" =~ ^[0-9]+$ ]] || usage_error "--wait must be a whole number of seconds, got '${wait_seconds}'"
  [[ "${interval}" =~ ^[0-9]*\.?[0-9]+$ ]] \
    || usage_error "VERIFY_POLL_INTERVAL_SECONDS must be a number of seconds, got '${interval}'"
  [[ "${restart_timeout}" =~ ^[1-9][0-9]*$ ]] \
    || usage_error "DEPLOY_TIMEOUT_SECONDS must be a whole number of seconds > 0, got '${restart_timeout}'"
  [[ -z "${expected_tag}" || "${expected_tag}" =~ ^[0-9a-f]{40}$ ]] \
    || usage_error "--expect-tag must be a 40-hex commit SHA, got '${expected_tag}'"
  base_url="${base_url%/}"
}

# The region as the AWS SDKs resolve it (never overriding what the user set), then the names.
resolve_names() {
  if [[ -z "${region}" ]]; then
    if [[ -n "${AWS_REGION:-}" ]]; then region="${AWS_REGION}"; region_source="AWS_REGION"
    elif [[ -n "${AWS_DEFAULT_REGION:-}" ]]; then region="${AWS_DEFAULT_REGION}"; region_source="AWS_DEFAULT_REGION"
    elif region="$(aws configure get region 2>/dev/null)" && [[ -n "${region}" ]]; then
      region_source="profile ${AWS_PROFILE:-default}"
    else region="${DEFAULT_REGION}"; region_source="default"
    fi
  fi
  cluster="${cluster:-${project}-cluster-${environment}}"
  table="${table:-${project}-jobs-${environment}}"
  groups[0]="${groups[0]:-/ecs/${project}-orchestrator-${environment}}"
  groups[1]="${groups[1]:-/ecs/${project}-worker-${environment}}"
}

aws_cli() { AWS_PAGER="" aws --region "${region}" "$@"; }

# Runs the AWS CLI with stdout to file $1; on failure sets the check's FAIL evidence.
aws_to() {
  local out="$1"; shift
  aws_cli "$@" >"${out}" 2>"${WORKDIR}/aws.err" && return 0
  result="FAIL"
  evidence="aws $1 $2 failed: $(grep -v '^[[:space:]]*$' "${WORKDIR}/aws.err" | tail -n 1)"
  return 1
}

# Runs deploymentcheck.py; its "RESULT<TAB>evidence" line becomes the check's result.
judge() {
  local line
  line="$(python3 "${CHECKS}" "$@")" || line=$'FAIL\tdeploymentcheck.py failed'
  result="${line%%$'\t'*}"
  evidence="${line#*$'\t'}"
}

now_ms() { echo "$((${EPOCHREALTIME/./} / 1000))"; }

# Prints one checklist line and counts it.
report() {
  local status="$1" name="$2" text="$3" ms="$4"
  printf '  %-4s  %-22s %s (%d.%d s)\n' "${status}" "${name}" "${text}" $((ms / 1000)) $((ms % 1000 / 100))
  case "${status}" in
    PASS) passes=$((passes + 1)) ;;
    SKIP) skips=$((skips + 1)) ;;
    *) failed+=("${name}") ;;
  esac
}

# Runs check function $2 (with the rest as its arguments) and reports it under name $1.
run_check() {
  local name="$1" start
  shift
  start="$(now_ms)"
  result="FAIL" evidence=""
  "$@" || true
  report "${result}" "${name}" "${evidence}" $(($(now_ms) - start))
}

# GET BASE_URL$1 (with the smoke test's request id, once there is one) into file $2.
http_get() {
  curl --silent --show-error --max-time "${REQUEST_TIMEOUT_SECONDS}" -H "Accept: application/json" \
    -H "X-Request-Id: ${request_id:-verify}" --write-out '\n%{http_code}' "${base_url}$1" >"$2" 2>"${WORKDIR}/curl.err"
}

check_health() {
  if ! http_get /healthz "${WORKDIR}/health"; then
    evidence="cannot reach ${base_url}/healthz: $(tail -n 1 "${WORKDIR}/curl.err")"
    return
  fi
  judge health <"${WORKDIR}/health"
}

# Stamps each line on stdin with the milliseconds since $1.
stamp_lines() {
  local line
  while IFS= read -r line; do echo "$(($(now_ms) - $1)) ${line}"; done
}

# Runs smoke-test.sh BASE_URL and reports three checks from what it printed.
run_smoke() {
  local start status=0 name names=("job accepted" "status to done" "smoke test") ms text
  start="$(now_ms)"
  "${HERE}/smoke-test.sh" "${base_url}" 2>"${WORKDIR}/smoke.err" | stamp_lines "${start}" >"${WORKDIR}/smoke.out" \
    || status=$?
  {
    IFS= read -r job_id
    IFS= read -r request_id
    for name in "${names[@]}"; do
      IFS=$'\t' read -r result ms text
      report "${result}" "${name}" "${text}" "${ms}"
    done
  } < <(python3 "${CHECKS}" smoke "${WORKDIR}/smoke.out" "${WORKDIR}/smoke.err" "${status}")
}

check_row() {
  [[ -n "${job_id}" ]] || { result="SKIP" evidence="no job: the smoke test submitted none"; return; }
  http_get "/status/${job_id}" "${WORKDIR}/status.http" || { evidence="cannot reach ${base_url}/status/${job_id}"; return; }
  sed '$d' "${WORKDIR}/status.http" >"${WORKDIR}/status.json"
  aws_to "${WORKDIR}/row.json" dynamodb get-item --table-name "${table}" --consistent-read --output json \
    --key "{\"jobId\": {\"S\": \"${job_id}\"}}" || return
  judge row "${table}" "${job_id}" "${WORKDIR}/status.json" <"${WORKDIR}/row.json"
}

check_restart() {
  if [[ "${restart}" != true ]]; then
    result="SKIP" evidence="not requested (--restart forces a new orchestrator deployment)"
    return
  fi
  [[ -s "${WORKDIR}/status.json" ]] || { result="SKIP" evidence="no job read before the restart"; return; }
  aws_to /dev/null ecs update-service --cluster "${cluster}" --service "${services[0]}" --force-new-deployment \
    --query 'service.serviceName' --output text || return
  if ! timeout "${restart_timeout}" env AWS_PAGER="" aws --region "${region}" ecs wait services-stable \
    --cluster "${cluster}" --services "${services[0]}" 2>"${WORKDIR}/aws.err"; then
    evidence="${services[0]} not stable within ${restart_timeout}s after the forced deployment"
    return
  fi
  http_get "/status/${job_id}" "${WORKDIR}/after.http" || { evidence="cannot reach ${base_url} after the restart"; return; }
  sed '$d' "${WORKDIR}/after.http" >"${WORKDIR}/after.json"
  judge same-job "${job_id}" "${WORKDIR}/status.json" <"${WORKDIR}/after.json"
}

# trace.sh --cloudwatch, polled until the job's lines are threaded or --wait runs out.
check_logs() {
  [[ -n "${job_id}" ]] || { result="SKIP" evidence="no job: the smoke test submitted none"; return; }
  local deadline=$(($(now_ms) + wait_seconds * 1000))
  while true; do
    env AWS_REGION="${region}" ORCHESTRATOR_LOG_GROUP="${groups[0]}" WORKER_LOG_GROUP="${groups[1]}" \
      "${HERE}/trace.sh" --cloudwatch --since "${WINDOW_MINUTES}" "${job_id}" \
      >"${WORKDIR}/trace.out" 2>"${WORKDIR}/trace.err" </dev/null || true
    judge threaded "${job_id}" "${request_id}" "${WORKDIR}/trace.err" <"${WORKDIR}/trace.out"
    [[ "${result}" == PASS ]] && return
    (($(now_ms) < deadline)) || return
    sleep "${interval}"
  done
}

check_retention() {
  local group
  : >"${WORKDIR}/groups.json"
  for group in "${groups[@]}"; do
    aws_to "${WORKDIR}/group.json" logs describe-log-groups --log-group-name-prefix "${group}" --output json || return
    cat "${WORKDIR}/group.json" >>"${WORKDIR}/groups.json"
  done
  judge retention "${groups[@]}" <"${WORKDIR}/groups.json"
}

# JobSucceeded (Sum) over the last WINDOW_MINUTES, polled until seen or --wait runs out.
check_metric() {
  local deadline=$(($(now_ms) + wait_seconds * 1000)) now
  while true; do
    now="${EPOCHREALTIME%.*}"
    aws_to "${WORKDIR}/metric.json" cloudwatch get-metric-statistics --namespace "${namespace}" \
      --metric-name JobSucceeded --dimensions Name=Service,Value=orchestrator "Name=Environment,Value=${environment}" \
      --start-time "$((now - WINDOW_MINUTES * 60))" --end-time "$((now + 60))" --period 60 --statistics Sum \
      --output json || return
    judge metric JobSucceeded "${WINDOW_MINUTES}" "${namespace} Service=orchestrator Environment=${environment}" \
      <"${WORKDIR}/metric.json"
    [[ "${result}" == PASS ]] && return
    (($(now_ms) < deadline)) || return
    sleep "${interval}"
  done
}

check_alarms() {
  local names=("${project}-alb-5xx-${environment}" "${project}-job-failed-${environment}"
    "${project}-orchestrator-running-tasks-${environment}" "${project}-worker-running-tasks-${environment}")
  aws_to "${WORKDIR}/alarms.json" cloudwatch describe-alarms --alarm-names "${names[@]}" --output json || return
  judge alarms "${names[@]}" <"${WORKDIR}/alarms.json"
}

# Both services in one describe-services call, shared by the image and rollout checks.
load_services() {
  aws_to "${WORKDIR}/services.json" ecs describe-services --cluster "${cluster}" --services "${services[@]}" \
    --output json || echo "${evidence}" >"${WORKDIR}/services.err"
}

check_image() {
  local arn
  [[ ! -s "${WORKDIR}/services.err" ]] || { evidence="$(cat "${WORKDIR}/services.err")"; return; }
  arn="$(python3 "${CHECKS}" task-definition "$1" <"${WORKDIR}/services.json")"
  [[ -n "${arn}" ]] || { evidence="service $1 not found in cluster ${cluster}"; return; }
  aws_to "${WORKDIR}/td.json" ecs describe-task-definition --task-definition "${arn}" --output json || return
  judge image "$1" "${expected_tag}" <"${WORKDIR}/td.json"
}

check_rollout() {
  [[ ! -s "${WORKDIR}/services.err" ]] || { evidence="$(cat "${WORKDIR}/services.err")"; return; }
  judge rollout "$1" <"${WORKDIR}/services.json"
}

main() {
  parse_args "$@"
  command -v aws >/dev/null || die "the aws CLI is not installed"
  resolve_names
  WORKDIR="$(mktemp -d)"
  trap 'rm -rf "${WORKDIR}"' EXIT
  local service list
  echo "Verifying ${base_url}: region ${region} (${region_source}), cluster ${cluster}, services ${services[*]}, table ${table}"
  echo "1. Kernel"
  run_check "healthz" check_health
  run_smoke
  echo "2. Persistence"
  run_check "table row" check_row
  run_check "restart" check_restart
  echo "3. Observability"
  run_check "logs threaded" check_logs
  run_check "log retention" check_retention
  run_check "metric JobSucceeded" check_metric
  run_check "alarms" check_alarms
  echo "4. Deploy"
  load_services
  for service in "${services[@]}"; do run_check "${service} image" check_image "${service}"; done
  for service in "${services[@]}"; do run_check "${service} rollout" check_rollout "${service}"; done
  run_check "healthz after" check_health
  echo "${passes} PASS, ${#failed[@]} FAIL, ${skips} SKIP"
  if ((${#failed[@]} > 0)); then
    printf -v list '%s, ' "${failed[@]}"
    die "${#failed[@]} check(s) failed: ${list%, }"
  fi
}

main "$@"
