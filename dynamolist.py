"""Listing jobs newest first in DynamoDB: the two listing indexes, the attributes that put
an item in them, and how one page is read (``DynamoStore.list_jobs`` calls ``Lister.page``).

Every item carries, from its ``PutItem`` on:

- ``createdKey`` = ``store.created_key(job)`` (``<createdAt>#<jobId>``): the sort key of both
  indexes, so each index partition holds its jobs in creation order;
- ``listShard`` = ``all#<n>``: the partition key of ``jobs-by-created`` (every job);
- ``stateShard`` = ``<state>#<n>``: the partition key of ``jobs-by-state``. It changes with
  ``state``: ``DynamoStore._update`` passes every update through ``with_state_shard``, which
  sets it whenever the update sets ``#state`` (claim, finish, and any write added later, such
  as a cancel). A write that sets ``state`` by another path must set ``stateShard`` too.

The same ``n`` spreads the active-jobs index (``dynamostore``: ``activeShard`` = ``active#<n>``,
rewritten by every heartbeat), whose reaper queries run on the listing's threads (``fan_out``).

``n`` = crc32(jobId) mod ``LIST_SHARDS``: stable across processes and releases (unlike
``hash()``), so an update can compute it without reading the item, and creations spread
evenly over ``LIST_SHARDS`` partitions per index value instead of one hot partition.
Changing ``LIST_SHARDS`` moves jobs between partitions: items written before keep their old
shard until their TTL ends.

Both indexes are ``KEYS_ONLY``: an index write costs one write unit whatever the job's
result, and the listed jobs are read from the table, strongly consistently, so a page shows
each job as ``GET /status`` does.

A page (``Lister.page``): one ``Query`` per shard, in parallel, newest first below the
cursor, at most ``limit + 1`` keys each; the keys are merged newest first and the newest
``limit`` kept; one ``BatchGetItem`` reads those items. ``LIST_SHARDS`` queries and one
batch: README "Cost per list page".
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import re
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import cpugate
from backoff import Backoff
from store import StoreUnavailable, check_limit, created_key

LIST_SHARDS = 4
CREATED_INDEX = "jobs-by-created"
STATE_INDEX = "jobs-by-state"
ALL_JOBS = "all"  # the listShard prefix
ACTIVE = "active"  # the activeShard prefix (and, alone, the one partition items had before sharding)
ACTIVE_SHARDS = tuple(f"{ACTIVE}#{n}" for n in range(LIST_SHARDS))
BATCH_GET_ATTEMPTS = 5  # rounds of UnprocessedKeys (throttling) before StoreUnavailable
BATCH_GET_BACKOFF = Backoff(base=0.05, cap=1.0)

ATTRIBUTE_DEFINITIONS = [
    {"AttributeName": "createdKey", "AttributeType": "S"},
    {"AttributeName": "listShard", "AttributeType": "S"},
    {"AttributeName": "stateShard", "AttributeType": "S"},
]
GLOBAL_SECONDARY_INDEXES = [
    {"IndexName": CREATED_INDEX,
     "KeySchema": [{"AttributeName": "listShard", "KeyType": "HASH"},
                   {"AttributeName": "createdKey", "KeyType": "RANGE"}],
     "Projection": {"ProjectionType": "KEYS_ONLY"}},
    {"IndexName": STATE_INDEX,
     "KeySchema": [{"AttributeName": "stateShard", "KeyType": "HASH"},
                   {"AttributeName": "createdKey", "KeyType": "RANGE"}],
     "Projection": {"ProjectionType": "KEYS_ONLY"}},
]
_SETS_STATE = re.compile(r"#state = (:\w+)")

Item = dict[str, dict[str, Any]]  # a DynamoDB item in the low-level client's form


def shard(job_id: str) -> int:
    """The job's shard, the same in every process."""
    return zlib.crc32(job_id.encode("utf-8")) % LIST_SHARDS


def active_shard(job_id: str) -> str:
    """The job's partition of the active-jobs index (``activeShard``)."""
    return f"{ACTIVE}#{shard(job_id)}"


def state_shard(job_id: str, state: str) -> str:
    return f"{state}#{shard(job_id)}"


def index_attributes(job_id: str, created_at: str, state: str) -> Item:
    """The attributes that put a new item in both listing indexes."""
    return {"createdKey": {"S": created_key({"createdAt": created_at, "jobId": job_id})},
            "listShard": {"S": f"{ALL_JOBS}#{shard(job_id)}"}, "stateShard": {"S": state_shard(job_id, state)}}


def with_state_shard(job_id: str, update: str, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``update`` and ``values`` that also set ``#stateShard`` when ``update`` sets ``#state``
    (and does not set ``#stateShard`` itself), so the by-state index follows every change."""
    found = _SETS_STATE.search(update)
    if found is None or "#stateShard" in update:
        return update, values
    shard_value = {"S": state_shard(job_id, values[found[1]]["S"])}
    return (update.replace(found[0], f"{found[0]}, #stateShard = :stateShard", 1),
            {**values, ":stateShard": shard_value})


def merge(shards: Iterable[tuple[list[str], bool]], limit: int) -> tuple[list[str], bool]:
    """The newest ``limit`` keys of the shards' answers, and whether more keys follow them.

    Each answer is (keys newest first, whether the shard has more below its last key). A
    shard that stopped early has unseen keys below its last one, so no key below that may be
    taken yet: the next page starts below the cursor and would skip the unseen ones. With at
    most ``limit + 1`` keys asked of each shard, that horizon never cuts a page short (a shard
    stops early only after ``limit + 1`` keys, all above its horizon); it matters only for a
    shard cut at DynamoDB's 1 MB per answer, which ``MAX_LIST_LIMIT`` keys never reach."""
    answers = list(shards)
    horizon = max((keys[-1] for keys, more in answers if more and keys), default="")
    newest = itertools.takewhile(lambda key: key >= horizon, heapq.merge(*(k for k, _ in answers), reverse=True))
    page = list(itertools.islice(newest, limit + 1))
    return page[:limit], len(page) > limit or any(more for keys, more in answers if keys)


class Lister:
    """Reads pages of ``table``. ``call(operation, **kwargs)`` is one request on the table
    (``DynamoStore._call``); ``batch_get(request)`` one ``BatchGetItem`` whose
    ``RequestItems`` entry for the table is ``request``, answering ``(items, unprocessed)``."""

    def __init__(self, table: str, call: Callable[..., dict[str, Any]],
                 batch_get: Callable[[dict[str, Any]], tuple[list[Item], dict[str, Any] | None]],
                 from_item: Callable[[Item], dict[str, Any]], sleep: Callable[[float], None] = time.sleep):
        self._table, self._call, self._batch_get = table, call, batch_get
        self._from_item, self._sleep = from_item, sleep
        # The shards' queries of every page share these threads: at most LIST_SHARDS at once.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=LIST_SHARDS, thread_name_prefix="list-shard")

    def fan_out(self, fn: Callable[[Any], Any], args: Iterable[Any]) -> list[Any]:
        """``fn(arg)`` for each of ``args`` on the shard threads, at once; the results in order.
        All are waited for, even after a failure (none outlives its caller), then the first
        failure is raised."""
        futures = [self._pool.submit(fn, arg) for arg in args]
        with cpugate.released():  # the calling thread waits for DynamoDB without a CPU slot
            concurrent.futures.wait(futures)
        return [future.result() for future in futures]

    def page(self, state: str | None, limit: int, before: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """``JobStore.list_jobs`` on the indexes (see the module docstring)."""
        check_limit(limit)
        answers = self.fan_out(lambda n: self._query(state, n, limit + 1, before), range(LIST_SHARDS))
        keys, more = merge(answers, limit)
        jobs = [job for job in self._read(keys) if state is None or job["state"] == state]
        return jobs, keys[-1] if more else None

    def _query(self, state: str | None, n: int, limit: int, before: str | None) -> tuple[list[str], bool]:
        """One shard's newest ``limit`` keys below ``before``, and whether it has more."""
        index, partition, value = ((CREATED_INDEX, "listShard", f"{ALL_JOBS}#{n}") if state is None
                                   else (STATE_INDEX, "stateShard", f"{state}#{n}"))
        condition, values = f"{partition} = :shard", {":shard": {"S": value}}
        if before is not None:
            condition += " AND createdKey < :before"
            values[":before"] = {"S": before}
        out = self._call("query", IndexName=index, KeyConditionExpression=condition,
                         ExpressionAttributeValues=values, ScanIndexForward=False, Limit=limit)
        return [item["createdKey"]["S"] for item in out.get("Items", [])], "LastEvaluatedKey" in out

    def _read(self, keys: list[str]) -> list[dict[str, Any]]:
        """The jobs of ``keys`` (at most ``store.MAX_LIST_LIMIT``: one batch), in that order; a job
        deleted since (TTL) is left out."""
        ids = [key.partition("#")[2] for key in keys]
        if not ids:
            return []
        found: dict[str, dict[str, Any]] = {}
        pending: dict[str, Any] = {"Keys": [{"jobId": {"S": i}} for i in ids], "ConsistentRead": True}
        for attempt in range(BATCH_GET_ATTEMPTS):
            if attempt:  # DynamoDB left part of the batch unread (throttling): back off, ask for the rest
                with cpugate.released():
                    self._sleep(BATCH_GET_BACKOFF.delay(attempt - 1))
            items, unprocessed = self._batch_get(pending)
            found.update((item["jobId"]["S"], self._from_item(item)) for item in items)
            if unprocessed is None:
                return [found[i] for i in ids if i in found]
            pending = unprocessed
        raise StoreUnavailable(f"DynamoDB table {self._table}: BatchGetItem left {len(pending['Keys'])} "
                               f"of {len(ids)} keys unprocessed after {BATCH_GET_ATTEMPTS} attempts")
