"""JobWatch: waiting for a job to change wakes on this process's writes, reads the shared
store at most once per poll interval, bounds waiting requests, and forgets finished waits."""

from __future__ import annotations

import threading
import time

import pytest

import jobapi
from store import JobState, MemoryStore
from watch import JobWatch, ObservedStore, TooManyWaiting

JOB_INPUT = {"prompt": "p", "seed": 1, "style": None}


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, job_id):
        self.gets += 1
        return super().get(job_id)


def watched(poll_seconds: float | None = None, max_waiting: int = 4):
    inner = CountingStore()
    watch = JobWatch(inner, poll_seconds, max_waiting)
    return inner, watch, ObservedStore(inner, watch)


def later(seconds: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()), daemon=True)
    thread.start()
    return thread


def test_a_waiter_wakes_on_a_write_made_here_with_one_read_per_change():
    inner, watch, store = watched()
    job = store.create("j", JOB_INPUT, "o", 30_000)
    inner.gets = 0
    later(0.2, lambda: store.claim("j", "o", 30_000))
    started = time.monotonic()
    seen = watch.wait("j", job["updatedAt"], 30)
    assert seen["state"] == "running"
    assert time.monotonic() - started < 10  # woken by the claim, not by the 30 s bound
    assert inner.gets == 2  # the first read, then one after the wake-up


def test_without_since_a_wait_answers_only_when_the_job_ends():
    _, watch, store = watched()
    store.create("j", JOB_INPUT, "o", 30_000)
    store.claim("j", "o", 30_000)
    later(0.1, lambda: store.heartbeat("j", "o", 0.5, 30_000))
    later(0.3, lambda: store.finish("j", "o", JobState.DONE, result={}))
    assert watch.wait("j", None, 30)["state"] == "done"


def test_a_wait_on_an_unchanged_job_returns_it_as_it_is_after_the_time_and_none_for_no_job():
    _, watch, store = watched()
    job = store.create("j", JOB_INPUT, "o", 30_000)
    assert watch.wait("j", job["updatedAt"], 0.2) == job
    assert watch.wait("missing", None, 5) is None


def test_a_shared_store_is_read_once_per_poll_interval_while_nobody_writes_here():
    inner, watch, store = watched(poll_seconds=0.1)
    job = store.create("j", JOB_INPUT, "o", 30_000)
    inner.gets = 0
    watch.wait("j", job["updatedAt"], 0.55)
    assert 5 <= inner.gets <= 7  # 1 + one per 0.1 s, never a busy loop
    later(0.2, lambda: inner.claim("j", "o", 30_000))  # another replica's write: no wake-up here
    assert watch.wait("j", job["updatedAt"], 30)["state"] == "running"


def test_waiting_requests_are_bounded_and_the_slots_come_back():
    _, watch, _ = watched(max_waiting=2)
    with watch.admit(), watch.admit(), pytest.raises(TooManyWaiting, match="^2 requests are waiting already$"), \
            watch.admit():
        pass
    with watch.admit(), watch.admit():
        pass


def test_a_finished_wait_leaves_nothing_behind():
    _, watch, store = watched()
    job = store.create("j", JOB_INPUT, "o", 30_000)
    threads = [later(0, lambda: watch.wait("j", job["updatedAt"], 0.3)) for _ in range(3)]
    for thread in threads:
        thread.join(10)
    assert watch._jobs == {}


@pytest.mark.parametrize(("header", "wait"), [
    (None, None), ("wait=10", 10.0), ("WAIT = 3", 3.0), ("respond-async, wait=5", 5.0),
    ("wait=999", 50.0), ("wait=0", 0.0), ("wait=-1", None), ("wait=1.5", None), ("wait=", None),
    ("return=minimal", None), ("wait=7; foo=bar", 7.0)])
def test_prefer_wait_is_read_as_rfc_7240_says_and_clamped(header, wait):
    class Handler:
        headers = {} if header is None else {"prefer": header}
    assert jobapi._preferred_wait(Handler()) == wait
