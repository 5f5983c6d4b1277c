#!/usr/bin/env python3
"""The JSON work behind scripts/verify-deployment.sh and .ps1 (both call this file): each
subcommand reads what a command printed (curl, smoke-test.sh, trace.sh, the AWS CLI) and
judges one check of the checklist.

Usage:
  deploymentcheck.py health                          < curl output (body, then the HTTP code)
  deploymentcheck.py smoke OUT ERR STATUS            (smoke-test.sh's stamped stdout, stderr, exit code)
  deploymentcheck.py row TABLE JOB_ID STATUS_FILE    < aws dynamodb get-item
  deploymentcheck.py same-job JOB_ID BEFORE_FILE     < GET /status/<id> body after a restart
  deploymentcheck.py threaded JOB_ID REQUEST_ID ERR  < trace.sh --cloudwatch output
  deploymentcheck.py retention GROUP...              < aws logs describe-log-groups, one per GROUP
  deploymentcheck.py metric NAME WINDOW_MIN DIMS     < aws cloudwatch get-metric-statistics
  deploymentcheck.py alarms NAME...                  < aws cloudwatch describe-alarms
  deploymentcheck.py task-definition SERVICE         < aws ecs describe-services (prints the ARN)
  deploymentcheck.py image SERVICE EXPECTED_TAG      < aws ecs describe-task-definition
  deploymentcheck.py rollout SERVICE                 < aws ecs describe-services

A check prints one line, "PASS<TAB>evidence" or "FAIL<TAB>evidence"; `smoke` prints the job id,
the request id, then three such lines (job accepted, status to done, smoke test), each with the
milliseconds it took between the result and the evidence. Exit 0 unless the input is unusable.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any

SHA_TAG = re.compile(r"^[0-9a-f]{40}$")
STATE_LINE = re.compile(r"^\[ *[0-9.]+s\] (\S+) +\d+%$")
TIMELINE_LINE = re.compile(r"^\S+ (\S+) +\S+ +")
REQUEST_ID_FIELD = re.compile(r"\brequestId=(\S+)")
FORWARD = ("queued", "running", "done")


def verdict(ok: bool, evidence: str) -> str:
    return ("PASS" if ok else "FAIL") + "\t" + " ".join(evidence.split())


def json_docs(text: str) -> list[Any]:
    """Every JSON document in ``text``, one after the other (the AWS CLI's output of several calls)."""
    decoder, at = json.JSONDecoder(), 0
    docs: list[Any] = []
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return docs
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as stream:
        return stream.read()


def digest(result: Any) -> str:
    return result.get("digest", "?") if isinstance(result, dict) else "?"


def health(stdin: str) -> str:
    body, _, code = stdin.rstrip("\n").rpartition("\n")
    try:
        ok = code == "200" and json.loads(body).get("ok") is True
    except (ValueError, AttributeError):
        ok = False
    return verdict(ok, f"GET /healthz: HTTP {code} {body.strip()[:200]}")


def smoke(out_path: str, err_path: str, status: str) -> str:
    """smoke-test.sh's stdout, each line stamped "<ms since start> <line>": the job it
    submitted, the states it saw /status move through, and whether it passed."""
    stamped = [line.split(" ", 1) for line in read(out_path).splitlines() if " " in line]
    error = last_line(read(err_path)) or f"exit {status}"
    job_id = request_id = ""
    ready_ms = submitted_ms = ended_ms = 0
    states: list[str] = []
    for ms_text, line in stamped:
        ms = int(ms_text)
        if match := re.search(r"\(X-Request-Id: (\S+)\)$", line):
            request_id = match.group(1)
        elif line == "healthz ok":
            ready_ms = ms
        elif match := re.fullmatch(r"job (\S+) submitted", line):
            job_id, submitted_ms = match.group(1), ms
        elif (match := STATE_LINE.match(line)) and (not states or states[-1] != match.group(1)):
            states.append(match.group(1))
            ended_ms = ms
    lines = [job_id, request_id]
    if job_id:
        lines.append(f"PASS\t{submitted_ms - ready_ms}\tPOST /generate-scene answered job {job_id}"
                     f" (X-Request-Id {request_id})")
        seen = " -> ".join(states) or "no state"
        moved = (len(states) >= 2 and states[-1] == "done"
                 and [s for s in FORWARD if s in states] == states)
        lines.append(f"{'PASS' if moved else 'FAIL'}\t{max(ended_ms - submitted_ms, 0)}\t/status seen: {seen}"
                     + ("" if moved else f" ({error})" if states[-1:] != ["done"] else " (no state before done)"))
    else:
        lines.append(f"FAIL\t0\tno job id: {error}")
        lines.append("SKIP\t0\tno job to follow")
    total = int(stamped[-1][0]) if stamped else 0
    lines.append(f"PASS\t{total}\tsmoke test passed: job {job_id} done" if status == "0"
                 else f"FAIL\t{total}\tsmoke test exit {status}: {error}")
    return "\n".join(lines)


def row(table: str, job_id: str, status_path: str, stdin: str) -> str:
    item = (json.loads(stdin) if stdin.strip() else {}).get("Item")
    if not item:
        return verdict(False, f"no row for job {job_id} in table {table}")
    status = json.loads(read(status_path))
    state = item.get("state", {}).get("S")
    result = json.loads(item["result"]["S"]) if "S" in item.get("result", {}) else None
    if (state, result) != (status.get("state"), status.get("result")):
        return verdict(False, f"{table} row of {job_id}: state {state}, result {digest(result)};"
                              f" /status: state {status.get('state')}, result {digest(status.get('result'))}")
    return verdict(True, f"{table} row of {job_id}: state {state}, result {digest(result)}, as /status")


def same_job(job_id: str, before_path: str, stdin: str) -> str:
    before, after = json.loads(read(before_path)), json.loads(stdin)
    same = (before.get("state"), before.get("result")) == (after.get("state"), after.get("result"))
    return verdict(same, f"after the new orchestrator deployment, /status of {job_id}: state {after.get('state')},"
                         f" result {digest(after.get('result'))}" + (", unchanged" if same else
                                                                     f" (before: {before.get('state')})"))


def threaded(job_id: str, request_id: str, err_path: str, stdin: str) -> str:
    """trace.sh's timeline of the job: both services' lines, all under one request id."""
    counts = {"orchestrator": 0, "worker": 0}
    ids: dict[str, set[str]] = {"orchestrator": set(), "worker": set()}
    for line in stdin.splitlines():
        match = TIMELINE_LINE.match(line)
        if not match or match.group(1) not in counts:
            continue
        counts[match.group(1)] += 1
        ids[match.group(1)].update(REQUEST_ID_FIELD.findall(line))
    total = sum(counts.values())
    if total == 0:
        return verdict(False, f"no log lines for job {job_id}: {last_line(read(err_path)) or 'trace.sh found none'}")
    where = f"{total} lines (orchestrator {counts['orchestrator']}, worker {counts['worker']})"
    if counts["worker"] == 0 or counts["orchestrator"] == 0:
        missing = "worker" if counts["worker"] == 0 else "orchestrator"
        return verdict(False, f"{where}: no {missing} lines for job {job_id}")
    every = ids["orchestrator"] | ids["worker"]
    if every != {request_id}:
        return verdict(False, f"{where} not threaded by one request id: orchestrator"
                              f" {','.join(sorted(ids['orchestrator'])) or 'none'},"
                              f" worker {','.join(sorted(ids['worker'])) or 'none'}; expected {request_id}")
    return verdict(True, f"{where} threaded by requestId {request_id}")


def retention(groups: list[str], stdin: str) -> str:
    found: dict[str, Any] = {}
    for doc in json_docs(stdin):
        found.update({g["logGroupName"]: g.get("retentionInDays") for g in doc.get("logGroups", [])})
    parts, ok = [], True
    for group in groups:
        if group not in found:
            parts.append(f"{group} not found")
        elif found[group] is None:
            parts.append(f"{group} never expires (no retention)")
        else:
            parts.append(f"{group} {found[group]} days")
            continue
        ok = False
    return verdict(ok, ", ".join(parts))


def metric(name: str, window: str, dimensions: str, stdin: str) -> str:
    points = json.loads(stdin).get("Datapoints", [])
    total = sum(p.get("Sum", 0) for p in points)
    where = f"{dimensions}, last {window} min"
    if total > 0:
        return verdict(True, f"{name} Sum {total:g} in {len(points)} datapoint(s) ({where})")
    return verdict(False, f"no {name} datapoint ({where})")


def alarms(names: list[str], stdin: str) -> str:
    states = {a["AlarmName"]: a.get("StateValue", "?") for a in json.loads(stdin).get("MetricAlarms", [])}
    missing = [n for n in names if n not in states]
    if missing:
        return verdict(False, f"{len(names) - len(missing)} of {len(names)} alarms exist;"
                              f" missing: {', '.join(missing)}")
    return verdict(True, f"{len(names)} of {len(names)} alarms exist: "
                         + ", ".join(f"{n} {states[n]}" for n in names))


def service(name: str, stdin: str) -> dict[str, Any] | None:
    doc = json.loads(stdin)
    return next((s for s in doc.get("services", []) if s.get("serviceName") == name), None)


def task_definition(name: str, stdin: str) -> str:
    found = service(name, stdin)
    return found["taskDefinition"] if found else ""


def image(name: str, expected: str, stdin: str) -> str:
    definition = json.loads(stdin)["taskDefinition"]
    containers = definition.get("containerDefinitions", [])
    main = next((c for c in containers if c.get("name") == name), containers[0] if containers else {})
    uri = main.get("image", "")
    tag = "" if "@" in uri else uri.rpartition(":")[2] if ":" in uri.rpartition("/")[2] else ""
    revision = f"{definition.get('family')}:{definition.get('revision')}"
    if not SHA_TAG.fullmatch(tag):
        return verdict(False, f"{revision} runs {uri}: image tag '{tag}' is not a 40-hex commit SHA")
    if expected and tag != expected:
        return verdict(False, f"{revision} runs image tag {tag}, not the expected {expected}")
    return verdict(True, f"{revision} runs image tag {tag}")


def rollout(name: str, stdin: str) -> str:
    found = service(name, stdin)
    if found is None:
        return verdict(False, f"service {name} not found")
    primaries = [d for d in found.get("deployments", []) if d.get("status") == "PRIMARY"]
    running, desired = found.get("runningCount"), found.get("desiredCount")
    state = primaries[0].get("rolloutState", "?") if len(primaries) == 1 else f"{len(primaries)} PRIMARY deployments"
    reason = primaries[0].get("rolloutStateReason", "") if len(primaries) == 1 else ""
    ok = state == "COMPLETED" and running == desired
    evidence = (f"PRIMARY rollout {state}, running {running} {'=' if running == desired else '!='} desired {desired},"
                f" {len(found.get('deployments', []))} deployment(s)")
    return verdict(ok, evidence + (f": {reason}" if not ok and reason else ""))


COMMANDS: dict[str, tuple[int, Callable[..., str], bool]] = {
    # name: (arguments, function, reads stdin)
    "health": (0, health, True),
    "smoke": (3, smoke, False),
    "row": (3, row, True),
    "same-job": (2, same_job, True),
    "threaded": (3, threaded, True),
    "metric": (3, metric, True),
    "task-definition": (1, task_definition, True),
    "image": (2, image, True),
    "rollout": (1, rollout, True),
}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    if command in ("retention", "alarms"):
        print(retention(args, sys.stdin.read()) if command == "retention" else alarms(args, sys.stdin.read()))
        return 0
    if command not in COMMANDS or len(args) != COMMANDS[command][0]:
        print(f"deploymentcheck.py: bad arguments: {' '.join(argv)}", file=sys.stderr)
        return 2
    _, function, reads_stdin = COMMANDS[command]
    try:
        print(function(*args, sys.stdin.read()) if reads_stdin else function(*args))
    except (ValueError, KeyError, TypeError) as exc:  # output the check cannot read: the check fails
        print(verdict(False, f"unreadable answer ({type(exc).__name__}: {exc})"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
