"""MemoryStore-only behaviour (the shared contract is tests/test_store_contract.py): the
bound (oldest finished jobs forgotten first, StoreFull when all are active), copies
handed to callers, the injected clock, and its lock under concurrent callers."""

from __future__ import annotations

import threading

import pytest

from store import JobState, MemoryStore, StoreFull

INPUT = {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}
OWNER = "orch-1"
LEASE_MS = 30_000


def make(store: MemoryStore, *job_ids: str) -> None:
    for job_id in job_ids:
        store.create(job_id, INPUT, OWNER, LEASE_MS)


def finish(store: MemoryStore, job_id: str, state: JobState = JobState.DONE) -> None:
    store.claim(job_id, OWNER, LEASE_MS)
    if state is JobState.DONE:
        store.finish(job_id, OWNER, state, result={"digest": job_id})
    else:
        store.finish(job_id, OWNER, state, error="worker down")


def present(store: MemoryStore, *job_ids: str) -> list[str]:
    return [j for j in job_ids if store.get(j) is not None]


# -- the bound --------------------------------------------------------------------------


def test_store_holds_up_to_max_jobs_without_forgetting_any():
    store = MemoryStore(max_jobs=3)
    make(store, "a", "b", "c")
    finish(store, "a")
    finish(store, "b", JobState.FAILED)
    finish(store, "c")
    assert (len(store), present(store, "a", "b", "c")) == (3, ["a", "b", "c"])


def test_past_max_jobs_the_earliest_finished_job_is_forgotten_first():
    store = MemoryStore(max_jobs=3)
    make(store, "a", "b", "c")
    finish(store, "c")  # finished first, although created last
    finish(store, "a", JobState.FAILED)
    make(store, "d")
    assert (len(store), present(store, "a", "b", "c", "d")) == (3, ["a", "b", "d"])
    make(store, "e")
    assert (len(store), present(store, "a", "b", "c", "d", "e")) == (3, ["b", "d", "e"])


def test_create_raises_store_full_when_every_job_is_active():
    store = MemoryStore(max_jobs=2)
    make(store, "a", "b")
    store.claim("b", OWNER, LEASE_MS)  # running counts as active too
    with pytest.raises(StoreFull) as info:
        make(store, "c")
    assert str(info.value) == "the in-memory store holds 2 active jobs"
    assert (len(store), present(store, "a", "b", "c")) == (2, ["a", "b"])


def test_store_full_clears_once_a_job_finishes():
    store = MemoryStore(max_jobs=2)
    make(store, "a", "b")
    with pytest.raises(StoreFull):
        make(store, "c")
    finish(store, "b")
    make(store, "c")
    assert present(store, "a", "b", "c") == ["a", "c"]


def test_a_forgotten_job_id_can_be_created_again_and_is_not_evicted_twice():
    store = MemoryStore(max_jobs=2)
    make(store, "a", "b")
    finish(store, "a")
    make(store, "c")  # forgets "a"
    with pytest.raises(StoreFull):
        make(store, "a")  # "b" and "c" are active: no room, and the old "a" entry must not free any
    finish(store, "b")
    make(store, "a")
    assert (store.get("a")["state"], present(store, "a", "b", "c")) == ("queued", ["a", "c"])


def test_a_forgotten_job_leaves_the_list_and_a_job_created_again_lists_once_under_its_new_time():
    now = [1_800_000_000.0]
    store = MemoryStore(max_jobs=2, clock=lambda: now[0])
    make(store, "a")
    now[0] += 1
    make(store, "b")
    finish(store, "a")
    now[0] += 1
    make(store, "c")  # forgets "a"
    assert [j["jobId"] for j in store.list_jobs(None, 10, None)[0]] == ["c", "b"]
    finish(store, "b")
    now[0] += 1
    make(store, "a")  # forgets "b"
    assert [(j["jobId"], j["createdAt"]) for j in store.list_jobs(None, 10, None)[0]] == [
        ("a", "2027-01-15T08:00:03.000Z"), ("c", "2027-01-15T08:00:02.000Z")]


def test_jobs_created_out_of_clock_order_by_racing_threads_list_by_created_at():
    """A thread may read the clock, then insert after one that read it later: the list is by time."""
    now = [1_800_000_002.0]
    store = MemoryStore(clock=lambda: now[0])
    make(store, "late")
    now[0] = 1_800_000_001.0
    make(store, "early")
    assert store.list_jobs(None, 10, None)[0][-1]["jobId"] == "early"
    assert [j["jobId"] for j in store.list_jobs(None, 1, "2027-01-15T08:00:02.000Z#late")[0]] == ["early"]


# -- copies -----------------------------------------------------------------------------


def test_returned_jobs_are_copies_at_the_top_level():
    store = MemoryStore()
    created = store.create("a", INPUT, OWNER, LEASE_MS)
    created["state"] = "done"
    got = store.get("a")
    got["progress"] = 0.5
    claimed = store.claim("a", OWNER, LEASE_MS)
    claimed["owner"] = "someone-else"
    assert (store.get("a")["state"], store.get("a")["progress"], store.get("a")["owner"]) == ("running", 0.0, OWNER)


def test_create_copies_the_callers_input():
    store = MemoryStore()
    job_input = dict(INPUT)
    store.create("a", job_input, OWNER, LEASE_MS)
    job_input["prompt"] = "changed by the caller"
    assert store.get("a")["input"] == INPUT


def test_mutating_a_returned_jobs_input_does_not_change_the_stored_job():
    """JobStore says returned dicts are the caller's to keep; ``dict(job)`` copies only the
    top level, so the nested ``input`` object is shared with the store."""
    store = MemoryStore()
    store.create("a", INPUT, OWNER, LEASE_MS)["input"]["seed"] = 1
    store.get("a")["input"]["prompt"] = "changed by a reader"
    assert store.get("a")["input"] == {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}


def test_mutating_a_finished_jobs_result_does_not_change_the_stored_job():
    store = MemoryStore()
    make(store, "a")
    store.claim("a", OWNER, LEASE_MS)
    result = {"digest": "sha256:abc"}
    finished = store.finish("a", OWNER, JobState.DONE, result=result)
    result["digest"] = "changed by the worker client"
    finished["result"]["extra"] = True
    assert store.get("a")["result"] == {"digest": "sha256:abc"}


# -- clock ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_times_and_leases_come_from_the_injected_clock():
    clock = FakeClock(1700000000.5)
    store = MemoryStore(clock=clock)
    created = store.create("a", INPUT, OWNER, 2000)
    assert (created["createdAt"], created["updatedAt"], created["leaseExpiresAt"]) == (
        "2023-11-14T22:13:20.500Z", "2023-11-14T22:13:20.500Z", 1700000002500)
    clock.now = 1700000002.499
    assert store.expired(limit=10) == []
    clock.now = 1700000002.5
    assert store.expired(limit=10) == ["a"]
    clock.now = 1700000003.25
    claimed = store.claim("a", "orch-2", 1000)
    assert (claimed["owner"], claimed["updatedAt"], claimed["leaseExpiresAt"], claimed["createdAt"]) == (
        "orch-2", "2023-11-14T22:13:23.250Z", 1700000004250, "2023-11-14T22:13:20.500Z")


# -- concurrency ------------------------------------------------------------------------


def test_concurrent_creates_fill_the_store_exactly_to_its_bound():
    store = MemoryStore(max_jobs=40)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def creator(n: int) -> None:
        start.wait()
        for m in range(10):
            try:
                store.create(f"job-{n}-{m}", INPUT, OWNER, LEASE_MS)
                result = "created"
            except StoreFull:
                result = "full"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=creator, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert (outcomes.count("created"), outcomes.count("full"), len(store)) == (40, 40, 40)


def test_concurrent_claims_of_an_expired_job_have_exactly_one_winner():
    clock = FakeClock(1000.0)
    store = MemoryStore(clock=clock)
    store.create("a", INPUT, "dead-orchestrator", 0)
    winners: list[str] = []
    start = threading.Barrier(16)

    def claimer(n: int) -> None:
        start.wait()
        if store.claim("a", f"orch-{n}", LEASE_MS) is not None:
            winners.append(f"orch-{n}")

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(winners) == 1
    job = store.get("a")
    assert (job["owner"], job["attempts"], job["state"]) == (winners[0], 1, "running")
