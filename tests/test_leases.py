"""Unit tests for leases: the start-up rules, and the keeper's renewals on an injected clock
(the boundary at a third of the lease, failures, lost leases, aborted worker calls)."""

from __future__ import annotations

import pytest

from leases import LeaseKeeper, RenewalsFailed, lease_problems
from logcapture import wait_for_line
from store import LeaseLost, MemoryStore, StoreUnavailable

PAYLOAD = {"prompt": "a spooky hallway", "seed": 123, "style": "doom"}
OWNER = "orch-a"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedStore(MemoryStore):
    """A MemoryStore whose lease writes are recorded in ``writes`` with the fake clock's
    time: ``(time, job, progress)`` for a heartbeat, ``(time, job, "renew")`` for a renewal;
    both can be made to fail with the exceptions in ``failures``."""

    def __init__(self, clock: FakeClock):
        super().__init__()
        self.fake_clock = clock
        self.writes: list[tuple[float, str, float | str]] = []
        self.failures: list[Exception] = []

    def heartbeat(self, job_id, owner, progress, lease_ms):
        self._written(job_id, progress)
        super().heartbeat(job_id, owner, progress, lease_ms)

    def renew(self, job_id, owner, lease_ms):
        self._written(job_id, "renew")
        super().renew(job_id, owner, lease_ms)

    def _written(self, job_id, what):
        if self.failures:
            raise self.failures.pop(0)
        self.writes.append((self.fake_clock.now, job_id, what))


class Call:
    def __init__(self) -> None:
        self.aborted = 0

    def abort(self) -> None:
        self.aborted += 1


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(clock):
    s = ScriptedStore(clock)
    s.create("job-1", PAYLOAD, OWNER, 3000)
    s.claim("job-1", OWNER, 3000)
    return s


# -- the start-up rules -----------------------------------------------------------------


def test_the_default_lease_settings_have_no_problem():
    assert lease_problems(30.0, 10.0, 1000) == []


@pytest.mark.parametrize(("settings", "problem"), [
    ((2.9, 1.0, 0), "JOB_LEASE_SECONDS must be at least 3, got 2.9: renewals fall due every third of the lease "
                    "and need the rest to reach the store"),
    ((30.0, 30.0, 0), "WORKER_TIMEOUT_SECONDS (30) must be less than JOB_LEASE_SECONDS (30): a silent worker must "
                      "be noticed within one lease"),
    ((30.0, 10.0, 10_000), "PROGRESS_WRITE_INTERVAL_MS (10000) must be less than a third of JOB_LEASE_SECONDS "
                           "(30 s): progress writes are lease renewals"),
], ids=["lease-too-short", "worker-timeout-not-below-lease", "progress-interval-not-below-a-third"])
def test_each_rule_names_its_variables_at_its_boundary(settings, problem):
    assert lease_problems(*settings) == [problem]


def test_just_inside_each_boundary_is_accepted():
    assert lease_problems(3.0, 2.999, 999) == []


def test_every_broken_rule_is_reported_at_once():
    assert [p.split(" ")[0] for p in lease_problems(2.0, 5.0, 1000)] == [
        "JOB_LEASE_SECONDS", "WORKER_TIMEOUT_SECONDS", "PROGRESS_WRITE_INTERVAL_MS"]


# -- renewals ---------------------------------------------------------------------------


def test_the_keeper_ticks_every_tenth_of_the_lease_at_most_every_second():
    assert [LeaseKeeper(MemoryStore(), OWNER, lease).tick for lease in (3.0, 30.0)] == [0.3, 1.0]


def test_a_run_is_renewed_from_a_third_of_the_lease_not_before(store, clock):
    """The boundary: with a 3 s lease the renewal falls due at 1 s, so a keeper ticking every
    0.3 s renews by 1.3 s, well before half the lease (1.5 s) and long before it expires."""
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    run = keeper.hold("job-1", 0.25, sent_at=clock.now)
    clock.now += 0.999
    keeper.renew_due()
    assert store.writes == []
    clock.now += 0.001
    keeper.renew_due()
    assert store.writes == [(101.0, "job-1", "renew")]
    assert (run.last_write, run.expires, run.progress) == (101.0, 104.0, 0.25)


def test_a_renewal_writes_the_lease_only_and_a_heartbeat_counts_as_a_renewal(store, clock):
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    run = keeper.hold("job-1", 0.0, sent_at=clock.now)
    clock.now += 0.9
    keeper.heartbeat(run, 0.5)
    clock.now += 0.9  # 1.8 s since the claim, 0.9 s since the heartbeat: nothing due
    keeper.renew_due()
    clock.now += 0.1
    keeper.renew_due()
    assert store.writes == [(100.9, "job-1", 0.5), (101.9, "job-1", "renew")]
    assert run.progress == 0.5


def test_a_run_writing_itself_is_skipped_by_the_keeper(store, clock):
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    run = keeper.hold("job-1", 0.0, sent_at=clock.now)
    clock.now += 2.0
    with run.writing:  # its own heartbeat or finish is under way
        keeper.renew_due()
    assert store.writes == []


def test_a_failed_renewal_is_retried_and_the_run_kept_while_its_lease_lasts(store, clock):
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    run = keeper.hold("job-1", 0.0, sent_at=clock.now)
    call = Call()
    run.attach(call)
    store.failures = [StoreUnavailable("table jobs: ThrottlingException"), StoreUnavailable("still down")]
    clock.now += 1.0
    with pytest.raises(RenewalsFailed) as info:
        keeper.renew_due()
    assert str(info.value) == "1 lease renewal(s) failed (job-1): table jobs: ThrottlingException"
    clock.now += 1.75
    with pytest.raises(RenewalsFailed):
        keeper.renew_due()
    assert (run.abandoned, call.aborted) == (None, 0)  # 2.75 s: the lease still holds
    clock.now += 0.125
    keeper.renew_due()
    assert store.writes == [(102.875, "job-1", "renew")]
    assert (run.abandoned, run.expires) == (None, 105.875)


def test_a_run_whose_lease_ran_out_before_a_renewal_got_through_is_abandoned_and_its_call_aborted(store, clock, logs):
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    run = keeper.hold("job-1", 0.0, sent_at=clock.now)
    call = Call()
    run.attach(call)
    store.failures = [StoreUnavailable("down")]
    clock.now += 3.0
    with pytest.raises(RenewalsFailed):
        keeper.renew_due()
    assert (run.abandoned, run.lease_lost, call.aborted) == ("its lease expired before it could be renewed", True, 1)
    assert wait_for_line(logs, lambda x: x["message"].startswith("lease lost")) == {
        "level": "WARNING", "service": "test", "message": "lease lost; stopping the run", "jobId": "job-1",
        "reason": "its lease expired before it could be renewed"}


def test_a_renewal_answered_lease_lost_abandons_the_run_at_once(store, clock):
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    run = keeper.hold("job-1", 0.0, sent_at=clock.now)
    call = Call()
    run.attach(call)
    store.failures = [LeaseLost("job-1", OWNER)]
    clock.now += 1.0
    keeper.renew_due()  # not a failure of the keeper: it did its work
    assert (run.abandoned, run.lease_lost, call.aborted) == ("another orchestrator owns the job now", True, 1)
    clock.now += 1.0
    keeper.renew_due()
    assert store.writes == []  # an abandoned run is not renewed


def test_abandon_all_stops_every_run_and_any_held_later_without_calling_it_lease_lost(store, clock):
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    run = keeper.hold("job-1", 0.0, sent_at=clock.now)
    keeper.abandon_all("the orchestrator stopped")
    late = keeper.hold("job-2", 0.0, sent_at=clock.now)
    call = Call()
    late.attach(call)  # a call attached to an abandoned run is aborted at once
    assert (run.abandoned, run.lease_lost, late.abandoned, call.aborted) == (
        "the orchestrator stopped", False, "the orchestrator stopped", 1)
    assert run.wait(0) is True


def test_drop_ends_the_renewals(store, clock):
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    keeper.drop(keeper.hold("job-1", 0.0, sent_at=clock.now))
    clock.now += 5.0
    keeper.renew_due()
    assert (keeper.runs(), store.writes) == ([], [])


def test_a_run_whose_own_write_is_stuck_past_its_lease_is_abandoned(store, clock):
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    run = keeper.hold("job-1", 0.0, sent_at=clock.now)
    clock.now += 3.0
    with run.writing:  # a heartbeat of its own, held up by a slow store
        keeper.renew_due()
    assert (run.abandoned, run.lease_lost, store.writes) == (
        "its lease expired before it could be renewed", True, [])


def test_after_the_store_fails_one_renewal_a_pass_tries_no_more_but_still_watches_every_lease(clock):
    store = ScriptedStore(clock)
    for job_id in ("job-1", "job-2", "job-3"):
        store.create(job_id, PAYLOAD, OWNER, 3000)
        store.claim(job_id, OWNER, 3000)
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    runs = [keeper.hold("job-1", 0.0, sent_at=clock.now), keeper.hold("job-2", 0.0, sent_at=clock.now - 3.0),
            keeper.hold("job-3", 0.0, sent_at=clock.now)]
    store.failures = [StoreUnavailable("down")]
    clock.now += 1.0
    with pytest.raises(RenewalsFailed) as info:
        keeper.renew_due()
    assert str(info.value) == "3 lease renewal(s) failed (job-1, job-2, job-3): down"
    assert store.failures == []  # one write was tried
    assert [(r.abandoned is not None, r.write_failed) for r in runs] == [(False, True), (True, False), (False, False)]


def test_a_failed_write_marks_the_run_until_a_renewal_gets_through(store, clock):
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    run = keeper.hold("job-1", 0.0, sent_at=clock.now)
    store.failures = [StoreUnavailable("down")]
    with pytest.raises(StoreUnavailable):
        keeper.heartbeat(run, 0.5)
    assert run.write_failed is True
    clock.now += 1.0
    keeper.renew_due()
    assert (run.write_failed, run.progress, store.writes) == (False, 0.0, [(101.0, "job-1", "renew")])


def test_a_job_canceled_here_stops_its_run_and_aborts_the_worker_call(store, clock):
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    run = keeper.hold("job-1", 0.0, sent_at=clock.now)
    call = Call()
    run.attach(call)
    assert (keeper.cancel("job-1"), keeper.cancel("no-such-job")) == (True, False)
    assert (run.abandoned, run.canceled, run.lease_lost, call.aborted) == ("canceled by client", True, False, 1)


class SharedStore(ScriptedStore):
    """As if other replicas shared the store: a cancel may come through another process."""

    shared = True


def test_with_a_shared_store_each_pass_stops_the_runs_of_jobs_canceled_elsewhere(clock):
    store = SharedStore(clock)
    for job_id in ("job-1", "job-2"):
        store.create(job_id, PAYLOAD, OWNER, 3000)
        store.claim(job_id, OWNER, 3000)
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    runs = [keeper.hold(job_id, 0.0, sent_at=clock.now) for job_id in ("job-1", "job-2")]
    store.cancel("job-2")  # through another replica: nothing told this keeper
    keeper.keep()
    assert [(r.abandoned, r.canceled) for r in runs] == [(None, False), ("canceled by client", True)]


def test_with_a_store_of_its_own_a_pass_reads_no_states(store, clock):
    """Every cancel goes through this process then: reading states would cost for nothing."""
    keeper = LeaseKeeper(store, OWNER, 3.0, clock)
    keeper.hold("job-1", 0.0, sent_at=clock.now)
    store.states = None  # a read would fail the test
    keeper.keep()
