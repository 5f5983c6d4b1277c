"""scripts/verify-deployment.sh against a stand-in for a deployed stack: the real orchestrator and
worker processes on loopback (in the ALB's place), and a moto server holding what AWS would: the
jobs table (the orchestrator's DynamoDB mode), the ECS cluster, services and task definitions,
the log groups (with retention) and alarms.

A shipper thread plays the awslogs driver and CloudWatch: it copies each service's log lines,
as the service wrote them, into its log group while the script runs, and puts the datapoints
CloudWatch would extract from the orchestrator's EMF lines (moto does not extract EMF). Each test
has its own environment name, so its cluster, table, log groups, alarms and metric dimension are
its own on the one moto server. One run passes every check (with --restart, which really
replaces the orchestrator process); the others each break one thing and show its check failing
for that reason. The PowerShell port is parsed and compared in test_powershell.py.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import pathlib
import re
import shutil
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

import scriptrun
from conftest import ROOT, MotoServer, Service, create_table, serving_in_thread, stop_process

VERIFY = scriptrun.SCRIPTS / "verify-deployment.sh"
SHA = "3f9c2a1b7e4d5c6f8a9b0c1d2e3f4a5b6c7d8e9f"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
OWN_ENV = ("ECS_CLUSTER", "JOBS_TABLE_NAME", "METRICS_NAMESPACE", "ORCHESTRATOR_SERVICE", "WORKER_SERVICE",
           "ORCHESTRATOR_LOG_GROUP", "WORKER_LOG_GROUP", "VERIFY_WAIT_SECONDS", "VERIFY_POLL_INTERVAL_SECONDS",
           "DEPLOY_TIMEOUT_SECONDS", "EXPECTED_IMAGE_TAG", "BASE_URL", "ENVIRONMENT", "AWS_PROFILE")
CHECK_LINE = re.compile(r"^  (PASS|FAIL|SKIP)  (.{22}) (.*) \((\d+\.\d) s\)$")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
REQUEST_ID = r"smoke-[0-9a-f]{12}"
DIGEST = r"sha256:[0-9a-f]{64}"
_environments = itertools.count(1)


@pytest.fixture(scope="module")
def moto():
    """The module's moto server; every service runs 1 task (desiredCount 1 is stable at once)."""
    server = MotoServer(extra_env={"MOTO_ECS_SERVICE_RUNNING": "1"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    svc = Service("worker.py", tmp_path_factory.mktemp("verify-worker"), {"WORK_MS": "1200"})
    yield svc
    svc.stop()


class Shipper:
    """Copies the services' new log lines into CloudWatch Logs every 0.1 s, as the awslogs driver
    does, and puts the metric datapoints of each EMF line, as CloudWatch does."""

    def __init__(self, moto: MotoServer, emf: bool = True, worker_request_id: str | None = None):
        kw = {"endpoint_url": moto.endpoint, "region_name": "us-east-1"}
        self.logs, self.cloudwatch = boto3.client("logs", **kw), boto3.client("cloudwatch", **kw)
        self.emf, self.worker_request_id = emf, worker_request_id
        self.sources: dict[pathlib.Path, list] = {}  # path -> [group, stream, offset]
        self.lock, self.stop_event = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def follow(self, path: pathlib.Path, group: str, stream: str, from_end: bool = False) -> None:
        self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
        with self.lock:
            self.sources[path] = [group, stream, path.stat().st_size if from_end else 0]

    def run(self) -> None:
        while not self.stop_event.wait(0.1):
            self.ship()

    def ship(self) -> None:
        with self.lock:
            for path, source in self.sources.items():
                text = path.read_text(encoding="utf-8")[source[2]:]
                complete = text[:text.rfind("\n") + 1]
                source[2] += len(complete)
                docs = [json.loads(line) for line in complete.splitlines() if line.startswith("{")]
                if docs:
                    self.put(source[0], source[1], docs)

    def put(self, group: str, stream: str, docs: list[dict]) -> None:
        if self.worker_request_id and group.endswith("-worker-" + group.rsplit("-", 1)[1]):
            docs = [{**doc, "requestId": self.worker_request_id} if "requestId" in doc else doc for doc in docs]
        events = [{"timestamp": epoch_ms(doc["timestamp"]), "message": json.dumps(doc)} for doc in docs]
        self.logs.put_log_events(logGroupName=group, logStreamName=stream,
                                 logEvents=sorted(events, key=lambda e: e["timestamp"]))
        for doc in docs:
            if self.emf and "_aws" in doc:
                self.put_emf(doc)

    def put_emf(self, doc: dict) -> None:
        """The datapoints CloudWatch extracts from one EMF document (each directive, dimension set, metric)."""
        when = datetime.datetime.fromtimestamp(doc["_aws"]["Timestamp"] / 1000, datetime.UTC)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = [{"Name": name, "Value": doc[name]} for name in dimension_set]
                self.cloudwatch.put_metric_data(Namespace=directive["Namespace"], MetricData=[
                    {"MetricName": m["Name"], "Dimensions": dimensions, "Value": doc[m["Name"]], "Unit": m["Unit"],
                     "Timestamp": when} for m in directive["Metrics"]])

    def __enter__(self) -> Shipper:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)


def epoch_ms(stamp: str) -> int:
    return int(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


class Deployment:
    """One environment's stack: its table, orchestrator process, cluster, log groups and alarms."""

    def __init__(self, moto: MotoServer, worker: Service, tmp_path: pathlib.Path, *, memory: bool = False,
                 tags: tuple[str, str] = (SHA, SHA), worker_desired: int = 1, retention: bool = True,
                 alarms: bool = True):
        self.moto, self.worker, self.tmp_path = moto, worker, tmp_path
        self.environment = f"vt{next(_environments)}"
        self.table = f"ghost-engine-jobs-{self.environment}"
        self.cluster = f"ghost-engine-cluster-{self.environment}"
        self.groups = {s: f"/ecs/ghost-engine-{s}-{self.environment}" for s in ("orchestrator", "worker")}
        table_env = create_table(moto, self.table)
        self.orchestrator_env = {"WORKER_URL": worker.url, "ENVIRONMENT": self.environment,
                                 **({} if memory else {**table_env, "PROGRESS_WRITE_INTERVAL_MS": "300"})}
        self.orchestrator = Service("orchestrator.py", tmp_path, self.orchestrator_env)
        self.started = [self.orchestrator]
        session = boto3.session.Session(region_name="us-east-1")
        self.clients = {name: session.client(name, endpoint_url=moto.endpoint)
                        for name in ("ecs", "logs", "cloudwatch", "dynamodb")}
        self.build_ecs(tags, worker_desired)
        for group in self.groups.values():
            self.clients["logs"].create_log_group(logGroupName=group)
            if retention:
                self.clients["logs"].put_retention_policy(logGroupName=group, retentionInDays=14)
        if alarms:
            for name in self.alarm_names():
                self.clients["cloudwatch"].put_metric_alarm(
                    AlarmName=name, Namespace="GhostEngine", MetricName="JobFailed", Statistic="Sum", Period=60,
                    EvaluationPeriods=1, Threshold=0, ComparisonOperator="GreaterThanThreshold")

    def alarm_names(self) -> list[str]:
        return [f"ghost-engine-{name}-{self.environment}"
                for name in ("alb-5xx", "job-failed", "orchestrator-running-tasks", "worker-running-tasks")]

    def build_ecs(self, tags: tuple[str, str], worker_desired: int) -> None:
        ecs = self.clients["ecs"]
        ecs.create_cluster(clusterName=self.cluster)
        for (service, port), tag in zip((("orchestrator", 8080), ("worker", 8081)), tags, strict=True):
            family = f"ghost-engine-{service}-{self.environment}"
            ecs.register_task_definition(
                family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
                containerDefinitions=[{"name": service, "image": f"{REGISTRY}/ghost-engine-{service}-dev:{tag}",
                                       "essential": True, "portMappings": [{"containerPort": port}]}])
            ecs.create_service(cluster=self.cluster, serviceName=service, taskDefinition=family,
                               launchType="FARGATE", desiredCount=worker_desired if service == "worker" else 1)

    def shipper(self, **kw) -> Shipper:
        shipper = Shipper(self.moto, **kw)
        shipper.follow(self.orchestrator.log_path, self.groups["orchestrator"], "orchestrator/orchestrator/task-1")
        shipper.follow(self.worker.log_path, self.groups["worker"], "worker/worker/task-1", from_end=True)
        return shipper

    def restart_orchestrator(self, shipper: Shipper) -> None:
        """What a forced new deployment does to the one task: a new process on the same address."""
        stop_process(self.orchestrator.proc)
        self.orchestrator = Service("orchestrator.py", self.tmp_path, self.orchestrator_env, port=self.orchestrator.port)
        self.started.append(self.orchestrator)
        shipper.follow(self.orchestrator.log_path, self.groups["orchestrator"], "orchestrator/orchestrator/task-2")

    def stop(self) -> None:
        for svc in self.started:
            svc.stop()


@pytest.fixture
def deployment(moto, worker, tmp_path):
    made: list[Deployment] = []

    def make(**kw) -> Deployment:
        made.append(Deployment(moto, worker, tmp_path, **kw))
        return made[-1]

    yield make
    for d in made:
        d.stop()


def fake_aws(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory with an ``aws`` that records each call's arguments in $AWS_CALLS, runs the real
    CLI, then: after ``update-service --force-new-deployment`` asks $RESTART_URL to replace the
    orchestrator (as ECS would); with $AWS_REFUSE, fails every call but ``configure``; for ``describe-services`` marks $FAILED_ROLLOUT's PRIMARY
    deployment FAILED, as ECS reports a rollout its circuit breaker stopped."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "aws"
    script.write_text(f"""#!/usr/bin/env bash
echo "$*" >>"${{AWS_CALLS:-/dev/null}}"
if [[ -n "${{AWS_REFUSE:-}}" && "$1" != configure ]]; then echo "refused by the test" >&2; exit 1; fi
if [[ " $* " == *" describe-services "* && -n "${{FAILED_ROLLOUT:-}}" ]]; then
  '{shutil.which("aws")}' "$@" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
for service in doc["services"]:
    if service["serviceName"] == sys.argv[1]:
        service["deployments"][0].update(rolloutState="FAILED",
            rolloutStateReason="ECS deployment circuit breaker: tasks failed to start.")
json.dump(doc, sys.stdout)' "$FAILED_ROLLOUT"
  exit "${{PIPESTATUS[0]}}"
fi
'{shutil.which("aws")}' "$@" || exit
if [[ " $* " == *" update-service "*" --force-new-deployment "* && -n "${{RESTART_URL:-}}" ]]; then
  curl --silent --fail --max-time 60 -X POST "$RESTART_URL" >/dev/null
fi
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def verify(d: Deployment, *args: str, bin_dir: pathlib.Path | None = None, **env: str):
    clean = {k: v for k, v in os.environ.items() if k not in OWN_ENV}
    full = {**clean, **d.moto.env(), "ENVIRONMENT": d.environment, "VERIFY_WAIT_SECONDS": "20",
            "VERIFY_POLL_INTERVAL_SECONDS": "0.3", "SMOKE_POLL_INTERVAL_SECONDS": "0.2", **env}
    if bin_dir is not None:
        full["PATH"] = f"{bin_dir}{os.pathsep}{full['PATH']}"
    return scriptrun.run(VERIFY, *args, d.orchestrator.url, env=full, timeout=180)


def checklist(stdout: str) -> dict[str, tuple[str, str]]:
    """{check name: (PASS/FAIL/SKIP, evidence)} of every check line; the other lines are the
    header, the four step titles and the tally."""
    checks, others = {}, []
    for line in stdout.splitlines():
        match = CHECK_LINE.match(line)
        if match:
            checks[match.group(2).strip()] = (match.group(1), match.group(3))
        else:
            others.append(line)
    assert others[1:] == ["1. Kernel", "2. Persistence", "3. Observability", "4. Deploy", others[-1]], stdout
    return checks


def expected_pass(d: Deployment, job: str, restart: str) -> dict[str, tuple[str, str]]:
    """Every check's line of a healthy run, as patterns."""
    return {
        "healthz": ("PASS", r'GET /healthz: HTTP 200 \{"ok":true\}'),
        "job accepted": ("PASS", rf"POST /generate-scene answered job {job} \(X-Request-Id ({REQUEST_ID})\)"),
        "status to done": ("PASS", r"/status seen: (queued -> )?running -> done"),
        "smoke test": ("PASS", rf"smoke test passed: job {job} done"),
        "table row": ("PASS", rf"{d.table} row of {job}: state done, result {DIGEST}, as /status"),
        "restart": restart,
        "logs threaded": ("PASS", rf"\d+ lines \(orchestrator \d+, worker \d+\) threaded by requestId {REQUEST_ID}"),
        "log retention": ("PASS", f"{d.groups['orchestrator']} 14 days, {d.groups['worker']} 14 days"),
        "metric JobSucceeded": ("PASS", rf"JobSucceeded Sum [1-9]\d* in \d+ datapoint\(s\) \(GhostEngine "
                                        rf"Service=orchestrator Environment={d.environment}, last 15 min\)"),
        "alarms": ("PASS", "4 of 4 alarms exist: " + ", ".join(f"{n} OK" for n in d.alarm_names())),
        "orchestrator image": ("PASS", f"ghost-engine-orchestrator-{d.environment}:1 runs image tag {SHA}"),
        "worker image": ("PASS", f"ghost-engine-worker-{d.environment}:1 runs image tag {SHA}"),
        "orchestrator rollout": ("PASS", r"PRIMARY rollout COMPLETED, running 1 = desired 1, 1 deployment\(s\)"),
        "worker rollout": ("PASS", r"PRIMARY rollout COMPLETED, running 1 = desired 1, 1 deployment\(s\)"),
        "healthz after": ("PASS", r'GET /healthz: HTTP 200 \{"ok":true\}'),
    }


def job_of(stdout: str) -> str:
    match = re.search(rf"answered job ({UUID})", stdout)
    assert match, stdout
    return match.group(1)


def assert_checks(stdout: str, expected: dict[str, tuple[str, str]]) -> None:
    checks = checklist(stdout)
    assert list(checks) == list(expected), stdout
    for name, (status, pattern) in expected.items():
        assert checks[name][0] == status and re.fullmatch(pattern, checks[name][1]), (name, checks[name], stdout)


AWS_CALL_ACTIONS = {  # the CLI command each call runs -> the IAM action it needs (README "Verify a deployment")
    "dynamodb get-item": "dynamodb:GetItem",
    "logs filter-log-events": "logs:FilterLogEvents",
    "logs describe-log-groups": "logs:DescribeLogGroups",
    "cloudwatch get-metric-statistics": "cloudwatch:GetMetricStatistics",
    "cloudwatch describe-alarms": "cloudwatch:DescribeAlarms",
    "ecs describe-services": "ecs:DescribeServices",
    "ecs describe-task-definition": "ecs:DescribeTaskDefinition",
    "ecs update-service": "ecs:UpdateService",
    "ecs wait": "ecs:DescribeServices",
}


def actions_called(calls: pathlib.Path) -> set[str]:
    words = [line.split() for line in calls.read_text().splitlines()]
    commands = {" ".join(w[i:i + 2]) for w in words for i in range(len(w) - 1)
                if w[i] in ("dynamodb", "logs", "cloudwatch", "ecs")}
    assert commands <= set(AWS_CALL_ACTIONS), commands
    return {AWS_CALL_ACTIONS[c] for c in commands}


def test_every_check_passes_against_a_healthy_deployment_with_restart(deployment, tmp_path):
    d = deployment()
    calls = tmp_path / "calls.txt"
    with d.shipper() as shipper:
        restarts: list[int] = []

        class Restart(BaseHTTPRequestHandler):
            def do_POST(self):
                d.restart_orchestrator(shipper)
                restarts.append(d.orchestrator.proc.pid)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        first_pid = d.orchestrator.proc.pid
        with serving_in_thread(ThreadingHTTPServer(("127.0.0.1", 0), Restart)) as port:
            proc = verify(d, "--restart", "--expect-tag", SHA, bin_dir=fake_aws(tmp_path), AWS_CALLS=str(calls),
                          RESTART_URL=f"http://127.0.0.1:{port}/")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout + proc.stderr
    job = job_of(proc.stdout)
    restart = ("PASS", rf"after the new orchestrator deployment, /status of {job}: state done, result {DIGEST}, unchanged")
    assert_checks(proc.stdout, expected_pass(d, job, restart))
    assert proc.stdout.splitlines()[0] == (
        f"Verifying {d.orchestrator.url}: region us-east-1 (AWS_REGION), cluster {d.cluster},"
        f" services orchestrator worker, table {d.table}")
    assert proc.stdout.splitlines()[-1] == "15 PASS, 0 FAIL, 0 SKIP"
    assert len(restarts) == 1 and restarts[0] != first_pid  # a new orchestrator process answered the re-read
    # The job is one: the smoke test's, whose request id threads the lines.
    checks = checklist(proc.stdout)
    request_id = re.search(REQUEST_ID, checks["job accepted"][1]).group(0)
    assert request_id in checks["logs threaded"][1]
    assert actions_called(calls) == {
        "dynamodb:GetItem", "logs:FilterLogEvents", "logs:DescribeLogGroups", "cloudwatch:GetMetricStatistics",
        "cloudwatch:DescribeAlarms", "ecs:DescribeServices", "ecs:DescribeTaskDefinition", "ecs:UpdateService"}


# The read actions the deploy workflow's run needs; infra/aws/terraform/ci.tf grants exactly
# these for the verification (tests/test_terraform.py reads the applied policy back).
DEPLOY_ROLE_VERIFY_ACTIONS = {
    "dynamodb:GetItem", "logs:FilterLogEvents", "logs:DescribeLogGroups", "cloudwatch:GetMetricStatistics",
    "cloudwatch:DescribeAlarms", "ecs:DescribeServices", "ecs:DescribeTaskDefinition"}


def test_readme_and_the_deploy_role_list_the_same_iam_actions_as_the_calls_need():
    """README's table of calls names each IAM action; ci.tf's Verify statements grant the reads the
    deploy role did not already have, and nothing more."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("## Verify a deployment", 1)[1]
    table = [row.split("|")[2].strip(" `") for row in readme.splitlines() if row.startswith("| `")]
    assert set(table) - {"none (reads the local profile)"} == set(AWS_CALL_ACTIONS.values())
    ci_tf = (ROOT / "infra" / "aws" / "terraform" / "ci.tf").read_text(encoding="utf-8")
    verify_statements = re.findall(r'sid += "Verify\w+"\s+actions += \[([^\]]*)\]', ci_tf)
    granted = {action for group in verify_statements for action in re.findall(r'"([^"]+)"', group)}
    assert len(verify_statements) == 5
    assert granted | {"ecs:DescribeServices", "ecs:DescribeTaskDefinition"} == DEPLOY_ROLE_VERIFY_ACTIONS
    assert '"ecs:DescribeTaskDefinition"' in ci_tf and '"ecs:DescribeServices"' in ci_tf  # deploy.sh's


def failing(proc, names: list[str]) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[-1] == f"verify-deployment.sh: {len(names)} check(s) failed: {', '.join(names)}"


def test_a_job_missing_from_the_table_fails_the_row_check_and_nothing_else(deployment, tmp_path):
    """The orchestrator kept the job in memory (no JOBS_TABLE_NAME). Without --restart the run is
    read-only: it calls exactly the read actions the deploy role is granted, and no update-service."""
    d = deployment(memory=True)
    calls = tmp_path / "calls.txt"
    with d.shipper():
        proc = verify(d, bin_dir=fake_aws(tmp_path), AWS_CALLS=str(calls))
    failing(proc, ["table row"])
    job = job_of(proc.stdout)
    expected = expected_pass(d, job, ("SKIP", re.escape("not requested (--restart forces a new orchestrator deployment)")))
    expected["table row"] = ("FAIL", f"no row for job {job} in table {d.table}")
    assert_checks(proc.stdout, expected)
    assert proc.stdout.splitlines()[-1] == "13 PASS, 1 FAIL, 1 SKIP"
    assert actions_called(calls) == DEPLOY_ROLE_VERIFY_ACTIONS
    assert all(" update-service " not in f" {line} " for line in calls.read_text().splitlines())


def test_log_lines_not_threaded_by_one_request_id_fail_and_so_does_missing_retention(deployment):
    """The worker's lines arrive under a request id of their own (the orchestrator did not
    forward it), and the log groups were created without retention."""
    d = deployment(retention=False)
    with d.shipper(worker_request_id="worker-own-1"):
        proc = verify(d, VERIFY_WAIT_SECONDS="2")
    failing(proc, ["logs threaded", "log retention"])
    checks = checklist(proc.stdout)
    assert re.fullmatch(rf"\d+ lines \(orchestrator \d+, worker \d+\) not threaded by one request id: orchestrator"
                        rf" ({REQUEST_ID}), worker worker-own-1; expected \1", checks["logs threaded"][1])
    assert checks["log retention"] == ("FAIL", f"{d.groups['orchestrator']} never expires (no retention),"
                                               f" {d.groups['worker']} never expires (no retention)")


def test_a_stack_that_ships_no_logs_and_runs_another_commit_fails_those_checks(deployment):
    """Nothing reaches CloudWatch (no shipper: no log lines, no metric), and both services run
    another image than the commit the caller expects."""
    other = "0" * 40
    d = deployment()
    proc = verify(d, "--expect-tag", other, VERIFY_WAIT_SECONDS="1")
    failing(proc, ["logs threaded", "metric JobSucceeded", "orchestrator image", "worker image"])
    job = job_of(proc.stdout)
    checks = checklist(proc.stdout)
    assert checks["logs threaded"] == (
        "FAIL", f"no log lines for job {job}: trace.sh: no log lines for job {job} in CloudWatch Logs"
                f" {d.groups['orchestrator']}, {d.groups['worker']} (last 15 min)")
    assert checks["worker image"] == (
        "FAIL", f"ghost-engine-worker-{d.environment}:1 runs image tag {SHA}, not the expected {other}")


def test_an_absent_metric_fails_after_the_bounded_wait_and_so_do_missing_alarms(deployment):
    d = deployment(alarms=False)
    with d.shipper(emf=False):
        proc = verify(d, VERIFY_WAIT_SECONDS="2")
    failing(proc, ["metric JobSucceeded", "alarms"])
    checks = checklist(proc.stdout)
    assert checks["metric JobSucceeded"] == (
        "FAIL", f"no JobSucceeded datapoint (GhostEngine Service=orchestrator Environment={d.environment}, last 15 min)")
    assert float(re.search(r"\((\d+\.\d) s\)$", [line for line in proc.stdout.splitlines()
                                                 if "metric JobSucceeded" in line][0]).group(1)) >= 2
    assert checks["alarms"] == ("FAIL", "0 of 4 alarms exist; missing: " + ", ".join(d.alarm_names()))


def test_an_image_tagged_latest_and_failed_rollouts_fail_the_deploy_checks(deployment, tmp_path):
    """The worker runs `latest` and wants 2 tasks while 1 runs (moto: rollout IN_PROGRESS); the
    orchestrator's rollout was stopped by the circuit breaker (FAILED, as ECS reports it)."""
    d = deployment(tags=(SHA, "latest"), worker_desired=2)
    with d.shipper():
        proc = verify(d, bin_dir=fake_aws(tmp_path), FAILED_ROLLOUT="orchestrator")
    failing(proc, ["worker image", "orchestrator rollout", "worker rollout"])
    checks = checklist(proc.stdout)
    assert checks["orchestrator image"] == ("PASS", f"ghost-engine-orchestrator-{d.environment}:1 runs image tag {SHA}")
    assert checks["worker image"] == (
        "FAIL", f"ghost-engine-worker-{d.environment}:1 runs {REGISTRY}/ghost-engine-worker-dev:latest:"
                " image tag 'latest' is not a 40-hex commit SHA")
    assert checks["orchestrator rollout"] == (
        "FAIL", "PRIMARY rollout FAILED, running 1 = desired 1, 1 deployment(s):"
                " ECS deployment circuit breaker: tasks failed to start.")
    assert re.fullmatch(r"PRIMARY rollout IN_PROGRESS, running 1 != desired 2, 1 deployment\(s\): ECS deployment"
                        r" ecs-svc/\d+ in progress\.", checks["worker rollout"][1])
    assert checks["worker rollout"][0] == "FAIL"


def test_an_unreachable_stack_fails_every_check_that_needs_it_without_stopping(deployment, refused_port):
    d = deployment()
    clean = {k: v for k, v in os.environ.items() if k not in OWN_ENV}
    proc = scriptrun.run(VERIFY, "--cluster", "no-such-cluster", f"http://127.0.0.1:{refused_port}",
                         env={**clean, **d.moto.env(), "ENVIRONMENT": d.environment, "VERIFY_WAIT_SECONDS": "0"},
                         timeout=120)
    assert proc.returncode == 1
    checks = checklist(proc.stdout)
    assert checks["healthz"][0] == "FAIL" and checks["healthz"][1].startswith(
        f"cannot reach http://127.0.0.1:{refused_port}/healthz: curl: (7)")
    assert checks["job accepted"] == ("FAIL", f"no job id: smoke-test.sh: cannot reach http://127.0.0.1:{refused_port}/healthz")
    assert checks["status to done"] == ("SKIP", "no job to follow")
    assert [checks[n][0] for n in ("table row", "logs threaded")] == ["SKIP", "SKIP"]
    assert checks["orchestrator image"] == ("FAIL", "aws ecs describe-services failed: An error occurred"
                                            " (ClusterNotFoundException) when calling the DescribeServices operation:"
                                            " Cluster not found.")


@pytest.mark.parametrize(("args", "env", "message"), [
    ([], {}, "BASE_URL is required"),
    (["--bogus", "http://a"], {}, "unknown option: --bogus"),
    (["http://a", "http://b"], {}, "too many arguments: http://b"),
    (["ftp://a"], {}, "BASE_URL must start with http:// or https://, got 'ftp://a'"),
    (["--wait", "soon", "http://a"], {}, "--wait must be a whole number of seconds, got 'soon'"),
    (["--expect-tag", "latest", "http://a"], {}, "--expect-tag must be a 40-hex commit SHA, got 'latest'"),
    (["http://a"], {"DEPLOY_TIMEOUT_SECONDS": "0"}, "DEPLOY_TIMEOUT_SECONDS must be a whole number of seconds > 0, got '0'"),
    (["--region"], {}, "--region needs a value"),
])
def test_bad_usage_exits_2_with_the_reason_and_usage_on_stderr(args, env, message):
    clean = {k: v for k, v in os.environ.items() if k not in OWN_ENV}
    proc = scriptrun.run(VERIFY, *args, env={**clean, **env})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines()[:2] == [f"verify-deployment.sh: {message}",
                                            "Usage: verify-deployment.sh [options] BASE_URL"]


def test_help_says_restart_is_the_one_disruptive_option_and_names_every_variable():
    proc = scriptrun.run(VERIFY, "--help")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert "Read-only, apart from the smoke test's one job." in proc.stdout
    assert "--restart           DISRUPTIVE: force a new deployment of the orchestrator service" in proc.stdout
    assert proc.stdout.count("DISRUPTIVE") == 1
    for name in ("BASE_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "ENVIRONMENT",
                 "ECS_CLUSTER", "JOBS_TABLE_NAME", "METRICS_NAMESPACE", "EXPECTED_IMAGE_TAG", "VERIFY_WAIT_SECONDS",
                 "VERIFY_POLL_INTERVAL_SECONDS", "DEPLOY_TIMEOUT_SECONDS", "ORCHESTRATOR_SERVICE", "WORKER_SERVICE",
                 "ORCHESTRATOR_LOG_GROUP", "WORKER_LOG_GROUP"):
        assert name in proc.stdout, name


def test_the_region_comes_from_the_profile_when_no_variable_sets_it(tmp_path):
    """AWS_REGION, then AWS_DEFAULT_REGION, then AWS_PROFILE's region; us-east-1 only last. Every
    AWS call (trace.sh's too) gets that region; the calls are refused so each run is quick."""
    config = tmp_path / "config"
    config.write_text("[profile ops]\nregion = eu-west-3\n")
    clean = {k: v for k, v in os.environ.items() if k not in OWN_ENV + ("AWS_REGION", "AWS_DEFAULT_REGION")}
    bin_dir, calls = fake_aws(tmp_path), tmp_path / "calls.txt"
    base = {**clean, "AWS_CONFIG_FILE": str(config), "VERIFY_WAIT_SECONDS": "0", "AWS_REFUSE": "1",
            "AWS_CALLS": str(calls), "PATH": f"{bin_dir}{os.pathsep}{clean['PATH']}"}
    url = "http://127.0.0.1:9"  # the discard port: nothing answers
    for env, region, source in (({"AWS_PROFILE": "ops"}, "eu-west-3", "profile ops"),
                                ({"AWS_PROFILE": "ops", "AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1",
                                 "AWS_DEFAULT_REGION"),
                                ({"AWS_PROFILE": "ops", "AWS_REGION": "sa-east-1", "AWS_DEFAULT_REGION": "ap-south-1"},
                                 "sa-east-1", "AWS_REGION"),
                                ({}, "us-east-1", "default"),
                                ({"AWS_PROFILE": "ops", "AWS_REGION": "sa-east-1"}, "ca-central-1", "--region")):
        calls.write_text("")
        args = ("--region", "ca-central-1") if source == "--region" else ()
        proc = scriptrun.run(VERIFY, *args, url, env={**base, **env}, timeout=120)
        assert proc.returncode == 1
        assert proc.stdout.splitlines()[0].startswith(f"Verifying {url}: region {region} ({source}),"), proc.stdout
        made = [line for line in calls.read_text().splitlines() if not line.startswith("configure ")]
        assert len(made) == 4 and all(line.startswith(f"--region {region} ") for line in made), made
