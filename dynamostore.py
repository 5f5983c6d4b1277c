"""DynamoDB backend of the job store: ``DynamoStore`` and ``create_table``.

Same contract as ``store.MemoryStore``. Every write that changes a job is a conditional
write whose condition is derived from ``store.TRANSITIONS``, so two replicas racing on
one job cannot move it backwards or finish it twice. Queued and running items carry
``activeShard = "active#<n>"`` (``dynamolist.active_shard``: the listing's shard of the job
id), which puts them in the sparse index ``active-by-lease``; finishing removes it, so finding
expired leases is one Query per shard (in parallel), never a Scan. Every heartbeat rewrites
an active item's index entry, so one partition for every active job would be the table's
hot spot under load; the shards spread those writes. Listing jobs
newest first uses two more indexes, described with the attributes that feed them in
``dynamolist``: every update that sets ``#state`` also sets ``#stateShard`` (``_update``).

Run ``python dynamostore.py create-table`` to create the table named by
``JOBS_TABLE_NAME`` wherever the standard AWS variables point.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from botocore.config import Config
from botocore.exceptions import (ClientError, ConnectionClosedError, ConnectionError, NoCredentialsError,
                                 ReadTimeoutError)

import awsconfig
import cpugate
import dynamolist
from logjson import iso_utc
from store import (ACTIVE_STATES, CANCELED_ERROR, DEFAULT_TTL_SECONDS, JobExists, JobNotFound, JobState, LeaseLost,
                   StoreError, StoreMisconfigured, StoreUnavailable, allowed_from, check_transition, later_stamp,
                   running_progress)

DEFAULT_TABLE_NAME = "ghost-engine-jobs-dev"
ACTIVE_INDEX = "active-by-lease"
_STAMPS_KEPT = 10_000
# Partitions the reaper reads: the shards, and the single partition items written before
# sharding still sit in (a job whose owner died before an upgrade is found there until its TTL).
REAPED_PARTITIONS = (*dynamolist.ACTIVE_SHARDS, dynamolist.ACTIVE)
# total_max_attempts counts the first try (botocore's "max_attempts" would count retries only).
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5)
# Error codes that mean "DynamoDB cannot serve us right now" (after botocore's retries).
UNAVAILABLE_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable",
})
# The table (or index) is not there: no retry helps, an operator must create it.
MISSING_CODE = "ResourceNotFoundException"
CONDITION_FAILED = "ConditionalCheckFailedException"
INPUT_KEYS = ("prompt", "seed", "style")


def table_definition(name: str) -> dict[str, Any]:
    """CreateTable arguments for the jobs table (Terraform's dynamodb.tf declares the same)."""
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "jobId", "AttributeType": "S"},
            {"AttributeName": "activeShard", "AttributeType": "S"},
            {"AttributeName": "leaseExpiresAt", "AttributeType": "N"},
            *dynamolist.ATTRIBUTE_DEFINITIONS,
        ],
        "KeySchema": [{"AttributeName": "jobId", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [{
            "IndexName": ACTIVE_INDEX,
            "KeySchema": [{"AttributeName": "activeShard", "KeyType": "HASH"},
                          {"AttributeName": "leaseExpiresAt", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }, *dynamolist.GLOBAL_SECONDARY_INDEXES],
        "SSESpecification": {"Enabled": True},
    }


def make_client() -> Any:
    """A low-level DynamoDB client where the AWS settings point (``awsconfig``: the region
    chain ending in us-east-1, ``AWS_ENDPOINT_URL[_DYNAMODB]``, botocore's credentials)."""
    return awsconfig.client("dynamodb", os.environ, config=CLIENT_CONFIG)


def create_table(name: str, client: Any = None) -> bool:
    """Create the jobs table and wait until it is ACTIVE; ensure TTL and PITR either way.

    Returns False if the table already existed."""
    client = client or make_client()
    try:
        _request(client, "create_table", **table_definition(name))
        created = True
    except ClientError as exc:
        if _code(exc) != "ResourceInUseException":
            raise
        created = False
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    ttl = _request(client, "describe_time_to_live", TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        _request(client, "update_time_to_live", TableName=name,
                 TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
    _request(client, "update_continuous_backups", TableName=name,
             PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    return created


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _request(client: Any, operation: str, table: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """One DynamoDB request (botocore retries it) on ``table`` (the ``TableName`` argument,
    unless the operation names tables otherwise). Outages and throttling that outlast the
    retries become ``StoreUnavailable``, a missing table ``StoreMisconfigured``; both name
    the table and the cause."""
    table = table or kwargs.get("TableName") or ", ".join(kwargs.get("RequestItems", ()))  # a batch names its tables
    try:
        return getattr(client, operation)(**kwargs)
    except ClientError as exc:
        code, message = _code(exc), exc.response.get("Error", {}).get("Message", "")
        if code in (MISSING_CODE, "ValidationException") and "index" in message:  # a table older than an index
            raise StoreMisconfigured(f"DynamoDB table {table}{_at_endpoint(client)}: {message}; add the "
                                     "table's indexes with Terraform (dynamodb.tf)") from exc
        if code == MISSING_CODE:
            raise StoreMisconfigured(
                f"DynamoDB table {table} does not exist in {client.meta.region_name}"
                f"{_at_endpoint(client)}: {message}; create it with `python dynamostore.py create-table`"
                " or Terraform") from exc
        if code in UNAVAILABLE_CODES:
            raise StoreUnavailable(f"DynamoDB table {table}: {code}: {message}") from exc
        raise
    except (ConnectionError, ReadTimeoutError, ConnectionClosedError) as exc:
        raise StoreUnavailable(f"DynamoDB table {table}: {type(exc).__name__}: {exc}") from exc
    except NoCredentialsError as exc:  # unset locally; on ECS a task role whose credentials are late
        raise StoreUnavailable(f"DynamoDB table {table}: {awsconfig.NO_CREDENTIALS}") from exc


def _at_endpoint(client: Any) -> str:
    """`` at <endpoint>`` when the endpoint was overridden (a local server), else nothing."""
    endpoint = client.meta.endpoint_url
    return "" if endpoint.endswith(".amazonaws.com") else f" at {endpoint}"


def _values(**values: Any) -> dict[str, dict[str, str]]:
    """ExpressionAttributeValues from plain Python values (str, bool-free numbers)."""
    return {f":{k}": ({"S": v} if isinstance(v, str) else {"N": repr(v)}) for k, v in values.items()}


def _states(prefix: str, states: Iterable[JobState]) -> tuple[str, dict[str, dict[str, str]]]:
    """``#state IN (...)`` for ``states`` plus its placeholder values."""
    values = {f":{prefix}{i}": {"S": s.value} for i, s in enumerate(sorted(states, key=lambda s: s.value))}
    return f"#state IN ({', '.join(values)})", values


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    """A table item as the job dict of the ``JobStore`` interface."""
    plain = {k: next(iter(v.items())) for k, v in item.items()}
    text = {k: v for k, (t, v) in plain.items() if t == "S"}
    num = {k: v for k, (t, v) in plain.items() if t == "N"}
    job_input = {k: int(num[k]) if k == "seed" else text[k] for k in INPUT_KEYS if k in plain}
    lease = num.get("leaseExpiresAt")
    return {
        "jobId": text["jobId"], "state": text["state"], "progress": float(num["progress"]),
        "result": json.loads(text["result"]) if "result" in text else None,
        "error": text.get("error"), "createdAt": text["createdAt"], "updatedAt": text["updatedAt"],
        "input": job_input,
        "attempts": int(num["attempts"]), "owner": text.get("owner"),
        "leaseExpiresAt": int(lease) if lease is not None else None, "requestHash": text.get("requestHash"),
    }


class _ConditionFailed(Exception):
    """A conditional write found the item not as required; ``current`` is the item as it
    is (None when there is none)."""

    def __init__(self, current: dict[str, Any] | None):
        super().__init__("condition failed")
        self.current = current


_OWNED_RUNNING = "#owner = :owner AND #state = :running"


def _require_owner(job_id: str, owner: str, current: dict[str, Any] | None) -> dict[str, Any]:
    """``current`` if ``owner`` owns it; else ``JobNotFound`` or ``LeaseLost``."""
    if current is None:
        raise JobNotFound(job_id)
    if current["owner"] != owner:
        raise LeaseLost(job_id, owner)
    return current


class DynamoStore:
    """Jobs in one DynamoDB table (layout in the module docstring and the README)."""

    shared = True  # every replica reads the table: a job handed back is taken by another

    def __init__(self, table_name: str, *, ttl_seconds: int = DEFAULT_TTL_SECONDS, client: Any = None,
                 clock: Callable[[], float] = time.time):
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds
        self._client = client or make_client()
        self._clock = clock
        # The last updatedAt this store wrote for recent jobs: a claim in the creation's
        # millisecond (the usual case) stamps one later at once instead of retrying.
        self._stamps: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._stamps_lock = threading.Lock()

    def _stamped(self, job: dict[str, Any]) -> dict[str, Any]:
        with self._stamps_lock:
            self._stamps[job["jobId"]] = job["updatedAt"]
            self._stamps.move_to_end(job["jobId"])
            if len(self._stamps) > _STAMPS_KEPT:
                self._stamps.popitem(last=False)
        return job

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        with cpugate.released():  # a request thread waits for DynamoDB without a CPU slot
            return _request(self._client, operation, TableName=self.table_name, **kwargs)

    def _update(self, job_id: str, update: str, condition: str, values: dict[str, Any],
                now: float | None = None) -> dict[str, Any]:
        """A conditional UpdateItem; returns the new job or raises ``_ConditionFailed``.
        ``#name`` stands for attribute ``name`` (several of ours are reserved words). An update
        that sets ``#state`` sets ``#stateShard`` with it (``dynamolist.with_state_shard``). With
        ``now``, the update stamps ``#updatedAt = :now`` and only if that is later than the
        stored one: when another write took the same millisecond, it goes again one
        millisecond later (``store.later_stamp``), so ``updatedAt`` strictly increases."""
        update, values = dynamolist.with_state_shard(job_id, update, values)
        if now is not None:
            condition = f"({condition}) AND #updatedAt < :now"
            values = {**values, ":now": {"S": later_stamp(now, self._stamps.get(job_id))}}
        names = {f"#{n}": n for n in re.findall(r"#(\w+)", f"{update} {condition}")}
        for _ in range(3):
            try:
                out = self._call("update_item", Key={"jobId": {"S": job_id}}, UpdateExpression=update,
                                 ConditionExpression=condition, ExpressionAttributeNames=names,
                                 ExpressionAttributeValues=values, ReturnValues="ALL_NEW",
                                 ReturnValuesOnConditionCheckFailure="ALL_OLD")
                return self._stamped(_from_item(out["Attributes"]))
            except ClientError as exc:
                if _code(exc) != CONDITION_FAILED:
                    raise
                # DynamoDB and moto send the old item; a server without that feature costs a read.
                old = exc.response.get("Item")
                current = _from_item(old) if old else self.get(job_id)
            if now is None or current is None or current["updatedAt"] < values[":now"]["S"]:
                raise _ConditionFailed(current)
            values = {**values, ":now": {"S": later_stamp(now, current["updatedAt"])}}
        raise _ConditionFailed(current)

    def create(self, job_id: str, job_input: dict[str, Any], owner: str, lease_ms: int,
               request_hash: str | None = None) -> dict[str, Any]:
        now = self._clock()
        stamp = iso_utc(now)
        item = {
            "jobId": {"S": job_id}, "state": {"S": JobState.QUEUED.value}, "progress": {"N": "0"},
            "createdAt": {"S": stamp}, "updatedAt": {"S": stamp}, "attempts": {"N": "0"},
            "owner": {"S": owner}, "leaseExpiresAt": {"N": str(int(now * 1000) + lease_ms)},
            "activeShard": {"S": dynamolist.active_shard(job_id)}, "ttl": {"N": str(int(now) + self.ttl_seconds)},
        }
        for key in INPUT_KEYS:
            value = job_input.get(key)
            if value is not None:
                item[key] = {"N": str(int(value))} if key == "seed" else {"S": str(value)}
        if request_hash is not None:
            item["requestHash"] = {"S": request_hash}
        item.update(dynamolist.index_attributes(job_id, stamp, JobState.QUEUED.value))
        try:
            self._call("put_item", Item=item, ConditionExpression="attribute_not_exists(jobId)",
                       ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as exc:
            if _code(exc) == CONDITION_FAILED:
                old = exc.response.get("Item")
                raise JobExists(job_id, _from_item(old) if old else self.get(job_id)) from exc
            raise
        return self._stamped(_from_item(item))

    def get(self, job_id: str) -> dict[str, Any] | None:
        out = self._call("get_item", Key={"jobId": {"S": job_id}}, ConsistentRead=True)
        return _from_item(out["Item"]) if "Item" in out else None

    def claim(self, job_id: str, owner: str, lease_ms: int) -> dict[str, Any] | None:
        now = self._clock()
        states, state_values = _states("from", ACTIVE_STATES)
        try:
            return self._update(
                job_id,
                "SET #state = :running, #owner = :owner, #attempts = #attempts + :one,"
                " #leaseExpiresAt = :lease, #updatedAt = :now",
                f"{states} AND (#owner = :owner OR #leaseExpiresAt <= :nowms)",
                {**state_values, **_values(running=JobState.RUNNING.value, owner=owner, one=1,
                                           lease=int(now * 1000) + lease_ms, nowms=int(now * 1000))}, now)
        except _ConditionFailed:
            return None

    def heartbeat(self, job_id: str, owner: str, progress: float, lease_ms: int) -> None:
        now = self._clock()
        values = _values(owner=owner, running=JobState.RUNNING.value, lease=int(now * 1000) + lease_ms,
                         progress=running_progress(progress))
        try:
            self._update(job_id, "SET #progress = :progress, #leaseExpiresAt = :lease, #updatedAt = :now",
                         f"{_OWNED_RUNNING} AND #progress < :progress", values, now)
            return
        except _ConditionFailed as failed:
            if _require_owner(job_id, owner, failed.current)["state"] != JobState.RUNNING.value:
                raise LeaseLost(job_id, owner) from None
        # The stored progress is as high or higher (an earlier run got further): nothing
        # visible changes; extend the lease only.
        self.renew(job_id, owner, lease_ms)

    def renew(self, job_id: str, owner: str, lease_ms: int) -> None:
        values = _values(owner=owner, running=JobState.RUNNING.value, lease=int(self._clock() * 1000) + lease_ms)
        try:
            self._update(job_id, "SET #leaseExpiresAt = :lease", _OWNED_RUNNING, values)
        except _ConditionFailed as failed:
            _require_owner(job_id, owner, failed.current)
            raise LeaseLost(job_id, owner) from None

    def finish(self, job_id: str, owner: str, state: JobState, *, result: dict | None = None,
               error: str | None = None) -> dict[str, Any]:
        now = self._clock()
        states, values = _states("from", allowed_from(state))
        values.update(_values(to=state.value, ttl=int(now) + self.ttl_seconds, owner=owner))
        sets = ["#state = :to", "#updatedAt = :now", "#ttl = :ttl"]
        if state is JobState.DONE:
            sets.append("#progress = :one")
            values.update(_values(one=1.0))
            if result is not None:
                sets.append("#result = :result")
                values.update(_values(result=json.dumps(result, separators=(",", ":"))))
        elif error is not None:
            sets.append("#error = :error")
            values.update(_values(error=error))
        try:
            return self._update(job_id, f"SET {', '.join(sets)} REMOVE #activeShard, #leaseExpiresAt",
                                f"{states} AND #owner = :owner", values, now)
        except _ConditionFailed as failed:
            if failed.current is None:
                raise JobNotFound(job_id) from None
            check_transition(job_id, failed.current["state"], state)
            raise LeaseLost(job_id, owner) from None

    def cancel(self, job_id: str) -> dict[str, Any]:
        now = self._clock()
        states, values = _states("from", allowed_from(JobState.CANCELED))
        values.update(_values(to=JobState.CANCELED.value, ttl=int(now) + self.ttl_seconds, error=CANCELED_ERROR))
        try:
            return self._update(job_id, "SET #state = :to, #error = :error, #updatedAt = :now, #ttl = :ttl"
                                " REMOVE #activeShard, #leaseExpiresAt", states, values, now)
        except _ConditionFailed as failed:
            if failed.current is None:
                raise JobNotFound(job_id) from None
            check_transition(job_id, failed.current["state"], JobState.CANCELED)
            raise StoreUnavailable(f"job {job_id} kept changing while being canceled; try again") from None

    def states(self, job_ids: list[str]) -> dict[str, str]:
        """One BatchGetItem per 100 jobs, projecting the state only."""
        found: dict[str, str] = {}
        for start in range(0, len(job_ids), 100):
            keys: list[dict[str, Any]] = [{"jobId": {"S": job_id}} for job_id in job_ids[start:start + 100]]
            while keys:
                request = {self.table_name: {"Keys": keys, "ProjectionExpression": "jobId, #state",
                                             "ExpressionAttributeNames": {"#state": "state"},
                                             "ConsistentRead": True}}  # a cancel is seen on the next tick
                with cpugate.released():
                    out = _request(self._client, "batch_get_item", self.table_name, RequestItems=request)
                for item in out.get("Responses", {}).get(self.table_name, []):
                    found[item["jobId"]["S"]] = item["state"]["S"]
                keys = out.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
        return found

    def release(self, job_id: str, owner: str) -> None:
        states, values = _states("active", ACTIVE_STATES)
        try:
            self._update(job_id, "SET #leaseExpiresAt = :zero", f"{states} AND #owner = :owner",
                         {**values, **_values(zero=0, owner=owner)})
        except _ConditionFailed as failed:
            _require_owner(job_id, owner, failed.current)  # owned but finished: nothing to release

    def expired(self, limit: int) -> list[str]:
        """The ``limit`` oldest expired leases over every active partition, queried in parallel."""
        if limit <= 0:
            return []
        now_ms = int(self._clock() * 1000)
        found = self._lister.fan_out(lambda partition: self._expired_in(partition, now_ms, limit), REAPED_PARTITIONS)
        return [job_id for _, job_id in sorted(itertools.chain.from_iterable(found))[:limit]]

    def _expired_in(self, partition: str, now_ms: int, limit: int) -> list[tuple[int, str]]:
        """(leaseExpiresAt, jobId) of one partition's ``limit`` oldest expired leases."""
        found: list[tuple[int, str]] = []
        kwargs: dict[str, Any] = {
            "IndexName": ACTIVE_INDEX, "ScanIndexForward": True,
            "KeyConditionExpression": "activeShard = :shard AND leaseExpiresAt <= :nowms",
            "ExpressionAttributeValues": _values(shard=partition, nowms=now_ms),
        }
        while len(found) < limit:
            out = self._call("query", Limit=limit - len(found), **kwargs)
            found.extend((int(item["leaseExpiresAt"]["N"]), item["jobId"]["S"]) for item in out.get("Items", []))
            if "LastEvaluatedKey" not in out:
                break
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        return found

    def list_jobs(self, state: str | None, limit: int, before: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return self._lister.page(state, limit, before)

    @functools.cached_property
    def _lister(self) -> dynamolist.Lister:
        return dynamolist.Lister(self.table_name, self._call, self._batch_get, _from_item)

    def _batch_get(self, request: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One BatchGetItem on the table: its items, and what it left unprocessed (or None)."""
        with cpugate.released():
            out = _request(self._client, "batch_get_item", RequestItems={self.table_name: request})
        return out["Responses"].get(self.table_name, []), out.get("UnprocessedKeys", {}).get(self.table_name)

    def location(self) -> dict[str, str | None]:
        """Where the table is: its region, and the endpoint when one was set (a local server)."""
        endpoint = self._client.meta.endpoint_url
        return {"region": self._client.meta.region_name,
                "endpoint": None if endpoint.endswith(".amazonaws.com") else endpoint}

    def check(self) -> None:
        """One eventually consistent read of an id no job has: it fails only if the table
        is missing (``StoreMisconfigured``) or unreachable (``StoreUnavailable``)."""
        self._call("get_item", Key={"jobId": {"S": "-"}}, ProjectionExpression="jobId")


USAGE = """usage: python dynamostore.py create-table
  Creates the DynamoDB jobs table named by JOBS_TABLE_NAME (default ghost-engine-jobs-dev)
  wherever the AWS settings point (README "AWS settings": AWS_REGION, else AWS_DEFAULT_REGION,
  else AWS_PROFILE's region, else us-east-1; AWS_ENDPOINT_URL[_DYNAMODB]), and makes sure TTL
  and point-in-time recovery are on. Idempotent.
  Exit status: 0 created or already there; 1 DynamoDB failed; 2 bad usage, no credentials or
  a profile that does not exist.
"""


def main(argv: list[str]) -> int:
    """``python dynamostore.py create-table``: create the jobs table (idempotent)."""
    if argv[1:] != ["create-table"]:
        _usage_exit(0 if argv[1:] in (["-h"], ["--help"]) else 2)
    name = os.environ.get("JOBS_TABLE_NAME") or DEFAULT_TABLE_NAME
    try:
        awsconfig.require_credentials(os.environ)
        created = create_table(name)
    except awsconfig.AwsConfigError as exc:
        print(f"dynamostore.py: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"dynamostore.py: {exc}", file=sys.stderr)
        return 1
    print(f"{'created' if created else 'exists'}: {name}")
    return 0


def _usage_exit(code: int) -> NoReturn:
    print(USAGE, end="", file=sys.stdout if code == 0 else sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
