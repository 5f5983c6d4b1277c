#!/usr/bin/env bash
#
# Prints one job's timeline across both services (orchestrator and worker), one line per
# event sorted by timestamp, from JSON log lines in files, on stdin, or in CloudWatch Logs
# (AWS CLI filter-log-events on both log groups). Needs python3; CloudWatch needs the aws CLI.
# scripts/trace.ps1 is a line-for-line PowerShell port: change both together.

set -o errexit -o nounset -o pipefail

readonly DEFAULT_SINCE_MINUTES=60
readonly DEFAULT_PAGE_SIZE=1000
readonly ORCHESTRATOR_GROUP="${ORCHESTRATOR_LOG_GROUP:-/ecs/ghost-engine-orchestrator-dev}"
readonly WORKER_GROUP="${WORKER_LOG_GROUP:-/ecs/ghost-engine-worker-dev}"
readonly REGION="${AWS_REGION:-us-east-1}"
# Ids go into CloudWatch filter patterns as quoted terms: the request-id alphabet, no quotes.
readonly ID_PATTERN='^[A-Za-z0-9._:;=/+-]+$'
# The JSON work. "request-ids JOB_ID": the request ids of the job's lines on stdin.
# "timeline JOB_ID LABEL SOURCE...": the job's lines from files ('-' is stdin), rendered.
# Kept free of double quotes so PowerShell passes it to python3 -c unchanged.
PROGRAM="$(cat <<'PY'
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
PY
)"
readonly PROGRAM

usage() {
  cat <<EOF
Usage: $(basename "$0") [options] JOB_ID [LOG_FILE...]

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
  --since MINUTES      CloudWatch: search the last MINUTES minutes (default ${DEFAULT_SINCE_MINUTES})
  --page-size N        CloudWatch: events per filter-log-events call, 1-10000 (default ${DEFAULT_PAGE_SIZE})
  -h, --help           show this help

Exit status: 0 lines found; 1 no lines found or the AWS CLI failed; 2 bad usage.
EOF
}

die_usage() {
  echo "error: $1" >&2
  usage >&2
  exit 2
}

# Prints the message of every event in both log groups that contains TERM, one a line.
fetch_term() {
  local term="$1" start_ms="$2" page_size="$3" group
  for group in "${ORCHESTRATOR_GROUP}" "${WORKER_GROUP}"; do
    if ! aws logs filter-log-events --region "${REGION}" --log-group-name "${group}" \
      --start-time "${start_ms}" --filter-pattern "\"${term}\"" --page-size "${page_size}" \
      --query 'events[].[message]' --output text </dev/null; then
      echo "error: aws logs filter-log-events failed on ${group}" >&2
      return 1
    fi
  done
}

# The job's lines in CloudWatch: those containing the job id, then those containing one
# of their request ids (lines threaded by request id need not carry the job id).
from_cloudwatch() {
  local job_id="$1" since="$2" page_size="$3" start_ms lines more rid rids
  command -v aws >/dev/null || { echo "error: the aws CLI is not installed" >&2; exit 1; }
  start_ms=$((($(date +%s) - since * 60) * 1000))
  lines="$(fetch_term "${job_id}" "${start_ms}" "${page_size}")" || exit 1
  rids="$(python3 -c "${PROGRAM}" request-ids "${job_id}" <<<"${lines}")"
  while IFS= read -r rid; do
    [[ -n "${rid}" ]] || continue
    more="$(fetch_term "${rid}" "${start_ms}" "${page_size}")" || exit 1
    lines+=$'\n'"${more}"
  done <<<"${rids}"
  python3 -c "${PROGRAM}" timeline "${job_id}" \
    "CloudWatch Logs ${ORCHESTRATOR_GROUP}, ${WORKER_GROUP} (last ${since} min)" - <<<"${lines}"
}

main() {
  local job_id="" cloudwatch=false since="${DEFAULT_SINCE_MINUTES}" page_size="${DEFAULT_PAGE_SIZE}"
  local -a files=()
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --cloudwatch) cloudwatch=true ;;
      --since | --page-size)
        (($# > 1)) || die_usage "$1 needs a value"
        [[ "$2" =~ ^[1-9][0-9]*$ ]] || die_usage "$1 must be a whole number > 0, got '$2'"
        if [[ "$1" == --since ]]; then since="$2"; else page_size="$2"; fi
        shift ;;
      -?*) die_usage "unknown option: $1" ;;
      *) if [[ -z "${job_id}" ]]; then job_id="$1"; else files+=("$1"); fi ;;
    esac
    shift
  done
  [[ -n "${job_id}" ]] || die_usage "JOB_ID is required"
  [[ "${job_id}" =~ ${ID_PATTERN} ]] || die_usage "JOB_ID may hold only A-Z a-z 0-9 . _ : ; = / + -, got '${job_id}'"
  ((page_size <= 10000)) || die_usage "--page-size must be at most 10000, got '${page_size}'"
  if [[ "${cloudwatch}" == true ]] && ((${#files[@]} > 0)); then
    die_usage "--cloudwatch reads no LOG_FILE, got '${files[0]}'"
  fi
  if [[ "${cloudwatch}" == false ]] && ((${#files[@]} == 0)); then
    if [[ -t 0 ]]; then cloudwatch=true; else files=(-); fi
  fi
  if [[ "${cloudwatch}" == true ]]; then
    from_cloudwatch "${job_id}" "${since}" "${page_size}"
  else
    python3 -c "${PROGRAM}" timeline "${job_id}" "" "${files[@]}"
  fi
}

main "$@"
