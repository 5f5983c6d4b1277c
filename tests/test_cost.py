"""DynamoDB requests per job, measured on the real dispatcher, a real worker process and
a moto server: the numbers the README states."""

from __future__ import annotations

import collections
import math

import dynamostore
from dispatcher import DispatchConfig, Dispatcher
from polling import wait_until
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
        job_id = dispatcher.create({"prompt": "a spooky hallway", "seed": 1, "style": None}, None)
        job = wait_until(lambda: (j := observer.get(job_id))["state"] == "done" and j, 30, "job done", 0.1)
    finally:
        dispatcher.stop(5)
    heartbeats = calls["UpdateItem"] - 2  # minus the claim and the finish
    assert calls["PutItem"] == 1
    assert 1 <= heartbeats <= math.ceil(WORK_MS / WRITE_INTERVAL_MS)
    assert calls["Query"] == 1  # the reaper's pass at start (then hourly here): per replica, not per job
    assert set(calls) == {"PutItem", "UpdateItem", "Query"}  # status reads cost one GetItem each, by the client
    assert (job["state"], job["attempts"]) == ("done", 1)
