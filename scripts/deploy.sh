#!/usr/bin/env bash
#
# Deploy one immutable image tag to the orchestrator and worker ECS services.
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
# AWS settings as every tool here resolves them (lib/aws.sh; README "AWS settings"): no --region.
# Needs: aws (CLI v1 or v2), python3 (runs taskdefinition.py beside this script, which edits the
# task-definition JSON).
# scripts/deploy.ps1 is a function-for-function PowerShell port: change both together.

set -o errexit -o nounset -o pipefail

readonly PROG="${0##*/}"
# die (every failure exits 1, not the AWS CLI's own status: hence `|| exit 1`) and usage_error.
# shellcheck source-path=SCRIPTDIR source=lib/errors.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"
# resolve_aws_region and describe_aws_target: the AWS settings every tool here shares.
# shellcheck source-path=SCRIPTDIR source=lib/aws.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/aws.sh"
readonly CLUSTER="${ECS_CLUSTER:-ghost-engine-cluster-dev}"
readonly SERVICES=("${ORCHESTRATOR_SERVICE:-orchestrator}" "${WORKER_SERVICE:-worker}")
readonly REPOSITORIES=("${ORCHESTRATOR_REPOSITORY:-ghost-engine-orchestrator-dev}" "${WORKER_REPOSITORY:-ghost-engine-worker-dev}")
readonly TIMEOUT_SECONDS="${DEPLOY_TIMEOUT_SECONDS:-600}"
readonly POLL_SECONDS="${DEPLOY_POLL_SECONDS:-10}"
# The JSON work (a copy of the task definition with one image swapped) is in taskdefinition.py.
TASK_DEFINITION="$(dirname "${BASH_SOURCE[0]}")/taskdefinition.py"
readonly TASK_DEFINITION
# An ECR image tag: 1-128 characters, the first a letter, digit or underscore.
readonly TAG_PATTERN='^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'
# The services not yet stable after the last poll (report_services sets it).
unstable=""

usage() {
  cat <<EOF
Usage: ${PROG} IMAGE_TAG

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
EOF
}

# Exit 2 unless the arguments are one valid IMAGE_TAG and the environment's settings are valid.
check_usage() {
  (($# == 1)) || usage_error "expected 1 argument (IMAGE_TAG), got $#"
  [[ "$1" != -* ]] || usage_error "unknown option: $1"
  [[ "$1" =~ ${TAG_PATTERN} ]] \
    || usage_error "invalid image tag '$1': 1-128 of A-Z a-z 0-9 _ . -, not starting with . or -"
  [[ "${TIMEOUT_SECONDS}" =~ ^[1-9][0-9]*$ ]] \
    || usage_error "DEPLOY_TIMEOUT_SECONDS must be a whole number of seconds > 0, got '${TIMEOUT_SECONDS}'"
  [[ "${POLL_SECONDS}" =~ ^([1-9]|1[0-5])$ ]] \
    || usage_error "DEPLOY_POLL_SECONDS must be a whole number of seconds from 1 to 15, got '${POLL_SECONDS}'"
}

aws_cli() { AWS_PAGER="" aws "$@"; }

# Fail unless repository $1 holds tag $2.
require_tag() {
  aws_cli ecr describe-images --repository-name "$1" --image-ids "imageTag=$2" >/dev/null \
    || die "image tag '$2' not found in ECR repository '$1'; nothing deployed"
}

# Write to file $4 the registration input for the latest ACTIVE revision of service $1's
# task-definition family with image $2:$3; print the service's current task definition.
prepare_task_definition() {
  local service="$1" repo="$2" tag="$3" out="$4" current family uri
  current="$(aws_cli ecs describe-services --cluster "${CLUSTER}" --services "${service}" \
    --query "services[?status=='ACTIVE'].taskDefinition | [0]" --output text)" || current=""
  [[ "${current}" != "None" && -n "${current}" ]] || die "service '${service}' not found in cluster '${CLUSTER}'"
  uri="$(aws_cli ecr describe-repositories --repository-names "${repo}" \
    --query 'repositories[0].repositoryUri' --output text)" || exit 1
  family="${current##*/}"
  family="${family%:*}"
  # A family name alone means its latest ACTIVE revision.
  aws_cli ecs describe-task-definition --task-definition "${family}" --include TAGS --output json \
    | python3 "${TASK_DEFINITION}" --prog "${PROG}" "${service}" "${uri}:${tag}" >"${out}" \
    || die "cannot prepare a task definition for service '${service}' from family ${family}"
  echo "${current}"
}

# Register file $2 as a new revision and point service $1 at it; print the new ARN.
register_and_update() {
  local service="$1" input="$2" arn
  arn="$(aws_cli ecs register-task-definition --cli-input-json "file://${input}" \
    --query 'taskDefinition.taskDefinitionArn' --output text)" || exit 1
  aws_cli ecs update-service --cluster "${CLUSTER}" --service "${service}" \
    --task-definition "${arn}" --force-new-deployment --query 'service.serviceName' --output text >/dev/null || exit 1
  echo "${arn}"
}

# Print one progress line, "[<$1>s] " then per service its desired, running and pending tasks, the
# primary deployment's rollout state, and the deployments when more than one. Set `unstable` to the
# services not stable yet (stable: one deployment, runningCount == desiredCount). Exit 1 if a
# rollout FAILED (ECS's circuit breaker gave up on it).
report_services() {
  local elapsed="$1" rows name deployments desired running pending rollout line="" failed=""
  shift
  rows="$(aws_cli ecs describe-services --cluster "${CLUSTER}" --services "$@" --output text --query \
    "services[].[serviceName, length(deployments), desiredCount, runningCount, pendingCount, deployments[?status=='PRIMARY'] | [0].rolloutState]")" || exit 1
  unstable=""
  while read -r name deployments desired running pending rollout; do
    line+="${line:+; }${name}: desired ${desired}, running ${running}, pending ${pending}, rollout ${rollout}"
    [[ "${deployments}" == "1" ]] || line+=", ${deployments} deployments"
    [[ "${deployments}" == "1" && "${running}" == "${desired}" ]] || unstable+=" ${name}"
    [[ "${rollout}" != "FAILED" ]] || failed="${name}"
  done <<<"${rows}"
  printf '[%4ss] %s\n' "${elapsed}" "${line}"
  [[ -z "${failed}" ]] || die "service '${failed}': deployment rollout FAILED (see the service's events)"
}

# Poll the services every POLL_SECONDS, a progress line each time, until every one is stable;
# fail once DEPLOY_TIMEOUT_SECONDS have passed, naming those that are not.
wait_stable() {
  local started="${SECONDS}" elapsed
  while true; do
    report_services "$((SECONDS - started))" "$@"
    [[ -n "${unstable}" ]] || return 0
    elapsed=$((SECONDS - started))
    ((elapsed < TIMEOUT_SECONDS)) || die "timed out after ${TIMEOUT_SECONDS}s waiting for service(s) to stabilise:${unstable}"
    sleep "$((TIMEOUT_SECONDS - elapsed < POLL_SECONDS ? TIMEOUT_SECONDS - elapsed : POLL_SECONDS))"
  done
}

# Succeed if service $1 runs task definition $2 with a single PRIMARY deployment not FAILED.
verify_service() {
  local service="$1" arn="$2" state actual primaries rollout
  state="$(aws_cli ecs describe-services --cluster "${CLUSTER}" --services "${service}" --output text \
    --query "services[0].[taskDefinition, length(deployments[?status=='PRIMARY']), deployments[?status=='PRIMARY'] | [0].rolloutState]")" || exit 1
  read -r actual primaries rollout <<<"${state}"
  [[ "${actual}" == "${arn}" ]] || die "service '${service}' runs ${actual}, not ${arn}: the deployment was rolled back"
  [[ "${primaries}" == "1" && "${rollout}" != "FAILED" ]] \
    || die "service '${service}': rollout did not complete (PRIMARY deployments: ${primaries}, rolloutState: ${rollout})"
}

# Put every service back on the revision it ran before this deploy (set in PREVIOUS), so a
# failed rollout of one never leaves the other on the new version; wait for them as the deploy does.
roll_back() {
  local i current
  echo "${PROG}: rolling back both services to their previous revisions (no mixed versions)" >&2
  for i in 0 1; do
    current="$(aws_cli ecs describe-services --cluster "${CLUSTER}" --services "${SERVICES[i]}" \
      --query 'services[0].taskDefinition' --output text)" || current=""
    if [[ "${current}" == "${PREVIOUS[i]}" ]]; then
      echo "${PROG}: ${SERVICES[i]}: on ${PREVIOUS[i]##*/} (not moved, or rolled back by ECS)" >&2
    elif aws_cli ecs update-service --cluster "${CLUSTER}" --service "${SERVICES[i]}" \
      --task-definition "${PREVIOUS[i]}" --query 'service.serviceName' --output text >/dev/null; then
      echo "${PROG}: ${SERVICES[i]}: ${current##*/} -> ${PREVIOUS[i]##*/} (rolled back)" >&2
    else
      echo "${PROG}: ${SERVICES[i]}: could not be rolled back to ${PREVIOUS[i]##*/}" >&2
    fi
  done
  # The deploy's own bounded wait, in a subshell (its failure ends the subshell only), quietly:
  # its outcome is the one line below.
  if (wait_stable "${SERVICES[@]}") >/dev/null 2>&1; then
    echo "${PROG}: rolled back: ${SERVICES[0]} ${PREVIOUS[0]##*/}, ${SERVICES[1]} ${PREVIOUS[1]##*/} (stable)" >&2
  else
    echo "${PROG}: rollback requested, but the services were not stable within ${TIMEOUT_SECONDS}s" >&2
  fi
}

# On exit: after a failure once a service was moved (ROLLBACK_ARMED), roll both back.
on_exit() {
  local status=$?
  if ((status != 0)) && [[ "${ROLLBACK_ARMED}" == "1" ]]; then roll_back; fi
  rm -rf "${WORKDIR}"
  exit "${status}"
}

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
  fi
  check_usage "$@"
  resolve_aws_region
  local tag="$1" i arns=()
  echo "deploying ${tag} to cluster ${CLUSTER} in $(describe_aws_target ECS)"
  WORKDIR="$(mktemp -d)"
  PREVIOUS=()
  ROLLBACK_ARMED=0
  trap on_exit EXIT

  for i in 0 1; do require_tag "${REPOSITORIES[i]}" "${tag}"; done
  for i in 0 1; do
    PREVIOUS[i]="$(prepare_task_definition "${SERVICES[i]}" "${REPOSITORIES[i]}" "${tag}" "${WORKDIR}/${i}.json")" || exit 1
  done
  for i in 0 1; do
    ROLLBACK_ARMED=1 # from here a failure may leave the services on different versions
    arns[i]="$(register_and_update "${SERVICES[i]}" "${WORKDIR}/${i}.json")" || exit 1
    echo "${SERVICES[i]}: ${PREVIOUS[i]##*/} -> ${arns[i]##*/} (image tag ${tag})"
  done
  wait_stable "${SERVICES[@]}"
  for i in 0 1; do verify_service "${SERVICES[i]}" "${arns[i]}"; done
  ROLLBACK_ARMED=0
  echo "deployed ${tag}: ${SERVICES[0]} ${arns[0]##*/}, ${SERVICES[1]} ${arns[1]##*/} (stable, verified)"
}

main "$@"
