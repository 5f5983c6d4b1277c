"""One contract for every JobStore backend: MemoryStore, DynamoStore on moto server, and
DynamoStore on dynalite (a stricter DynamoDB-protocol server that serialises writes to an
item as DynamoDB does). Time is a fake clock injected into the store, so lease expiry is
exact and no test sleeps."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import dynamostore
from polling import wait_until
from store import IllegalTransition, JobExists, JobNotFound, JobState, JobStore, LeaseLost, MemoryStore

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
LEASE_MS = 30_000
JOB_INPUT = {"prompt": "a lighthouse at dusk", "seed": 42, "style": "watercolor"}
RACERS = 8


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class Backend:
    name: str
    clock: FakeClock
    open: Callable[[], JobStore]  # another handle on the same jobs: one orchestrator replica


def _wait_active(client: Any, name: str) -> None:
    wait_until(lambda: client.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE", 20,
               f"table {name} ACTIVE", 0.02)


def _backend(request, monkeypatch, name: str):
    clock = FakeClock()
    if name == "memory":
        shared = MemoryStore(clock=clock)
        yield Backend("memory", clock, lambda: shared)
        return
    server = request.getfixturevalue(f"{name}_server")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    client = dynamostore.make_client()
    table = f"jobs-contract-{uuid.uuid4().hex[:12]}"
    if name == "moto":
        dynamostore.create_table(table, client=client)
    else:  # dynalite has no UpdateTimeToLive: create the same table without TTL/PITR
        client.create_table(**dynamostore.table_definition(table))
        _wait_active(client, table)
    yield Backend(name, clock, lambda: dynamostore.DynamoStore(table, client=client, clock=clock))
    client.delete_table(TableName=table)


@pytest.fixture(params=["memory", "moto", "dynalite"])
def backend(request, monkeypatch):
    yield from _backend(request, monkeypatch, request.param)


@pytest.fixture(params=["memory", "dynalite"])
def race_backend(request, monkeypatch):
    """Backends for the race tests. Not moto: moto server applies conditional writes without
    a per-item lock (measured: 1 race in 200 with two winning claims, 1 in 200 with two
    finishes), so races are proven on the memory store's lock and on dynalite, which locks
    each item as DynamoDB does."""
    yield from _backend(request, monkeypatch, request.param)


def _assert_types(job: dict[str, Any]) -> None:
    """Numbers come back as Python numbers of the interface's types, not Decimals."""
    assert type(job["progress"]) is float
    assert type(job["attempts"]) is int
    assert type(job["input"]["seed"]) is int
    assert job["leaseExpiresAt"] is None or type(job["leaseExpiresAt"]) is int


def _queued(job_id: str = "job-1", owner: str = "orch-a") -> dict[str, Any]:
    return {
        "jobId": job_id, "state": "queued", "progress": 0.0, "result": None, "error": None,
        "createdAt": "2027-01-15T08:00:00.000Z", "updatedAt": "2027-01-15T08:00:00.000Z",
        "input": {"prompt": "a lighthouse at dusk", "seed": 42, "style": "watercolor"},
        "attempts": 0, "owner": owner, "leaseExpiresAt": 1_800_000_030_000, "requestHash": None,
    }


def _running(b: Backend, job_id: str = "job-1", owner: str = "orch-a") -> JobStore:
    store = b.open()
    store.create(job_id, JOB_INPUT, owner, LEASE_MS)
    assert store.claim(job_id, owner, LEASE_MS) is not None
    return store


# --- create / get ---------------------------------------------------------------------

def test_create_returns_the_queued_job_and_every_replica_reads_it_back(backend):
    created = backend.open().create("job-1", JOB_INPUT, "orch-a", LEASE_MS)
    assert created == _queued()
    got = backend.open().get("job-1")
    assert got == _queued()
    _assert_types(got)


def test_create_without_style_stores_prompt_and_seed_only(backend):
    store = backend.open()
    store.create("job-2", {"prompt": "fog", "seed": 7}, "orch-a", LEASE_MS)
    assert store.get("job-2")["input"] == {"prompt": "fog", "seed": 7}


def test_get_of_unknown_job_returns_none(backend):
    assert backend.open().get("no-such-job") is None


def test_create_of_existing_id_raises_job_exists_and_keeps_the_first(backend):
    store = backend.open()
    store.create("job-1", JOB_INPUT, "orch-a", LEASE_MS)
    with pytest.raises(JobExists) as info:
        backend.open().create("job-1", {"prompt": "other", "seed": 1}, "orch-b", LEASE_MS)
    assert info.value.job_id == "job-1"
    assert store.get("job-1") == _queued()


# --- claim ----------------------------------------------------------------------------

def test_owner_claims_its_queued_job_and_counts_an_attempt(backend):
    store = backend.open()
    store.create("job-1", JOB_INPUT, "orch-a", LEASE_MS)
    backend.clock.advance(1)
    claimed = store.claim("job-1", "orch-a", 60_000)
    expected = {**_queued(), "state": "running", "attempts": 1, "updatedAt": "2027-01-15T08:00:01.000Z",
                "leaseExpiresAt": 1_800_000_061_000}
    assert claimed == expected
    assert store.get("job-1") == expected
    _assert_types(claimed)


def test_claim_under_another_owners_live_lease_returns_none_and_changes_nothing(backend):
    store = backend.open()
    store.create("job-1", JOB_INPUT, "orch-a", LEASE_MS)
    backend.clock.advance(29.999)
    assert backend.open().claim("job-1", "orch-b", LEASE_MS) is None
    assert store.get("job-1") == _queued()


def test_claim_is_allowed_from_the_millisecond_the_lease_expires(backend):
    store = _running(backend)  # claimed at T0: lease until T0 + 30 s, attempts 1
    backend.clock.advance(30)
    claimed = backend.open().claim("job-1", "orch-b", LEASE_MS)
    assert (claimed["owner"], claimed["state"], claimed["attempts"], claimed["leaseExpiresAt"]) == (
        "orch-b", "running", 2, 1_800_000_060_000)
    assert store.get("job-1")["owner"] == "orch-b"


def test_claim_counts_every_attempt(backend):
    store = backend.open()
    store.create("job-1", JOB_INPUT, "orch-a", LEASE_MS)
    for owner in ("orch-a", "orch-b", "orch-c"):
        backend.clock.advance(31)
        assert store.claim("job-1", owner, LEASE_MS)["owner"] == owner
    assert store.get("job-1")["attempts"] == 3


def test_claim_of_finished_or_unknown_job_returns_none(backend):
    store = _running(backend)
    store.finish("job-1", "orch-a", JobState.DONE, result={"url": "s3://b/k"})
    backend.clock.advance(3600)
    assert store.claim("job-1", "orch-a", LEASE_MS) is None
    assert store.claim("job-1", "orch-b", LEASE_MS) is None
    assert store.claim("no-such-job", "orch-a", LEASE_MS) is None
    assert store.get("job-1")["state"] == "done"


# --- heartbeat ------------------------------------------------------------------------

def test_heartbeat_records_progress_never_lower_and_extends_the_lease(backend):
    """A lower report changes nothing a client sees: updatedAt stays (waiters stay asleep)."""
    store = _running(backend)
    backend.clock.advance(5)
    store.heartbeat("job-1", "orch-a", 0.5, LEASE_MS)
    backend.clock.advance(5)
    store.heartbeat("job-1", "orch-a", 0.25, LEASE_MS)
    job = store.get("job-1")
    assert (job["progress"], job["leaseExpiresAt"], job["updatedAt"]) == (
        0.5, 1_800_000_040_000, "2027-01-15T08:00:05.000Z")
    backend.clock.advance(1)
    store.heartbeat("job-1", "orch-a", 0.75, LEASE_MS)
    assert store.get("job-1")["progress"] == 0.75


@pytest.mark.parametrize(("reported", "recorded"), [(1.0, 0.99), (7, 0.99), (-0.5, 0.0), (0.99, 0.99)])
def test_heartbeat_records_progress_within_0_and_0_99_while_running(backend, reported, recorded):
    """1.0 is reserved for done: the store, not the caller, keeps a running job below it."""
    store = _running(backend)
    store.heartbeat("job-1", "orch-a", reported, LEASE_MS)
    assert store.get("job-1")["progress"] == recorded


def test_heartbeat_below_the_recorded_progress_still_extends_the_lease(backend):
    store = _running(backend)
    store.heartbeat("job-1", "orch-a", 0.5, LEASE_MS)
    backend.clock.advance(20)
    store.heartbeat("job-1", "orch-a", 0.1, LEASE_MS)
    job = store.get("job-1")
    assert (job["progress"], job["leaseExpiresAt"]) == (0.5, 1_800_000_050_000)


def test_check_passes_on_a_store_that_can_serve(backend):
    assert backend.open().check() is None


def test_heartbeat_by_another_owner_raises_lease_lost_and_changes_nothing(backend):
    store = _running(backend)
    before = store.get("job-1")
    with pytest.raises(LeaseLost) as info:
        backend.open().heartbeat("job-1", "orch-b", 0.9, LEASE_MS)
    assert (info.value.job_id, info.value.owner) == ("job-1", "orch-b")
    assert store.get("job-1") == before


def test_heartbeat_after_being_claimed_away_raises_lease_lost(backend):
    store = _running(backend)
    backend.clock.advance(31)
    backend.open().claim("job-1", "orch-b", LEASE_MS)
    with pytest.raises(LeaseLost):
        store.heartbeat("job-1", "orch-a", 0.9, LEASE_MS)


def test_heartbeat_on_queued_or_finished_job_raises_lease_lost(backend):
    store = backend.open()
    store.create("job-q", JOB_INPUT, "orch-a", LEASE_MS)
    with pytest.raises(LeaseLost):
        store.heartbeat("job-q", "orch-a", 0.1, LEASE_MS)
    _running(backend, "job-f").finish("job-f", "orch-a", JobState.FAILED, error="boom")
    with pytest.raises(LeaseLost):
        store.heartbeat("job-f", "orch-a", 0.1, LEASE_MS)


def test_heartbeat_on_unknown_job_raises_job_not_found(backend):
    with pytest.raises(JobNotFound):
        backend.open().heartbeat("no-such-job", "orch-a", 0.1, LEASE_MS)


def test_renew_extends_the_lease_and_changes_nothing_a_client_sees(backend):
    store = _running(backend)
    before = store.get("job-1")
    backend.clock.advance(7)
    store.renew("job-1", "orch-a", LEASE_MS)
    after = store.get("job-1")
    assert after == {**before, "leaseExpiresAt": 1_800_000_037_000}


def test_renew_by_a_non_owner_or_of_a_job_not_running_raises_lease_lost(backend):
    store = _running(backend)
    with pytest.raises(LeaseLost):
        store.renew("job-1", "orch-b", LEASE_MS)
    store.create("job-q", JOB_INPUT, "orch-a", LEASE_MS)
    with pytest.raises(LeaseLost):
        store.renew("job-q", "orch-a", LEASE_MS)
    with pytest.raises(JobNotFound):
        store.renew("no-such-job", "orch-a", LEASE_MS)


def test_updated_at_strictly_increases_even_for_changes_in_one_millisecond(backend):
    """The clock does not move: each visible change still gets a later updatedAt."""
    store = _running(backend)
    stamps = [store.get("job-1")["updatedAt"]]
    for progress in (0.1, 0.2, 0.3):
        store.heartbeat("job-1", "orch-a", progress, LEASE_MS)
        stamps.append(store.get("job-1")["updatedAt"])
    stamps.append(store.finish("job-1", "orch-a", JobState.DONE, result={})["updatedAt"])
    assert stamps == ["2027-01-15T08:00:00.001Z", "2027-01-15T08:00:00.002Z", "2027-01-15T08:00:00.003Z",
                      "2027-01-15T08:00:00.004Z", "2027-01-15T08:00:00.005Z"]


# --- cancel ---------------------------------------------------------------------------

@pytest.mark.parametrize("state", ["queued", "running"])
def test_cancel_ends_a_queued_or_running_job_keeping_its_progress(backend, state):
    store = backend.open()
    store.create("job-1", JOB_INPUT, "orch-a", LEASE_MS)
    if state == "running":
        store.claim("job-1", "orch-a", LEASE_MS)
        store.heartbeat("job-1", "orch-a", 0.4, LEASE_MS)
    backend.clock.advance(2)
    job = backend.open().cancel("job-1")  # any replica: no owner needed
    assert (job["state"], job["progress"], job["error"], job["leaseExpiresAt"], job["updatedAt"]) == (
        "canceled", 0.4 if state == "running" else 0.0, "canceled by client", None, "2027-01-15T08:00:02.000Z")
    assert store.get("job-1") == job
    assert store.expired(10) == []  # out of the active index


def test_a_canceled_run_can_neither_heartbeat_nor_finish_nor_be_claimed(backend):
    store = _running(backend)
    store.cancel("job-1")
    with pytest.raises(LeaseLost):
        store.heartbeat("job-1", "orch-a", 0.9, LEASE_MS)
    with pytest.raises(LeaseLost):
        store.renew("job-1", "orch-a", LEASE_MS)
    with pytest.raises(IllegalTransition) as info:
        store.finish("job-1", "orch-a", JobState.DONE, result={})
    assert (info.value.from_state, info.value.to_state) == ("canceled", "done")
    assert store.claim("job-1", "orch-b", LEASE_MS) is None
    assert store.get("job-1")["state"] == "canceled"


@pytest.mark.parametrize("ended", ["done", "failed", "canceled"])
def test_cancel_of_an_ended_job_raises_illegal_transition_naming_its_state(backend, ended):
    store = _running(backend)
    if ended == "canceled":
        store.cancel("job-1")
    else:
        store.finish("job-1", "orch-a", JobState(ended), result={}, error="boom")
    before = store.get("job-1")
    with pytest.raises(IllegalTransition) as info:
        store.cancel("job-1")
    assert (info.value.job_id, info.value.from_state, info.value.to_state) == ("job-1", ended, "canceled")
    assert store.get("job-1") == before


def test_cancel_of_an_unknown_job_raises_job_not_found(backend):
    with pytest.raises(JobNotFound):
        backend.open().cancel("no-such-job")


def test_states_reads_the_state_of_each_existing_job(backend):
    store = _running(backend, "job-r")
    store.create("job-q", JOB_INPUT, "orch-a", LEASE_MS)
    store.create("job-c", JOB_INPUT, "orch-a", LEASE_MS)
    store.cancel("job-c")
    assert store.states(["job-r", "job-q", "job-c", "no-such-job"]) == {
        "job-r": "running", "job-q": "queued", "job-c": "canceled"}
    assert store.states([]) == {}


def test_create_keeps_the_request_hash_and_a_second_create_gets_the_existing_job(backend):
    store = backend.open()
    first = store.create("job-1", JOB_INPUT, "orch-a", LEASE_MS, request_hash="abc123")
    assert first["requestHash"] == "abc123"
    with pytest.raises(JobExists) as info:
        backend.open().create("job-1", {**JOB_INPUT, "seed": 7}, "orch-b", LEASE_MS, request_hash="other")
    assert info.value.current == first


# --- finish ---------------------------------------------------------------------------

def test_finish_done_sets_progress_one_and_result_and_leaves_the_lease(backend):
    store = _running(backend)
    store.heartbeat("job-1", "orch-a", 0.4, LEASE_MS)
    backend.clock.advance(12)
    done = store.finish("job-1", "orch-a", JobState.DONE, result={"sceneUrl": "s3://scenes/1.glb", "frames": 24})
    expected = {**_queued(), "state": "done", "progress": 1.0, "attempts": 1,
                "result": {"sceneUrl": "s3://scenes/1.glb", "frames": 24},
                "updatedAt": "2027-01-15T08:00:12.000Z", "leaseExpiresAt": None}
    assert done == expected
    assert backend.open().get("job-1") == expected
    _assert_types(done)


def test_finish_failed_records_the_error_and_keeps_progress(backend):
    store = _running(backend)
    store.heartbeat("job-1", "orch-a", 0.4, LEASE_MS)
    failed = store.finish("job-1", "orch-a", JobState.FAILED, error="worker timed out after 3 attempts")
    assert {k: failed[k] for k in ("state", "progress", "result", "error", "leaseExpiresAt")} == {
        "state": "failed", "progress": 0.4, "result": None,
        "error": "worker timed out after 3 attempts", "leaseExpiresAt": None}
    assert store.get("job-1") == failed


def test_queued_job_may_fail_but_not_be_done(backend):
    store = backend.open()
    store.create("job-1", JOB_INPUT, "orch-a", LEASE_MS)
    with pytest.raises(IllegalTransition) as info:
        store.finish("job-1", "orch-a", JobState.DONE, result={})
    assert (info.value.job_id, info.value.from_state, info.value.to_state) == ("job-1", "queued", "done")
    assert store.finish("job-1", "orch-a", JobState.FAILED, error="cancelled")["state"] == "failed"


@pytest.mark.parametrize(("first", "second"), [
    (JobState.DONE, JobState.DONE), (JobState.DONE, JobState.FAILED),
    (JobState.FAILED, JobState.DONE), (JobState.FAILED, JobState.FAILED)])
def test_finishing_twice_raises_illegal_transition_naming_both_states(backend, first, second):
    store = _running(backend)
    finished = store.finish("job-1", "orch-a", first, result={"n": 1}, error="e")
    with pytest.raises(IllegalTransition) as info:
        backend.open().finish("job-1", "orch-a", second, result={"n": 2}, error="late")
    assert (info.value.job_id, info.value.from_state, info.value.to_state) == (
        "job-1", first.value, second.value)
    assert str(info.value) == f"job job-1: illegal transition {first.value} -> {second.value}"
    assert store.get("job-1") == finished


def test_finish_by_another_owner_raises_lease_lost_and_job_keeps_running(backend):
    store = _running(backend)
    with pytest.raises(LeaseLost) as info:
        backend.open().finish("job-1", "orch-b", JobState.DONE, result={"n": 1})
    assert (info.value.job_id, info.value.owner) == ("job-1", "orch-b")
    assert store.get("job-1")["state"] == "running"


def test_finish_of_unknown_job_raises_job_not_found(backend):
    with pytest.raises(JobNotFound):
        backend.open().finish("no-such-job", "orch-a", JobState.DONE, result={})


# --- release --------------------------------------------------------------------------

def test_release_lets_another_orchestrator_claim_at_once(backend):
    store = _running(backend)
    assert backend.open().claim("job-1", "orch-b", LEASE_MS) is None
    store.release("job-1", "orch-a")
    assert store.get("job-1")["leaseExpiresAt"] == 0
    assert store.expired(10) == ["job-1"]
    assert backend.open().claim("job-1", "orch-b", LEASE_MS)["owner"] == "orch-b"


def test_release_by_another_owner_raises_lease_lost(backend):
    store = _running(backend)
    with pytest.raises(LeaseLost):
        backend.open().release("job-1", "orch-b")
    assert store.get("job-1")["leaseExpiresAt"] == 1_800_000_030_000


def test_release_of_finished_job_changes_nothing_and_of_unknown_raises(backend):
    store = _running(backend)
    done = store.finish("job-1", "orch-a", JobState.DONE, result={"n": 1})
    store.release("job-1", "orch-a")
    assert store.get("job-1") == done
    with pytest.raises(JobNotFound):
        store.release("no-such-job", "orch-a")


# --- expired --------------------------------------------------------------------------

def test_expired_merges_every_active_partition_oldest_lease_first_up_to_the_limit(backend):
    """24 jobs spread over every shard of DynamoDB's active index (test_dynamostore checks the
    spread): the answer is one order over all of them, not shard by shard."""
    store = backend.open()
    ids = [f"job-{i:02d}" for i in range(24)]
    for i, job_id in enumerate(ids):
        store.create(job_id, JOB_INPUT, "orch-a", 1_000 * (24 - i))  # the later the id, the sooner it expires
    backend.clock.advance(30)
    oldest_first = ids[::-1]
    assert store.expired(30) == oldest_first
    assert store.expired(5) == oldest_first[:5]
    store.claim("job-23", "orch-b", LEASE_MS)
    assert store.expired(3) == ["job-22", "job-21", "job-20"]


def test_expired_lists_only_expired_active_jobs_oldest_lease_first(backend):
    store = backend.open()
    for job_id, lease_ms in [("late", 20_000), ("early", 5_000), ("live", 90_000), ("mid", 10_000),
                             ("finished", 1_000)]:
        store.create(job_id, JOB_INPUT, "orch-a", lease_ms)
    store.finish("finished", "orch-a", JobState.FAILED, error="cancelled")
    assert store.expired(10) == []
    backend.clock.advance(20)
    assert store.expired(10) == ["early", "mid", "late"]
    assert store.expired(2) == ["early", "mid"]
    assert store.expired(0) == []
    store.claim("early", "orch-b", LEASE_MS)
    assert backend.open().expired(10) == ["mid", "late"]


# --- races: replicas with their own connections, released together ---------------------

def _race(backend: Backend, action: Callable[[JobStore, int], Any]) -> list[Any]:
    """Run ``action(store, i)`` in RACERS threads at once; return what each returned or raised."""
    stores = [backend.open() for _ in range(RACERS)]
    barrier = threading.Barrier(RACERS)
    outcomes: list[Any] = [None] * RACERS

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            outcomes[i] = action(stores[i], i)
        except Exception as exc:  # the outcome under test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_replicas_racing_to_claim_an_expired_job_have_exactly_one_winner(race_backend):
    backend = race_backend
    backend.open().create("job-1", JOB_INPUT, "orch-dead", LEASE_MS)
    backend.clock.advance(31)
    outcomes = _race(backend, lambda s, i: s.claim("job-1", f"orch-{i}", LEASE_MS))
    winners = [i for i, o in enumerate(outcomes) if o is not None]
    assert len(winners) == 1, outcomes
    job = backend.open().get("job-1")
    assert (job["owner"], job["attempts"]) == (f"orch-{winners[0]}", 1)


def test_racing_finishes_of_one_job_have_exactly_one_winner(race_backend):
    backend = race_backend
    _running(backend)
    states = [JobState.DONE, JobState.FAILED]
    outcomes = _race(backend, lambda s, i: s.finish("job-1", "orch-a", states[i % 2], result={"by": i},
                                                    error=f"by {i}"))
    winners = [o for o in outcomes if isinstance(o, dict)]
    losers = [o for o in outcomes if isinstance(o, IllegalTransition)]
    assert (len(winners), len(losers)) == (1, RACERS - 1), outcomes
    assert backend.open().get("job-1") == winners[0]


def test_racing_cancels_of_one_job_have_exactly_one_winner(race_backend):
    backend = race_backend
    _running(backend)
    outcomes = _race(backend, lambda s, i: s.cancel("job-1"))
    winners = [o for o in outcomes if isinstance(o, dict)]
    losers = [o for o in outcomes if isinstance(o, IllegalTransition)]
    assert (len(winners), len(losers)) == (1, RACERS - 1), outcomes
    assert {(o.from_state, o.to_state) for o in losers} == {("canceled", "canceled")}


def test_a_cancel_racing_the_finish_leaves_exactly_one_of_them_in_the_store(race_backend):
    """A late finish from a run that was canceled must not overwrite canceled, nor a cancel
    overwrite done: whichever write lands first wins, the other is refused."""
    backend = race_backend
    _running(backend)
    outcomes = _race(backend, lambda s, i: s.cancel("job-1") if i % 2 else
                     s.finish("job-1", "orch-a", JobState.DONE, result={"by": i}))
    winners = [o for o in outcomes if isinstance(o, dict)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, IllegalTransition) for o in outcomes if not isinstance(o, dict)), outcomes
    assert backend.open().get("job-1") == winners[0]
    assert winners[0]["state"] in ("done", "canceled")


# --- list_jobs --------------------------------------------------------------------------

TWELVE = [f"job-{i:02d}" for i in range(12)]  # three in each of DynamoDB's four list shards


def _ids(page: tuple[list[dict[str, Any]], str | None]) -> tuple[list[str], str | None]:
    jobs, after = page
    return [job["jobId"] for job in jobs], after


def _create_at(b: Backend, store: JobStore, *job_ids: str, step: float = 1) -> None:
    """Create ``job_ids`` in order, ``step`` seconds apart (0: all in one millisecond)."""
    for job_id in job_ids:
        store.create(job_id, JOB_INPUT, "orch-a", LEASE_MS)
        b.clock.advance(step)


def test_list_jobs_of_an_empty_store_is_an_empty_last_page(backend):
    store = backend.open()
    assert store.list_jobs(None, 20, None) == ([], None)
    assert store.list_jobs("failed", 20, "2027-01-15T08:00:00.000Z#job-1") == ([], None)


def test_list_jobs_pages_newest_first_and_ties_by_job_id_descending(backend):
    store = backend.open()
    _create_at(backend, store, "a")
    _create_at(backend, store, "c", "b", step=0)  # one millisecond: c before b, by id
    backend.clock.advance(1)
    _create_at(backend, store, "d")
    assert _ids(store.list_jobs(None, 2, None)) == (["d", "c"], "2027-01-15T08:00:01.000Z#c")
    assert _ids(store.list_jobs(None, 2, "2027-01-15T08:00:01.000Z#c")) == (["b", "a"], None)
    assert _ids(store.list_jobs(None, 4, None)) == (["d", "c", "b", "a"], None)
    assert _ids(store.list_jobs(None, 1, "2027-01-15T08:00:01.000Z#b")) == (["a"], None)


def test_list_jobs_shows_each_job_as_get_does(backend):
    store = _running(backend, "job-r")
    backend.clock.advance(1)
    _create_at(backend, store, "job-1")
    jobs, after = backend.open().list_jobs(None, 20, None)
    assert (jobs, after) == ([
        {**_queued("job-1"), "createdAt": "2027-01-15T08:00:01.000Z", "updatedAt": "2027-01-15T08:00:01.000Z",
         "leaseExpiresAt": 1_800_000_031_000},
        {**_queued("job-r"), "state": "running", "attempts": 1,
         "updatedAt": "2027-01-15T08:00:00.001Z"}], None)  # claimed in its creation's millisecond
    assert jobs == [store.get("job-1"), store.get("job-r")]
    _assert_types(jobs[1])


def test_list_jobs_pages_through_jobs_on_every_shard_without_gaps_or_repeats(backend):
    store = backend.open()
    _create_at(backend, store, *TWELVE)
    pages, before = [], None
    while True:
        page, before = _ids(store.list_jobs(None, 5, before))
        pages.append(page)
        if before is None:
            break
    assert pages == [["job-11", "job-10", "job-09", "job-08", "job-07"],
                     ["job-06", "job-05", "job-04", "job-03", "job-02"], ["job-01", "job-00"]]


def test_list_jobs_says_no_more_exactly_when_the_page_ends_the_list(backend):
    store = backend.open()
    _create_at(backend, store, *TWELVE[:3])
    assert _ids(store.list_jobs(None, 3, None)) == (["job-02", "job-01", "job-00"], None)
    assert _ids(store.list_jobs(None, 2, None)) == (["job-02", "job-01"], "2027-01-15T08:00:01.000Z#job-01")
    assert _ids(store.list_jobs(None, 100, None))[1] is None


def test_list_jobs_by_state_follows_every_state_change(backend):
    store = backend.open()
    _create_at(backend, store, *TWELVE[:4])  # job-00 .. job-03 queued, a second apart
    store.claim("job-01", "orch-a", LEASE_MS)
    store.claim("job-02", "orch-a", LEASE_MS)
    store.finish("job-02", "orch-a", JobState.DONE, result={"n": 2})
    store.finish("job-03", "orch-a", JobState.FAILED, error="boom")
    assert {state: _ids(store.list_jobs(state, 20, None))[0] for state in
            ("queued", "running", "done", "failed", "canceled")} == {
        "queued": ["job-00"], "running": ["job-01"], "done": ["job-02"], "failed": ["job-03"], "canceled": []}
    backend.clock.advance(31)
    store.claim("job-01", "orch-b", LEASE_MS)  # running -> running under another owner: still running
    store.claim("job-00", "orch-b", LEASE_MS)
    assert _ids(store.list_jobs("running", 20, None)) == (["job-01", "job-00"], None)
    assert _ids(store.list_jobs("queued", 20, None)) == ([], None)
    assert _ids(store.list_jobs(None, 20, None))[0] == ["job-03", "job-02", "job-01", "job-00"]


def test_list_jobs_by_state_pages_past_jobs_in_other_states(backend):
    store = backend.open()
    _create_at(backend, store, *TWELVE)
    for job_id in TWELVE[::3]:  # job-00, -03, -06, -09 fail
        store.finish(job_id, "orch-a", JobState.FAILED, error="boom")
    assert _ids(store.list_jobs("failed", 3, None)) == (["job-09", "job-06", "job-03"],
                                                        "2027-01-15T08:00:03.000Z#job-03")
    assert _ids(store.list_jobs("failed", 3, "2027-01-15T08:00:03.000Z#job-03")) == (["job-00"], None)
    assert _ids(store.list_jobs("queued", 8, None))[1] is None
    assert len(store.list_jobs("queued", 8, None)[0]) == 8


def test_jobs_created_while_paging_do_not_shift_later_pages(backend):
    store = backend.open()
    _create_at(backend, store, *TWELVE[:6])
    first, before = _ids(store.list_jobs(None, 3, None))
    _create_at(backend, backend.open(), "new-1", "new-2")
    rest, after = _ids(store.list_jobs(None, 3, before))
    assert (first, rest, after) == (["job-05", "job-04", "job-03"], ["job-02", "job-01", "job-00"], None)
    assert _ids(store.list_jobs(None, 3, None))[0] == ["new-2", "new-1", "job-05"]


@pytest.mark.parametrize("limit", [0, -1, 101])
def test_list_jobs_refuses_a_limit_outside_1_to_100(backend, limit):
    with pytest.raises(ValueError, match=f"^limit must be from 1 to 100, got {limit}$"):
        backend.open().list_jobs(None, limit, None)


def test_list_jobs_by_state_finds_canceled_jobs_and_no_longer_lists_them_where_they_were(backend):
    store = backend.open()
    _create_at(backend, store, *TWELVE[:3])
    store.claim("job-01", "orch-a", LEASE_MS)
    store.cancel("job-01")
    store.cancel("job-02")
    assert _ids(store.list_jobs("canceled", 20, None)) == (["job-02", "job-01"], None)
    assert _ids(store.list_jobs("queued", 20, None)) == (["job-00"], None)
    assert _ids(store.list_jobs("running", 20, None)) == ([], None)
