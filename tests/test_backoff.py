"""Unit tests for backoff: jittered exponential waits and one run's retry budget, on a fake
clock and a fixed random source so every wait is an exact number."""

from __future__ import annotations

import pytest

from backoff import Backoff, RetryBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_from_the_base_up_to_the_cap_at_the_top_of_the_jitter():
    b = Backoff(base=0.5, cap=10.0)
    assert [b.delay(n, rng=lambda: 1.0) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_jitter_keeps_each_wait_between_half_and_all_of_its_step():
    b = Backoff(base=0.5, cap=10.0)
    assert [b.delay(n, rng=lambda: 0.0) for n in range(3)] == [0.25, 0.5, 1.0]
    assert b.delay(3, rng=lambda: 0.5) == 3.0


def test_backoff_with_a_zero_base_never_waits_and_huge_retry_counts_do_not_overflow():
    assert Backoff(base=0.0, cap=10.0).delay(5) == 0.0
    assert Backoff(base=0.5, cap=10.0).delay(10_000, rng=lambda: 1.0) == 10.0


def budget(clock: FakeClock, fault_seconds: float = 10.0, busy_seconds: float = 5.0) -> RetryBudget:
    return RetryBudget(Backoff(1.0, 4.0), fault_seconds, busy_seconds, clock=clock, rng=lambda: 1.0)


def test_faults_are_retried_until_the_budget_counted_from_the_first_fault_is_spent():
    clock = FakeClock()
    b = budget(clock)
    waits = []
    while (wait := b.after_fault()) is not None:
        waits.append(wait)
        clock.now += wait + 0.5  # each failed call takes half a second
    assert waits == [1.0, 2.0, 4.0, 1.5]  # the last wait is cut to end at the budget (8.5 s + 1.5 s)
    assert (b.retries, b.faulty_for()) == (4, 10.5)  # the last retry failed too, half a second later


def test_a_zero_fault_budget_gives_up_at_the_first_fault():
    b = budget(FakeClock(), fault_seconds=0.0)
    assert (b.after_fault(), b.retries) == (None, 0)


def test_busy_waits_honour_retry_after_with_jitter_on_top_and_do_not_count_as_faults():
    clock = FakeClock()
    b = RetryBudget(Backoff(1.0, 4.0), 10.0, 5.0, clock=clock, rng=lambda: 0.5)
    assert b.after_fault() == 0.75
    clock.now += 3.0
    assert b.after_busy(retry_after=2.0) == 2.5  # Retry-After 2 s plus a quarter (rng 0.5 -> +25%)
    clock.now += 2.5
    assert b.faulty_for() == 3.0  # 5.5 s since the first fault, less the 2.5 s waiting on a busy worker


def test_busy_waits_end_when_their_own_budget_is_spent():
    b = budget(FakeClock(), busy_seconds=5.0)
    assert [b.after_busy(2.0), b.after_busy(2.0), b.after_busy(2.0), b.after_busy(2.0)] == [3.0, 2.0, None, None]
    assert (b.busy_waits, b.busy_spent) == (2, 5.0)


@pytest.mark.parametrize(("base", "expected"), [(1.0, [1.0, 2.0, 4.0]), (0.0, [0.1, 0.1, 0.1])])
def test_busy_without_retry_after_backs_off_but_never_asks_again_at_once(base, expected):
    b = RetryBudget(Backoff(base, 4.0), 10.0, 60.0, clock=FakeClock(), rng=lambda: 1.0)
    assert [b.after_busy(None) for _ in range(3)] == expected
