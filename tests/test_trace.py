"""scripts/trace.sh and its PowerShell port trace.ps1 (each test runs on both; the .ps1 where pwsh
exists): one job's timeline across both services, rebuilt from the log lines of a real local run
(one job that succeeds, one whose worker is down) read from files, from stdin and from CloudWatch
Logs (a moto server's Logs API through the AWS CLI); usage and exit codes.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import pty
import re
import subprocess
import time
from dataclasses import dataclass

import boto3
import pytest

import scriptrun
from apiclient import poll, submit
from conftest import MotoServer, Service, free_port

TRACE = scriptrun.SCRIPTS / "trace.sh"
TRACE_PS1 = scriptrun.SCRIPTS / "trace.ps1"
OWN_ENV = ("ORCHESTRATOR_LOG_GROUP", "WORKER_LOG_GROUP", "AWS_ENDPOINT_URL")
DEFAULT_GROUPS = {"orchestrator": "/ecs/ghost-engine-orchestrator-dev", "worker": "/ecs/ghost-engine-worker-dev"}
TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ")
EVENT = re.compile(r"^\S+ (\S+) +\S+ +(.*)$")  # timestamp service level message  fields
# Values that differ from run to run; everything else in a timeline line is compared literally.
VARYING = [(re.compile(r"\bowner=\S+"), "owner=<owner>"),
           (re.compile(r"\b(durationMs|JobDurationMs|JobQueueWaitMs)=[0-9.]+"), r"\1=<ms>"),
           (re.compile(r"\bretryInSeconds=[0-9.]+"), "retryInSeconds=<s>"),
           (re.compile(r"\(gave up after 1 retry in [0-9.]+ s\)"), "(gave up after 1 retry in <s> s)")]


@pytest.fixture(params=scriptrun.variants("trace"))
def script(request) -> pathlib.Path:
    """scripts/trace.sh, then scripts/trace.ps1."""
    return request.param


def trace(script: pathlib.Path, *args: str, stdin: str | int | None = "",
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs the trace script with the caller's settings and none from the developer's shell."""
    clean = {k: v for k, v in os.environ.items() if k not in OWN_ENV}
    return scriptrun.run(script, *args, env={**clean, **(env or {})}, stdin=stdin, timeout=60)


def reading(script: pathlib.Path, *sources: str) -> str:
    """The line the script writes on stderr before it reads files or stdin."""
    return f"{script.name}: reading {', '.join(sources)}\n"


CLOUDWATCH_SOURCE = re.compile(r"^(\S+): reading CloudWatch Logs (.+) in (.+), (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) to now "
                               r"\(last (\d+) min\)$")


def cloudwatch_source(stderr: str, script: pathlib.Path, server, groups: str = ", ".join(DEFAULT_GROUPS.values()),
                      since: int = 60) -> None:
    """The first stderr line names the log groups, region, endpoint and the time range it reads."""
    found = CLOUDWATCH_SOURCE.match(stderr.splitlines()[0])
    assert found, stderr
    start = datetime.datetime.fromisoformat(found[4].replace("Z", "+00:00")).timestamp()
    assert found.group(1, 2, 3, 5) == (script.name, groups, f"us-east-1 (AWS_REGION), endpoint {server.endpoint}",
                                       str(since))
    assert abs(time.time() - since * 60 - start) < 120


def normalised(stdout: str) -> list[str]:
    out = []
    for line in stdout.splitlines():
        assert TIMESTAMP.match(line) or line.startswith("    "), line
        line = TIMESTAMP.sub("<ts> ", line)
        for pattern, replacement in VARYING:
            line = pattern.sub(replacement, line)
        out.append(line)
    return out


def events(stdout: str) -> list[tuple[str, str]]:
    """(service, message) of each event line, in output order."""
    return [(m.group(1), m.group(2).split("  ")[0]) for m in map(EVENT.match, stdout.splitlines()) if m]


def timestamps(stdout: str) -> list[str]:
    return [m.group(1) for m in map(TIMESTAMP.match, stdout.splitlines()) if m]


# --- a real run: a worker, an orchestrator that reaches it, one whose worker is down ------------

@dataclass(frozen=True)
class Run:
    ok_job: str
    failed_job: str
    dead_url: str
    ok_orchestrator_log: pathlib.Path
    failed_orchestrator_log: pathlib.Path
    worker_log: pathlib.Path

    @property
    def files(self) -> list[str]:
        """Orchestrators first: on equal timestamps a line keeps its input order."""
        return [str(self.ok_orchestrator_log), str(self.failed_orchestrator_log), str(self.worker_log)]


def json_lines(path: pathlib.Path) -> list[dict]:
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:  # a line still being written
            pass
    return out


def wait_for_line(path: pathlib.Path, job_id: str, message: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not any(d.get("jobId") == job_id and d.get("message") == message for d in json_lines(path)):
        assert time.monotonic() < deadline, f"{path.name}: no {message!r} line for {job_id}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """The conftest ``Service`` processes, shared by this module's tests (one run, ~2 s)."""
    tmp = tmp_path_factory.mktemp("trace")
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: Connection refused
    started: list[Service] = []
    try:
        started.append(worker := Service("worker.py", tmp, {"WORK_MS": "200"}))
        started.append(ok := Service("orchestrator.py", tmp, {"WORKER_URL": worker.url, "ENVIRONMENT": "test"}))
        # One retry, cut to the budget's end (0.3 s, less than the first backoff), then failed.
        started.append(bad := Service("orchestrator.py", tmp, {"WORKER_URL": dead_url, "RETRY_BACKOFF_MS": "1000",
                                                               "WORKER_RETRY_BUDGET_SECONDS": "0.3",
                                                               "ENVIRONMENT": "test"}))
        ok_job = submit(ok.url, {"prompt": "a spooky hallway", "seed": 123, "style": "doom"},
                        {"X-Request-Id": "trace-ok-1"})
        failed_job = submit(bad.url, {"prompt": "a flooded crypt", "seed": 7, "style": "quake"},
                            {"X-Request-Id": "trace-failed-1"})
        assert poll(ok.url, ok_job)[-1]["state"] == "done"
        assert poll(bad.url, failed_job)[-1]["state"] == "failed"
        wait_for_line(ok.log_path, ok_job, "job metrics")
        wait_for_line(worker.log_path, ok_job, "request")
        wait_for_line(bad.log_path, failed_job, "job metrics")
    finally:
        for svc in started:
            svc.stop()
    return Run(ok_job, failed_job, dead_url, ok.log_path, bad.log_path, worker.log_path)


OK_TIMELINE = [
    "<ts> orchestrator INFO    job accepted  requestId=trace-ok-1 seed=123 style=doom",
    "<ts> orchestrator INFO    job claimed  requestId=trace-ok-1 attempt=1 owner=<owner>",
    "<ts> orchestrator INFO    request  requestId=trace-ok-1 method=POST path=/generate-scene status=202 durationMs=<ms>",
    "<ts> worker       INFO    job started  requestId=trace-ok-1 seed=123 style=doom",
    "<ts> worker       INFO    job finished  requestId=trace-ok-1 durationMs=<ms>",
    "<ts> worker       INFO    request  requestId=trace-ok-1 method=POST path=/process status=200 durationMs=<ms>",
    "<ts> orchestrator INFO    job finished  requestId=trace-ok-1 state=done attempts=1",
    "<ts> orchestrator INFO    job metrics  requestId=trace-ok-1 Service=orchestrator Environment=test JobSucceeded=1 "
    "JobFailed=0 JobCanceled=0 JobDurationMs=<ms> JobQueueWaitMs=<ms> state=done attempts=1",
]
# Causally ordered events of the succeeded job (the access lines race with their neighbours).
OK_CHAIN = [("orchestrator", "job accepted"), ("orchestrator", "job claimed"), ("worker", "job started"),
            ("orchestrator", "job finished"), ("orchestrator", "job metrics")]


def failed_timeline(dead_url: str) -> list[str]:
    """The failed job's lines in order, without the racing 202 access line and the stack."""
    refused = f"worker unreachable at {dead_url}: [Errno 111] Connection refused"
    return [
        "<ts> orchestrator INFO    job accepted  requestId=trace-failed-1 seed=7 style=quake",
        "<ts> orchestrator INFO    job claimed  requestId=trace-failed-1 attempt=1 owner=<owner>",
        f'<ts> orchestrator WARNING worker call failed; retrying  requestId=trace-failed-1 reason="{refused}" '
        "attempt=1 retryInSeconds=<s>",
        f"<ts> orchestrator ERROR   job failed  requestId=trace-failed-1 workerUrl={dead_url} "
        'jobError="the worker could not be reached; gave up after retrying for 0 s (1 retry)"  '
        f"error=WorkerError: {refused} (gave up after 1 retry in <s> s)",
        "<ts> orchestrator INFO    job finished  requestId=trace-failed-1 state=failed attempts=1",
        "<ts> orchestrator INFO    job metrics  requestId=trace-failed-1 Service=orchestrator Environment=test "
        "JobSucceeded=0 JobFailed=1 JobCanceled=0 JobDurationMs=<ms> JobQueueWaitMs=<ms> state=failed attempts=1",
    ]


FAILED_ACCESS_LINE = ("<ts> orchestrator INFO    request  requestId=trace-failed-1 method=POST path=/generate-scene "
                      "status=202 durationMs=<ms>")


def assert_ok_timeline(stdout: str) -> None:
    lines = normalised(stdout)
    assert sorted(lines) == sorted(OK_TIMELINE)
    assert timestamps(stdout) == sorted(timestamps(stdout))
    assert [e for e in events(stdout) if e in OK_CHAIN] == OK_CHAIN
    assert [m for s, m in events(stdout) if s == "worker"] == ["job started", "job finished", "request"]


def assert_failed_timeline(stdout: str, dead_url: str) -> None:
    lines = normalised(stdout)
    stack = [line for line in lines if line.startswith("    ")]
    assert [line for line in lines if line != FAILED_ACCESS_LINE and line not in stack] == failed_timeline(dead_url)
    assert lines.count(FAILED_ACCESS_LINE) == 1
    assert lines.index(FAILED_ACCESS_LINE) > 0  # after "job accepted"
    error_at = next(i for i, line in enumerate(lines) if " ERROR " in line)
    assert lines[error_at + 1:error_at + 1 + len(stack)] == stack  # the stack sits right under its line
    assert stack[0] == "    Traceback (most recent call last):"
    assert stack[-1] == (f"    workerclient.WorkerError: worker unreachable at {dead_url}: [Errno 111] Connection refused"
                         " (gave up after 1 retry in <s> s)")
    assert timestamps(stdout) == sorted(timestamps(stdout))


def test_succeeded_job_timeline_threads_both_services_from_log_files(script, run):
    proc = trace(script, run.ok_job, *run.files)
    assert (proc.returncode, proc.stderr) == (0, reading(script, *run.files))
    assert_ok_timeline(proc.stdout)


def test_failed_job_timeline_ends_in_one_error_line_naming_the_worker_url_with_its_stack(script, run):
    proc = trace(script, run.failed_job, *run.files)
    assert (proc.returncode, proc.stderr) == (0, reading(script, *run.files))
    assert_failed_timeline(proc.stdout, run.dead_url)
    assert "worker" not in {service for service, _ in events(proc.stdout)}


def test_lines_that_are_not_json_objects_are_ignored_in_a_mixed_file(script, run, tmp_path):
    mixed = tmp_path / "mixed.log"
    mixed.write_text("devstack: ready at http://127.0.0.1:8080 (Ctrl-C stops)\n"
                     + "".join(pathlib.Path(f).read_text(encoding="utf-8") + '{"timestamp":\n[1, 2]\n\n'
                               for f in run.files), encoding="utf-8")
    proc = trace(script, run.ok_job, str(mixed))
    assert (proc.returncode, proc.stderr) == (0, reading(script, str(mixed)))
    assert proc.stdout == trace(script, run.ok_job, *run.files).stdout


def test_stdin_is_read_when_no_file_is_given_or_as_dash(script, run):
    text = "".join(pathlib.Path(f).read_text(encoding="utf-8") for f in run.files)
    whole = trace(script, run.failed_job, stdin=text)
    assert (whole.returncode, whole.stderr) == (0, reading(script, "stdin"))
    assert_failed_timeline(whole.stdout, run.dead_url)
    assert whole.stdout == trace(script, run.failed_job, *run.files).stdout
    dash = trace(script, run.ok_job, *run.files[:2], "-", stdin=run.worker_log.read_text(encoding="utf-8"))
    assert (dash.returncode, dash.stderr) == (0, reading(script, *run.files[:2], "stdin"))
    assert dash.stdout == trace(script, run.ok_job, *run.files).stdout


def test_line_format_threading_by_request_id_and_sorting_on_literal_lines(script, tmp_path):
    lines = [
        '{"timestamp":"2026-01-01T00:00:00.300Z","level":"INFO","service":"worker","message":"job started",'
        '"requestId":"r-1","jobId":"j-1","seed":5,"tags":{"a":[1,2]},"note":"two words","flag":true}',
        '{"timestamp":"2026-01-01T00:00:00.100Z","level":"INFO","service":"orchestrator","message":"job accepted",'
        '"requestId":"r-1","jobId":"j-1","seed":5}',
        '{"timestamp":"2026-01-01T00:00:00.150Z","level":"INFO","service":"orchestrator","message":"job accepted",'
        '"requestId":"r-1","jobId":"j-2"}',
        '{"timestamp":"2026-01-01T00:00:00.200Z","level":"ERROR","service":"orchestrator","message":"dispatch failed",'
        '"requestId":"r-1","error":{"type":"OSError","message":"disk\\nfull","stack":"Traceback (most recent call '
        'last):\\n  File \\"d.py\\", line 9, in run\\nOSError: disk"}}',
        '{"timestamp":"2026-01-01T00:00:00.250Z","level":"WARNING","service":"orchestrator",'
        '"message":"progress not recorded","requestId":"r-1","jobId":"j-1","error":{"type":"ClientError",'
        '"message":"throttled","stack":"Traceback ..."}}',
        '{"timestamp":"2026-01-01T00:00:00.260Z","level":"INFO","service":"orchestrator","message":"request",'
        '"requestId":"r-9","method":"GET","path":"/healthz","status":200}',
        '{"timestamp":"2026-01-01T00:00:00.400Z","level":"INFO","service":"orchestrator","message":"job metrics",'
        '"requestId":"r-1","jobId":"j-1","_aws":{"Timestamp":1767225600400,"CloudWatchMetrics":[{"Namespace":'
        '"GhostEngine","Dimensions":[["Service","Environment"]],"Metrics":[{"Name":"JobSucceeded","Unit":"Count"},'
        '{"Name":"JobDurationMs","Unit":"Milliseconds"}]}]},"Service":"orchestrator","Environment":"dev",'
        '"JobSucceeded":1,"JobDurationMs":300,"state":"done"}',
    ]
    log = tmp_path / "a.log"
    log.write_text("\n".join(lines + lines[:2]) + "\n", encoding="utf-8")  # duplicates are shown once
    proc = trace(script, "j-1", str(log))
    assert (proc.returncode, proc.stderr) == (0, reading(script, str(log)))
    assert proc.stdout.splitlines() == [
        "2026-01-01T00:00:00.100Z orchestrator INFO    job accepted  requestId=r-1 seed=5",
        "2026-01-01T00:00:00.200Z orchestrator ERROR   dispatch failed  requestId=r-1  error=OSError: disk full",
        "    Traceback (most recent call last):",
        '      File "d.py", line 9, in run',
        "    OSError: disk",
        "2026-01-01T00:00:00.250Z orchestrator WARNING progress not recorded  requestId=r-1  "
        "error=ClientError: throttled",
        '2026-01-01T00:00:00.300Z worker       INFO    job started  requestId=r-1 seed=5 tags={"a":[1,2]} '
        'note="two words" flag=true',
        "2026-01-01T00:00:00.400Z orchestrator INFO    job metrics  requestId=r-1 Service=orchestrator "
        "Environment=dev JobSucceeded=1 JobDurationMs=300 state=done",
    ]


# --- CloudWatch Logs: the same lines in a moto server, read with the AWS CLI -------------------

def epoch_ms(line: str) -> int:
    stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
    return int(datetime.datetime.fromisoformat(stamp).timestamp() * 1000)


def put_lines(logs, group: str, stream: str, lines: list[str]) -> None:
    """One stream of a group, holding ``lines`` as events stamped with their own timestamps."""
    if not logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
        logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    batch = sorted(({"timestamp": epoch_ms(line), "message": line} for line in lines), key=lambda e: e["timestamp"])
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)


@pytest.fixture(scope="module")
def cloudwatch(run):
    """An own moto server (the default log group names are ours here) holding the run's lines
    as the awslogs driver would ship them: one stream per task in each service's group."""
    server = MotoServer()
    logs = boto3.client("logs", endpoint_url=server.endpoint, region_name="us-east-1")
    for path, stream in ((run.ok_orchestrator_log, "orchestrator/orchestrator/task-a"),
                         (run.failed_orchestrator_log, "orchestrator/orchestrator/task-b"),
                         (run.worker_log, "worker/worker/task-c")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
        put_lines(logs, DEFAULT_GROUPS[stream.split("/")[0]], stream, lines)
    yield server, logs
    server.stop()


def test_cloudwatch_gives_the_same_timelines_as_the_files_paginated_or_not(script, run, cloudwatch):
    server, _ = cloudwatch
    proc = trace(script, "--cloudwatch", run.ok_job, env=server.env())
    assert proc.returncode == 0
    cloudwatch_source(proc.stderr, script, server)
    assert len(proc.stderr.splitlines()) == 1
    assert_ok_timeline(proc.stdout)
    assert proc.stdout == trace(script, run.ok_job, *run.files).stdout
    # Two events per call: several filter-log-events pages per group, every one read.
    paged = trace(script, "--cloudwatch", "--page-size", "2", run.failed_job, env=server.env())
    assert paged.returncode == 0
    cloudwatch_source(paged.stderr, script, server)
    assert_failed_timeline(paged.stdout, run.dead_url)
    assert paged.stdout == trace(script, run.failed_job, *run.files).stdout


def test_cloudwatch_is_the_source_when_no_file_is_given_and_stdin_is_a_terminal(script, run, cloudwatch):
    server, _ = cloudwatch
    controller, terminal = pty.openpty()
    try:
        proc = trace(script, run.ok_job, stdin=terminal, env=server.env())
    finally:
        os.close(terminal)
        os.close(controller)
    assert proc.returncode == 0
    cloudwatch_source(proc.stderr, script, server)
    assert proc.stdout == trace(script, run.ok_job, *run.files).stdout


def test_cloudwatch_follows_request_ids_honours_since_and_the_group_variables(script, cloudwatch):
    server, logs = cloudwatch
    now_ms = int(time.time() * 1000)

    def line(offset_ms: int, service: str, message: str, **fields) -> str:
        stamp = datetime.datetime.fromtimestamp((now_ms + offset_ms) / 1000, datetime.UTC)
        doc = {"timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "level": "INFO",
               "service": service, "message": message, **fields}
        return json.dumps(doc, separators=(",", ":"))

    old = line(-90 * 60_000, "orchestrator", "job accepted", requestId="r-old", jobId="j-cw")
    accepted = line(-2000, "orchestrator", "job accepted", requestId="r-cw", jobId="j-cw")
    threaded = line(-1000, "worker", "payload parsed", requestId="r-cw")  # no jobId: found by its request id
    stranger = line(-500, "worker", "job started", requestId="r-cw", jobId="j-other")
    put_lines(logs, "/trace-test/orchestrator", "o", [old, accepted])
    put_lines(logs, "/trace-test/worker", "w", [threaded, stranger])
    env = {**server.env(), "ORCHESTRATOR_LOG_GROUP": "/trace-test/orchestrator",
           "WORKER_LOG_GROUP": "/trace-test/worker"}

    recent = trace(script, "--cloudwatch", "j-cw", env=env)
    assert recent.returncode == 0
    cloudwatch_source(recent.stderr, script, server, "/trace-test/orchestrator, /trace-test/worker")
    assert [TIMESTAMP.sub("", out) for out in recent.stdout.splitlines()] == [
        "orchestrator INFO    job accepted  requestId=r-cw",
        "worker       INFO    payload parsed  requestId=r-cw",
    ]
    wider = trace(script, "--cloudwatch", "--since", "120", "j-cw", env=env)
    assert wider.returncode == 0
    cloudwatch_source(wider.stderr, script, server, "/trace-test/orchestrator, /trace-test/worker", since=120)
    assert [TIMESTAMP.sub("", out) for out in wider.stdout.splitlines()] == [
        "orchestrator INFO    job accepted  requestId=r-old",
        "orchestrator INFO    job accepted  requestId=r-cw",
        "worker       INFO    payload parsed  requestId=r-cw",
    ]


def test_cloudwatch_without_lines_for_the_job_exits_1(script, cloudwatch):
    server, _ = cloudwatch
    proc = trace(script, "--cloudwatch", "no-such-job", env=server.env())
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.splitlines()[1:] == [f"{script.name}: no log lines for job no-such-job in CloudWatch Logs "
                                            "/ecs/ghost-engine-orchestrator-dev, /ecs/ghost-engine-worker-dev (last 60 min)"]


def test_cloudwatch_error_exits_1_naming_the_log_group(script, run, cloudwatch):
    server, _ = cloudwatch
    proc = trace(script, "--cloudwatch", run.ok_job, env={**server.env(), "WORKER_LOG_GROUP": "/trace-test/missing"})
    assert (proc.returncode, proc.stdout) == (1, "")
    assert "ResourceNotFoundException" in proc.stderr
    assert proc.stderr.splitlines()[-1] == f"{script.name}: aws logs filter-log-events failed on /trace-test/missing"


@pytest.mark.parametrize(("env", "target"), [
    ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-west-1"}, "eu-west-1 (AWS_DEFAULT_REGION)"),
    ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_PROFILE": "team"}, "eu-west-2 (profile team)"),
], ids=["AWS_DEFAULT_REGION", "profile"])
def test_cloudwatch_reads_the_region_the_aws_settings_name(script, run, cloudwatch, tmp_path, env, target):
    """The lines are in us-east-1: asked elsewhere, the groups do not exist there (before: trace.sh
    passed --region from AWS_REGION or us-east-1, ignoring AWS_DEFAULT_REGION and the profile)."""
    server, _ = cloudwatch
    config = tmp_path / "config"
    config.write_text("[profile team]\nregion = eu-west-2\n")
    proc = trace(script, "--cloudwatch", run.ok_job, env={**server.env(), "AWS_CONFIG_FILE": str(config), **env})
    assert (proc.returncode, proc.stdout) == (1, "")
    assert f" in {target}, endpoint {server.endpoint}, " in proc.stderr.splitlines()[0]
    assert proc.stderr.splitlines()[-1] == (f"{script.name}: aws logs filter-log-events failed on "
                                            "/ecs/ghost-engine-orchestrator-dev")


# --- no lines, usage ---------------------------------------------------------------------------

def test_no_lines_for_the_job_exits_1_naming_the_sources(script, run):
    proc = trace(script, "no-such-job", str(run.worker_log))
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (reading(script, str(run.worker_log))
                           + f"{script.name}: no log lines for job no-such-job in {run.worker_log}\n")
    proc = trace(script, "no-such-job", stdin="not json\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1, "", reading(script, "stdin") + f"{script.name}: no log lines for job no-such-job in stdin\n")


def test_usage_documents_the_log_group_and_region_variables(script):
    proc = trace(script, "--help")
    assert [name for name in ("ORCHESTRATOR_LOG_GROUP", "WORKER_LOG_GROUP", "AWS_REGION")
            if f"env {name}," not in proc.stdout] == []


@pytest.mark.parametrize(("args", "message"), [
    ([], "JOB_ID is required"),
    (["--bogus", "j-1"], "unknown option: --bogus"),
    (["j-1", "--since"], "--since needs a value"),
    (["--since", "0", "j-1"], "--since must be a whole number > 0, got '0'"),
    (["--page-size", "ten", "j-1"], "--page-size must be a whole number > 0, got 'ten'"),
    (["--page-size", "10001", "j-1"], "--page-size must be at most 10000, got '10001'"),
    (["--cloudwatch", "j-1", "a.log"], "--cloudwatch reads no LOG_FILE, got 'a.log'"),
    (['j"1'], "JOB_ID may hold only A-Z a-z 0-9 . _ : ; = / + -, got 'j\"1'"),
])
def test_bad_usage_exits_2_with_the_reason_and_usage_on_stderr(script, args, message):
    proc = trace(script, *args)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines()[:2] == [f"{script.name}: {message}",
                                            f"Usage: {script.name} [options] JOB_ID [LOG_FILE...]"]


def test_unreadable_log_file_exits_2_naming_it(script, tmp_path):
    proc = trace(script, "j-1", str(tmp_path / "absent.log"))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (reading(script, str(tmp_path / "absent.log"))
                           + f"{script.name}: cannot read {tmp_path / 'absent.log'}: No such file or directory\n")


# --- the PowerShell port: the same program behind it, the same bytes out ------------------------

def test_both_scripts_hand_the_json_work_to_jobtimeline_py_under_their_own_name():
    sh, ps1 = TRACE.read_text(encoding="utf-8"), TRACE_PS1.read_text(encoding="utf-8")
    assert sh.count('python3 "${TIMELINE}" --prog "${PROG}" ') == 3
    assert ps1.count("& $PYTHON $TIMELINE --prog $PROG ") == 3
    assert "/jobtimeline.py\"" in sh and "'jobtimeline.py'" in ps1
    # The region is the AWS settings chain's (lib/aws.ps1 holds its last default, us-east-1).
    assert ". (Join-Path $PSScriptRoot 'lib' 'aws.ps1')" in ps1
    assert "'us-east-1'" in (TRACE_PS1.parent / "lib" / "aws.ps1").read_text(encoding="utf-8")
    for default in ("/ecs/ghost-engine-orchestrator-dev", "/ecs/ghost-engine-worker-dev",
                    "DEFAULT_SINCE_MINUTES -Value 60", "DEFAULT_PAGE_SIZE -Value 1000",
                    "--query 'events[].[message]' --output text"):
        assert default in ps1
    messages = re.findall(r'\bdie "([^"$\n]+)', sh)
    assert messages == ["aws logs filter-log-events failed on ", "the aws CLI is not installed"]
    assert [m for m in messages if f"Exit-WithError '{m}" not in ps1 and f'Exit-WithError "{m}' not in ps1] == []


@scriptrun.requires_pwsh
@pytest.mark.parametrize("job", ["ok_job", "failed_job"])
def test_powershell_port_prints_exactly_what_the_bash_script_prints(run, job):
    sh = trace(TRACE, getattr(run, job), *run.files)
    ps1 = trace(TRACE_PS1, getattr(run, job), *run.files)
    assert (ps1.returncode, ps1.stdout) == (sh.returncode, sh.stdout) == (0, sh.stdout)
    assert (sh.stderr, ps1.stderr) == (reading(TRACE, *run.files), reading(TRACE_PS1, *run.files))
