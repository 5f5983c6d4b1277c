"""DynamoDB-specific behaviour of DynamoStore: errors, the table, the item layout, and the
exact requests a job costs (the behaviour both backends share is in test_store_contract)."""

from __future__ import annotations

import collections
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import dynamostore
from conftest import ROOT, free_port, wait_http_ok
from store import IllegalTransition, JobState, StoreMisconfigured, StoreUnavailable

IAM_TF = ROOT / "infra" / "aws" / "terraform" / "iam.tf"
T0 = 1_800_000_000.0
JOB_INPUT = {"prompt": "a lighthouse at dusk", "seed": 42, "style": "watercolor"}


def _table(moto_server, monkeypatch) -> tuple[str, Any]:
    """A fresh table on the session moto server and a client for it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    name = f"jobs-{uuid.uuid4().hex[:12]}"
    client = dynamostore.make_client()
    dynamostore.create_table(name, client=client)
    return name, client


class Recorder:
    """The DynamoDB operations a client sends, via botocore's ``before-call`` event."""

    def __init__(self, client: Any):
        self.calls: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-call.dynamodb", self._record)

    def _record(self, model, params, **_: Any) -> None:
        self.calls.append((model.name, json.loads(params["body"])))  # the request's JSON body

    def take(self) -> collections.Counter:
        counts = collections.Counter(name for name, _ in self.calls)
        self.calls.clear()
        return counts


# --- client configuration ---------------------------------------------------------------

def test_client_takes_region_and_endpoint_from_standard_aws_variables(monkeypatch, tmp_path):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4566")
    client = dynamostore.make_client()
    assert (client.meta.region_name, client.meta.endpoint_url) == ("us-east-1", "http://127.0.0.1:4566")
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (2, 5)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    assert dynamostore.make_client().meta.region_name == "eu-west-2"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # what ECS sets; botocore alone ignores it
    assert dynamostore.make_client().meta.region_name == "eu-west-1"
    (tmp_path / "config").write_text("[profile team]\nregion = ap-south-1\n")
    for name, value in (("AWS_CONFIG_FILE", str(tmp_path / "config")), ("AWS_PROFILE", "team")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert dynamostore.make_client().meta.region_name == "ap-south-1"  # the profile's region


# --- outages and throttling -------------------------------------------------------------

class FakeDynamo(http.server.ThreadingHTTPServer):
    """Answers every request with one DynamoDB error, and counts the requests."""

    def __init__(self, status: int, code: str):
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        self.status, self.code, self.requests = status, code, 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests += 1
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{self.server.code}",
                           "message": "injected by the test"}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _every_operation(store: dynamostore.DynamoStore) -> list:
    return [lambda: store.create("j", JOB_INPUT, "o", 1000), lambda: store.get("j"),
            lambda: store.claim("j", "o", 1000), lambda: store.heartbeat("j", "o", 0.5, 1000),
            lambda: store.finish("j", "o", JobState.DONE, result={}), lambda: store.release("j", "o"),
            lambda: store.expired(10), store.check, lambda: store.renew("j", "o", 1000),
            lambda: store.cancel("j"), lambda: store.states(["j"]), lambda: store.list_jobs(None, 20, None)]


def _attempts(client: Any) -> list[int]:
    sent = [0]
    client.meta.events.register("before-send.dynamodb", lambda **_: sent.__setitem__(0, sent[0] + 1))
    return sent


def _client_at(endpoint: str, max_attempts: int = 3) -> Any:
    """A client like the store's, at ``endpoint``, with ``max_attempts`` attempts per call."""
    config = dynamostore.CLIENT_CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": max_attempts}))
    return boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint, config=config)


def test_unreachable_endpoint_raises_store_unavailable_after_three_attempts(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    client = dynamostore.make_client()
    sent = _attempts(client)
    store = dynamostore.DynamoStore("jobs-down", client=client)
    with pytest.raises(StoreUnavailable) as info:
        store.get("job-1")
    assert str(info.value) == ("DynamoDB table jobs-down: EndpointConnectionError: "
                               f'Could not connect to the endpoint URL: "{os.environ["AWS_ENDPOINT_URL"]}/"')
    assert sent[0] == 3
    one_try = dynamostore.DynamoStore("jobs-down", client=_client_at(os.environ["AWS_ENDPOINT_URL"], 1))
    for operation in _every_operation(one_try):
        with pytest.raises(StoreUnavailable, match="^DynamoDB table jobs-down: EndpointConnectionError: Could not connect"):
            operation()


def test_throttling_raises_store_unavailable_after_three_attempts(monkeypatch):
    server = FakeDynamo(400, "ThrottlingException")
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        store = dynamostore.DynamoStore("jobs-busy")
        with pytest.raises(StoreUnavailable) as info:
            store.claim("job-1", "orch-a", 1000)
        assert str(info.value) == "DynamoDB table jobs-busy: ThrottlingException: injected by the test"
        assert server.requests == 3
    finally:
        server.close()


@pytest.mark.parametrize(("status", "code"), [
    (400, "ProvisionedThroughputExceededException"), (400, "RequestLimitExceeded"),
    (500, "InternalServerError"), (503, "ServiceUnavailable")])
def test_every_unavailable_code_from_every_operation_is_store_unavailable(status, code):
    server = FakeDynamo(status, code)
    try:
        store = dynamostore.DynamoStore("jobs-x", client=_client_at(server.endpoint, max_attempts=1))
        for operation in _every_operation(store):
            with pytest.raises(StoreUnavailable, match=f"^DynamoDB table jobs-x: {code}: injected by the test$"):
                operation()
        # one each, a Query per list shard, and a Query per active partition (4 shards + the
        # pre-sharding one) for expired()
        assert server.requests == 19
    finally:
        server.close()


def test_a_missing_table_is_store_misconfigured_naming_table_region_endpoint_and_the_fix(moto_server, monkeypatch):
    """Not StoreUnavailable: a table that does not exist is not an outage to wait out."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    store = dynamostore.DynamoStore("jobs-never-created")
    for operation in _every_operation(store):
        with pytest.raises(StoreMisconfigured) as info:
            operation()
        assert str(info.value) == (
            f"DynamoDB table jobs-never-created does not exist in us-east-1 at {moto_server.endpoint}: "
            "Requested resource not found; create it with `python dynamostore.py create-table` or Terraform")


def test_listing_on_a_table_without_the_listing_indexes_is_store_misconfigured(moto_server, monkeypatch):
    """A table created before GET /jobs existed: an operator adds the indexes (Terraform)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    name = f"jobs-old-{uuid.uuid4().hex[:8]}"
    old = dynamostore.table_definition(name)
    old["GlobalSecondaryIndexes"] = old["GlobalSecondaryIndexes"][:1]
    old["AttributeDefinitions"] = old["AttributeDefinitions"][:3]
    client = dynamostore.make_client()
    client.create_table(**old)
    with pytest.raises(StoreMisconfigured) as info:
        dynamostore.DynamoStore(name, client=client).list_jobs(None, 20, None)
    assert str(info.value) == (
        f"DynamoDB table {name} at {moto_server.endpoint}: Invalid index: jobs-by-created for table: {name}. "
        "Available indexes are: active-by-lease; add the table's indexes with Terraform (dynamodb.tf)")


def test_other_client_errors_are_not_reported_as_unavailable():
    server = FakeDynamo(400, "ValidationException")
    try:
        store = dynamostore.DynamoStore("jobs-x", client=_client_at(server.endpoint, max_attempts=1))
        with pytest.raises(ClientError) as info:
            store.get("job-1")
        assert not isinstance(info.value, StoreUnavailable)
        assert info.value.response["Error"]["Code"] == "ValidationException"
    finally:
        server.close()


def test_store_recovers_by_itself_when_dynamodb_comes_back(monkeypatch):
    port = free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    store = dynamostore.DynamoStore("jobs-recovering")
    with pytest.raises(StoreUnavailable):
        store.get("job-1")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/moto-api/", timeout=30, proc=proc)
        dynamostore.create_table("jobs-recovering")
        assert store.create("job-1", JOB_INPUT, "orch-a", 1000)["state"] == "queued"
        assert store.get("job-1")["jobId"] == "job-1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- the table --------------------------------------------------------------------------

def bare_aws_env(tmp_path, moto_server, **extra: str) -> dict[str, str]:
    """A process environment with no AWS credentials or profile anywhere, aimed at moto."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "AWS_CONFIG_FILE": str(tmp_path / "absent"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent"),
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": moto_server.endpoint,
            "JOBS_TABLE_NAME": "jobs-no-credentials", **extra}


@pytest.mark.parametrize(("extra", "message"), [
    ({}, "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any values for a local server "
         "such as moto), or AWS_PROFILE naming a profile that has credentials"),
    ({"AWS_PROFILE": "team", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"},
     "AWS_PROFILE=team names no profile in the AWS config or credentials file; set AWS_PROFILE to one of "
     "`aws configure list-profiles`, or unset it"),
], ids=["no-credentials", "no-such-profile"])
def test_create_table_without_credentials_or_with_a_missing_profile_says_what_to_set(moto_server, tmp_path, extra,
                                                                                    message):
    """Before: a botocore traceback (NoCredentialsError, ProfileNotFound) and exit 1."""
    result = subprocess.run([sys.executable, "dynamostore.py", "create-table"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=bare_aws_env(tmp_path, moto_server, **extra))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"dynamostore.py: {message}\n")


def test_create_table_cli_is_idempotent_and_builds_index_ttl_pitr_sse(moto_server):
    name = f"jobs-cli-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **moto_server.env(), "JOBS_TABLE_NAME": name}
    runs = [subprocess.run([sys.executable, "dynamostore.py", "create-table"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60) for _ in range(2)]
    assert [(r.returncode, r.stdout, r.stderr) for r in runs] == [
        (0, f"created: {name}\n", ""), (0, f"exists: {name}\n", "")]
    client = _client_at(moto_server.endpoint)
    table = client.describe_table(TableName=name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "jobId", "KeyType": "HASH"}]
    assert sorted((a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]) == [
        ("activeShard", "S"), ("createdKey", "S"), ("jobId", "S"), ("leaseExpiresAt", "N"), ("listShard", "S"),
        ("stateShard", "S")]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSEDescription"]["Status"] == "ENABLED"
    assert [(index["IndexName"], index["KeySchema"], index["Projection"]) for index in table["GlobalSecondaryIndexes"]] == [
        ("active-by-lease",
         [{"AttributeName": "activeShard", "KeyType": "HASH"}, {"AttributeName": "leaseExpiresAt", "KeyType": "RANGE"}],
         {"ProjectionType": "KEYS_ONLY"}),
        ("jobs-by-created",
         [{"AttributeName": "listShard", "KeyType": "HASH"}, {"AttributeName": "createdKey", "KeyType": "RANGE"}],
         {"ProjectionType": "KEYS_ONLY"}),
        ("jobs-by-state",
         [{"AttributeName": "stateShard", "KeyType": "HASH"}, {"AttributeName": "createdKey", "KeyType": "RANGE"}],
         {"ProjectionType": "KEYS_ONLY"})]
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")
    pitr = client.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_item_layout_active_index_membership_and_ttl(moto_server, monkeypatch):
    name, client = _table(moto_server, monkeypatch)
    store = dynamostore.DynamoStore(name, client=client, clock=lambda: T0, ttl_seconds=3600)
    store.create("job-1", JOB_INPUT, "orch-a", 30_000)
    item = client.get_item(TableName=name, Key={"jobId": {"S": "job-1"}})["Item"]
    assert item == {
        "jobId": {"S": "job-1"}, "state": {"S": "queued"}, "progress": {"N": "0"},
        "createdAt": {"S": "2027-01-15T08:00:00.000Z"}, "updatedAt": {"S": "2027-01-15T08:00:00.000Z"},
        "prompt": {"S": "a lighthouse at dusk"}, "seed": {"N": "42"}, "style": {"S": "watercolor"},
        "attempts": {"N": "0"}, "owner": {"S": "orch-a"}, "leaseExpiresAt": {"N": "1800000030000"},
        "activeShard": {"S": "active#3"}, "ttl": {"N": "1800003600"},
        "createdKey": {"S": "2027-01-15T08:00:00.000Z#job-1"}, "listShard": {"S": "all#3"},
        "stateShard": {"S": "queued#3"}}
    store.claim("job-1", "orch-a", 30_000)
    item = client.get_item(TableName=name, Key={"jobId": {"S": "job-1"}})["Item"]
    assert (item["state"], item["stateShard"], item["listShard"]) == ({"S": "running"}, {"S": "running#3"},
                                                                      {"S": "all#3"})
    store.finish("job-1", "orch-a", JobState.DONE, result={"sceneUrl": "s3://scenes/1.glb"})
    item = client.get_item(TableName=name, Key={"jobId": {"S": "job-1"}})["Item"]
    assert sorted(item) == ["attempts", "createdAt", "createdKey", "jobId", "listShard", "owner", "progress", "prompt",
                            "result", "seed", "state", "stateShard", "style", "ttl", "updatedAt"]
    assert (item["state"], item["stateShard"], item["result"], item["ttl"]) == (
        {"S": "done"}, {"S": "done#3"}, {"S": '{"sceneUrl":"s3://scenes/1.glb"}'}, {"N": "1800003600"})
    index = client.scan(TableName=name, IndexName="active-by-lease")["Items"]
    assert index == []


def test_active_jobs_spread_over_four_index_partitions_and_pre_sharding_items_are_still_reaped(
        moto_server, monkeypatch):
    """Every heartbeat rewrites an active job's index entry: one partition for all of them
    would be the hot spot. Items written before sharding (activeShard "active") stay findable."""
    name, client = _table(moto_server, monkeypatch)
    store = dynamostore.DynamoStore(name, client=client, clock=lambda: T0)
    for i in range(24):
        store.create(f"job-{i:02d}", JOB_INPUT, "orch-a", 30_000)
    index = client.scan(TableName=name, IndexName="active-by-lease")["Items"]
    assert sorted(collections.Counter(item["activeShard"]["S"] for item in index).items()) == [
        ("active#0", 5), ("active#1", 7), ("active#2", 5), ("active#3", 7)]
    client.update_item(TableName=name, Key={"jobId": {"S": "job-00"}}, UpdateExpression="SET activeShard = :old",
                       ExpressionAttributeValues={":old": {"S": "active"}})  # as a release before sharding wrote it
    late = dynamostore.DynamoStore(name, client=client, clock=lambda: T0 + 60)
    assert sorted(late.expired(100)) == [f"job-{i:02d}" for i in range(24)]


# --- requests per job, and the IAM policy that allows them -----------------------------

def _ids(page: tuple[list[dict[str, Any]], str | None]) -> tuple[list[str], str | None]:
    return [job["jobId"] for job in page[0]], page[1]


def _iam_dynamodb_actions() -> set[str]:
    assert IAM_TF.is_file(), f"{IAM_TF} is missing: it must grant the DynamoDB actions the store calls"
    return set(re.findall(r'"dynamodb:([A-Za-z*]+)"', IAM_TF.read_text()))


def test_a_job_costs_literal_request_counts_and_iam_grants_exactly_those_operations(moto_server, monkeypatch):
    name, client = _table(moto_server, monkeypatch)
    now = [T0]
    store = dynamostore.DynamoStore(name, client=client, clock=lambda: now[0])
    rec = Recorder(client)

    store.create("job-1", JOB_INPUT, "orch-a", 30_000)
    assert rec.take() == {"PutItem": 1}
    assert store.claim("job-1", "orch-a", 30_000) is not None
    assert rec.take() == {"UpdateItem": 1}
    for progress in (0.25, 0.5, 0.75):
        store.heartbeat("job-1", "orch-a", progress, 30_000)
    assert rec.take() == {"UpdateItem": 3}
    store.get("job-1")
    assert rec.take() == {"GetItem": 1}
    store.finish("job-1", "orch-a", JobState.DONE, result={"frames": 24})
    assert rec.take() == {"UpdateItem": 1}

    # Crash recovery: a lease handed back is found through the index and claimed elsewhere.
    store.create("job-2", JOB_INPUT, "orch-a", 30_000)
    store.release("job-2", "orch-a")
    assert store.expired(10) == ["job-2"]
    assert store.claim("job-2", "orch-b", 30_000)["owner"] == "orch-b"
    queries = [params for op, params in rec.calls if op == "Query"]
    assert rec.take() == {"PutItem": 1, "UpdateItem": 2, "Query": 5}
    # One Query per shard of the active index, and one of the partition used before sharding.
    assert sorted((q["IndexName"], q["ExpressionAttributeValues"][":shard"]["S"]) for q in queries) == [
        ("active-by-lease", "active"), ("active-by-lease", "active#0"), ("active-by-lease", "active#1"),
        ("active-by-lease", "active#2"), ("active-by-lease", "active#3")]

    # Rejected writes: one request each (the old item comes back with the failure)...
    with pytest.raises(IllegalTransition):
        store.finish("job-1", "orch-a", JobState.FAILED, error="late")
    assert store.claim("job-2", "orch-c", 30_000) is None
    assert rec.take() == {"UpdateItem": 2}
    # ...except a heartbeat whose progress is lower than stored: two (the lease still extends).
    store.heartbeat("job-2", "orch-b", 0.5, 30_000)
    store.heartbeat("job-2", "orch-b", 0.4, 30_000)
    assert rec.take() == {"UpdateItem": 3}

    # A page of the job list: a Query per list shard, then one BatchGetItem of the page's jobs.
    assert _ids(store.list_jobs(None, 1, None)) == (["job-2"], "2027-01-15T08:00:00.000Z#job-2")
    assert _ids(store.list_jobs("done", 20, None)) == (["job-1"], None)
    assert rec.take() == {"Query": 8, "BatchGetItem": 2}
    assert store.list_jobs("canceled", 20, None) == ([], None)  # no job: no BatchGetItem
    assert rec.take() == {"Query": 4}

    everything = _record_every_operation(moto_server, monkeypatch)
    assert everything == {"GetItem", "PutItem", "UpdateItem", "Query", "BatchGetItem"}
    assert _iam_dynamodb_actions() == everything


def _record_every_operation(moto_server, monkeypatch) -> set[str]:
    """The operation names the store sends over jobs' lives: create, claim, heartbeat, renew,
    finish, cancel, get, release, expired, states, and listing them; asserting on the way that
    every write is conditional and every single read strongly consistent."""
    name, client = _table(moto_server, monkeypatch)
    store = dynamostore.DynamoStore(name, client=client)
    rec = Recorder(client)
    store.create("job-1", JOB_INPUT, "orch-a", 30_000)
    store.claim("job-1", "orch-a", 30_000)
    store.heartbeat("job-1", "orch-a", 0.5, 30_000)
    store.release("job-1", "orch-a")
    store.expired(10)
    store.claim("job-1", "orch-a", 30_000)
    store.renew("job-1", "orch-a", 30_000)
    store.states(["job-1"])
    store.finish("job-1", "orch-a", JobState.DONE, result={})
    store.get("job-1")
    store.create("job-2", JOB_INPUT, "orch-a", 30_000)
    store.cancel("job-2")
    store.list_jobs(None, 20, None)
    store.list_jobs("done", 20, None)
    for op, params in rec.calls:
        if op in ("PutItem", "UpdateItem"):
            assert params["ConditionExpression"], op
        if op == "GetItem":
            assert params["ConsistentRead"] is True
        if op == "BatchGetItem":
            assert params["RequestItems"][name]["ConsistentRead"] is True
    assert {params.get("IndexName") for op, params in rec.calls if op == "Query"} == {
        "active-by-lease", "jobs-by-created", "jobs-by-state"}  # the indexes iam.tf grants Query on
    return {op for op, _ in rec.calls}

