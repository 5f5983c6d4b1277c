"""Unit tests of dynamolist without a server: the shard of a job, the attributes that put an
item in the listing indexes, the stateShard that follows every update of the state, how the
shards' answers merge into a page, and the BatchGetItem of a page (retries, order, gaps)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

import dynamolist
from conftest import ROOT
from store import StoreUnavailable

KEY = "2027-01-15T08:00:00.000Z#"


def test_a_jobs_shard_is_crc32_of_its_id_mod_4_the_same_in_every_process():
    """Not ``hash()``, which differs per process: an update computes the shard without a read."""
    assert [dynamolist.shard(f"job-{i:02d}") for i in range(8)] == [3, 1, 3, 1, 2, 0, 2, 0]
    code = "import dynamolist; print(dynamolist.shard('0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f'))"
    for seed in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed},
                                capture_output=True, text=True, timeout=60)
        assert (result.returncode, result.stdout) == (0, "0\n"), result.stderr


def test_a_new_item_is_in_both_listing_indexes():
    assert dynamolist.index_attributes("job-00", "2027-01-15T08:00:00.000Z", "queued") == {
        "createdKey": {"S": "2027-01-15T08:00:00.000Z#job-00"}, "listShard": {"S": "all#3"},
        "stateShard": {"S": "queued#3"}}


def test_an_update_that_sets_the_state_sets_the_state_shard_with_it():
    update, values = dynamolist.with_state_shard(
        "job-00", "SET #state = :to, #updatedAt = :now REMOVE #activeShard", {":to": {"S": "failed"}, ":now": {"S": "t"}})
    assert (update, values) == (
        "SET #state = :to, #stateShard = :stateShard, #updatedAt = :now REMOVE #activeShard",
        {":to": {"S": "failed"}, ":now": {"S": "t"}, ":stateShard": {"S": "failed#3"}})


@pytest.mark.parametrize("update", ["SET #progress = :progress, #leaseExpiresAt = :lease",
                                    "SET #state = :to, #stateShard = :mine"])
def test_an_update_that_leaves_the_state_or_sets_the_shard_itself_is_unchanged(update):
    values = {":to": {"S": "done"}, ":progress": {"N": "0.5"}}
    assert dynamolist.with_state_shard("job-00", update, values) == (update, values)


# --- merging the shards' answers ---------------------------------------------------------

def keys(*ids: str) -> list[str]:
    return [KEY + i for i in ids]


def test_merge_takes_the_newest_keys_of_all_shards_and_says_more_follow():
    answers = [(keys("9", "5", "1"), True), (keys("8", "4"), False), (keys("7", "6", "3"), True), ([], False)]
    assert dynamolist.merge(answers, 3) == (keys("9", "8", "7"), True)


def test_merge_of_short_answers_is_the_last_page():
    answers = [(keys("9", "5"), False), (keys("8"), False), ([], False), ([], False)]
    assert dynamolist.merge(answers, 3) == (keys("9", "8", "5"), False)
    assert dynamolist.merge([([], False)] * 4, 3) == ([], False)


def test_merge_takes_nothing_below_a_shard_that_stopped_early():
    """A shard cut short (DynamoDB's 1 MB per answer) may hold keys between its last one and
    the others' keys: the page stops at its last key so the next page cannot skip them."""
    answers = [(keys("9", "7"), True), (keys("8", "6", "5"), False)]
    assert dynamolist.merge(answers, 4) == (keys("9", "8", "7"), True)


# --- reading a page ----------------------------------------------------------------------

def item(job_id: str, state: str = "done") -> dict[str, Any]:
    return {"jobId": {"S": job_id}, "state": {"S": state}}


class FakeTable:
    """Answers the Lister's queries from ``shards`` ({shard: keys newest first}) and its batch
    reads from ``items``, leaving ``unprocessed`` keys unread in the first answers."""

    def __init__(self, shards: dict[int, list[str]], items: dict[str, dict], unprocessed: list[int]):
        self.shards, self.items, self.unprocessed = shards, items, list(unprocessed)
        self.batches: list[list[str]] = []
        self.sleeps: list[float] = []

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        assert (operation, kwargs["IndexName"], kwargs["ScanIndexForward"]) == ("query", "jobs-by-created", False)
        shard = int(kwargs["ExpressionAttributeValues"][":shard"]["S"].removeprefix("all#"))
        found = self.shards.get(shard, [])[:kwargs["Limit"]]
        out: dict[str, Any] = {"Items": [{"createdKey": {"S": k}} for k in found]}
        if len(found) == kwargs["Limit"]:
            out["LastEvaluatedKey"] = {"createdKey": {"S": found[-1]}}
        return out

    def batch_get(self, request: dict[str, Any]) -> tuple[list[dict], dict[str, Any] | None]:
        assert request["ConsistentRead"] is True
        ids = [k["jobId"]["S"] for k in request["Keys"]]
        self.batches.append(ids)
        left = self.unprocessed.pop(0) if self.unprocessed else 0
        answered, rest = ids[left:], ids[:left]
        found = [self.items[i] for i in reversed(answered) if i in self.items]  # any order, as DynamoDB
        return found, ({**request, "Keys": [{"jobId": {"S": i}} for i in rest]} if rest else None)

    def lister(self) -> dynamolist.Lister:
        return dynamolist.Lister("jobs-x", self.call, self.batch_get,
                                 lambda i: {"jobId": i["jobId"]["S"], "state": i["state"]["S"]}, self.sleeps.append)


def test_a_page_reads_its_jobs_in_one_batch_in_key_order_leaving_out_deleted_ones():
    table = FakeTable({0: keys("d", "a"), 1: keys("c"), 3: keys("b")}, {i: item(i) for i in "abd"}, [])
    jobs, after = table.lister().page(None, 3, None)
    assert (jobs, after) == ([{"jobId": "d", "state": "done"}, {"jobId": "b", "state": "done"}], KEY + "b")
    assert table.batches == [["d", "c", "b"]]


def test_unprocessed_keys_are_asked_again_after_a_backoff():
    table = FakeTable({0: keys("c", "b", "a")}, {i: item(i) for i in "abc"}, [2, 1])
    jobs, after = table.lister().page(None, 5, None)
    assert ([j["jobId"] for j in jobs], after) == (["c", "b", "a"], None)
    assert table.batches == [["c", "b", "a"], ["c", "b"], ["c"]]
    assert len(table.sleeps) == 2 and 0.025 <= table.sleeps[0] < 0.05 and 0.05 <= table.sleeps[1] < 0.1


def test_keys_left_unprocessed_five_times_are_store_unavailable():
    table = FakeTable({0: keys("b", "a")}, {i: item(i) for i in "ab"}, [1] * 5)
    with pytest.raises(StoreUnavailable) as info:
        table.lister().page(None, 5, None)
    assert str(info.value) == "DynamoDB table jobs-x: BatchGetItem left 1 of 2 keys unprocessed after 5 attempts"
    assert len(table.batches) == 5


def test_a_job_whose_state_moved_on_since_the_index_read_is_left_out_of_a_state_page():
    table = FakeTable({}, {"a": item("a", "running"), "b": item("b", "done")}, [])

    def by_state(operation: str, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["IndexName"] == "jobs-by-state"
        shard = kwargs["ExpressionAttributeValues"][":shard"]["S"]
        return {"Items": [{"createdKey": {"S": k}} for k in (keys("b", "a") if shard == "running#0" else [])]}

    lister = dynamolist.Lister("jobs-x", by_state, table.batch_get, lambda i: {"jobId": i["jobId"]["S"],
                                                                               "state": i["state"]["S"]})
    assert lister.page("running", 5, None) == ([{"jobId": "a", "state": "running"}], None)
