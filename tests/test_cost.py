"""DynamoDB requests per job, measured on the real dispatcher, a real worker process and
a moto server, and the requests and read units of a page of the job list: the numbers the
README states."""

from __future__ import annotations

import collections
import math

import dynamostore
import scene
from dispatcher import DispatchConfig, Dispatcher
from polling import wait_until
from store import JobState
from watch import JobWatch
from workerclient import WorkerClient

WORK_MS = 2000
WRITE_INTERVAL_MS = 1000


def test_a_2s_job_costs_one_put_and_at_most_four_updates(services, moto_server, monkeypatch):
    """Create 1 PutItem; claim, heartbeats (at most one a second) and finish: UpdateItems."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    dynamostore.create_table("jobs-cost")
    client = dynamostore.make_client()
    calls: collections.Counter[str] = collections.Counter()
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    job_store = dynamostore.DynamoStore("jobs-cost", client=client)
    observer = dynamostore.DynamoStore("jobs-cost")  # the test's own reads are not counted
    worker = services("worker.py", {"WORK_MS": str(WORK_MS)})
    config = DispatchConfig(worker_url=worker.url, progress_write_interval_ms=WRITE_INTERVAL_MS,
                            max_concurrent_jobs=1, reaper_interval_seconds=3600)
    dispatcher = Dispatcher(job_store, WorkerClient(worker.url, 2, 10), config, owner="orch-cost")
    dispatcher.start()
    try:
        job_id, _ = dispatcher.create({"prompt": "a spooky hallway", "seed": 1, "style": None}, None)
        job = wait_until(lambda: (j := observer.get(job_id))["state"] == "done" and j, 30, "job done", 0.1)
    finally:
        dispatcher.stop(5)
    heartbeats = calls["UpdateItem"] - 2  # minus the claim and the finish
    assert calls["PutItem"] == 1
    assert 1 <= heartbeats <= math.ceil(WORK_MS / WRITE_INTERVAL_MS)
    # Per replica, not per job: the reaper's pass at start (then hourly here: one Query per shard
    # of the active index and one of its pre-sharding partition), and the lease keeper's look
    # for cancels made elsewhere: one BatchGetItem a second while jobs run here.
    assert calls["Query"] == 5
    assert 1 <= calls["BatchGetItem"] <= math.ceil(WORK_MS / 1000) + 1
    assert set(calls) == {"PutItem", "UpdateItem", "Query", "BatchGetItem"}  # status reads: one GetItem each
    assert (job["state"], job["attempts"]) == ("done", 1)


def _counted_store(table: str, moto_server, monkeypatch) -> tuple[dynamostore.DynamoStore, collections.Counter]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    dynamostore.create_table(table)
    client = dynamostore.make_client()
    calls: collections.Counter[str] = collections.Counter()
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    return dynamostore.DynamoStore(table, client=client), calls


def test_a_keyed_submit_costs_one_put_its_replay_one_failed_put_and_a_cancel_one_update(
        moto_server, monkeypatch):
    """Idempotency costs no extra request: the create-if-absent put that records the job is
    the check; a replay is that put failing, with the stored job in the same answer."""
    job_store, calls = _counted_store("jobs-cost-keyed", moto_server, monkeypatch)
    config = DispatchConfig(worker_url="http://127.0.0.1:9", max_concurrent_jobs=1, reaper_interval_seconds=3600)
    dispatcher = Dispatcher(job_store, WorkerClient("http://127.0.0.1:9", 2, 10), config, owner="orch-cost")
    job_input = {"prompt": "a spooky hallway", "seed": 1, "style": None}
    job_id = "0b6f9ae4-8d4f-5c1e-9a4b-2f0e1d3c5b7a"
    assert dispatcher.create(job_input, None, job_id, "hash-1") == (job_id, False)  # not started: stays queued
    assert calls == {"PutItem": 1}
    calls.clear()
    assert dispatcher.create(job_input, None, job_id, "hash-1") == (job_id, True)
    assert calls == {"PutItem": 1}
    calls.clear()
    assert dispatcher.cancel(job_id)["state"] == "canceled"
    assert calls == {"UpdateItem": 1}


def test_a_waiting_client_costs_one_read_at_start_and_at_most_one_a_second(moto_server, monkeypatch):
    """GET /status?wait=3 on a job nobody changes, with the store shared between replicas
    (so a change could come from elsewhere): the watch reads once, then once a second."""
    job_store, calls = _counted_store("jobs-cost-wait", moto_server, monkeypatch)
    job_store.create("8d3c1f0e-2a4b-4c6d-8e0f-1a2b3c4d5e6f", {"prompt": "p", "seed": 1, "style": None},
                     "orch-elsewhere", 60_000)
    calls.clear()
    watch = JobWatch(job_store, poll_seconds=1.0, max_waiting=4)
    job = watch.wait("8d3c1f0e-2a4b-4c6d-8e0f-1a2b3c4d5e6f", None, 3.0)
    assert job is not None and job["state"] == "queued"
    assert set(calls) == {"GetItem"}
    assert 3 <= calls["GetItem"] <= 1 + 3  # the first read, then one per second of the wait


# --- a page of GET /jobs ------------------------------------------------------------------

def item_bytes(item: dict) -> int:
    """An item's size by DynamoDB's rules: each attribute's name plus its value (UTF-8 bytes of
    a string; about one byte per two significant digits, plus one, of a number)."""
    size = 0
    for name, value in item.items():
        (kind, text), = value.items()
        digits = len(text.lstrip("-").replace(".", "").strip("0")) or 1
        size += len(name.encode()) + (len(text.encode()) if kind == "S" else (digits + 1) // 2 + 1)
    return size


def read_units(operation: str, parsed: dict) -> float:
    """On-demand read request units of one answer. A Query of a (KEYS_ONLY) index reads
    eventually consistently: half a unit per 4 KB of all its entries together, at least half.
    A strongly consistent BatchGetItem: a unit per 4 KB of each item, rounded up per item."""
    if operation == "Query":
        return max(1, math.ceil(sum(item_bytes(i) for i in parsed["Items"]) / 4096)) * 0.5
    return sum(math.ceil(item_bytes(i) / 4096) for items in parsed["Responses"].values() for i in items)


def test_a_list_page_costs_four_queries_and_one_batch_get_of_its_jobs(moto_server, monkeypatch):
    """480 jobs, the newest 120 as the dispatcher leaves them (done with the worker's scene, or
    failed), so every shard holds more than a page: the requests and read units the README
    states, for pages of 20 and of 100, of all jobs and of one state."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    dynamostore.create_table("jobs-list-cost")
    client = dynamostore.make_client()
    job_store = dynamostore.DynamoStore("jobs-list-cost", client=client)
    for n in range(480):
        job_id = f"0d4c3f0e-8f5a-4b8e-9c1d-{n:012d}"
        job_store.create(job_id, {"prompt": "a spooky hallway", "seed": n, "style": "doom"}, "orch-cost", 30_000)
        if n < 360:
            continue
        job_store.claim(job_id, "orch-cost", 30_000)
        if n % 10:
            job_store.finish(job_id, "orch-cost", JobState.DONE, result=scene.build_scene("a spooky hallway", n, "doom"))
        else:
            job_store.finish(job_id, "orch-cost", JobState.FAILED, error="the worker could not be reached")

    answers: list[tuple[str, dict]] = []
    client.meta.events.register("after-call.dynamodb",
                                lambda model, parsed, **_: answers.append((model.name, parsed)))

    def page(state: str | None, limit: int, before: str | None) -> tuple[int, collections.Counter[str], float, str]:
        answers.clear()
        jobs, after = job_store.list_jobs(state, limit, before)
        requests = collections.Counter(operation for operation, _ in answers)
        return len(jobs), requests, sum(read_units(operation, parsed) for operation, parsed in answers), after

    first = page(None, 20, None)
    assert first[:3] == (20, {"Query": 4, "BatchGetItem": 1}, 22.0)
    assert page(None, 20, first[3])[:3] == (20, {"Query": 4, "BatchGetItem": 1}, 22.0)
    # Each shard answers limit + 1 = 101 index entries of 126 bytes: 4 x 2.0 units, then 100 x 1.0.
    assert page(None, 100, None)[:3] == (100, {"Query": 4, "BatchGetItem": 1}, 108.0)
    assert page("queued", 100, None)[:3] == (100, {"Query": 4, "BatchGetItem": 1}, 106.0)  # 90 queued a shard
    assert page("failed", 20, None)[:3] == (12, {"Query": 4, "BatchGetItem": 1}, 14.0)
    assert page("canceled", 20, None)[:3] == (0, {"Query": 4}, 2.0)
