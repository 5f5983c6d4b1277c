"""Unit tests for cpugate: slots are granted in arrival order, waits give the slot up."""

from __future__ import annotations

import threading

import pytest

import cpugate
from cpugate import FifoGate
from polling import wait_until


def test_waiters_get_the_slot_in_the_order_they_asked_for_it():
    gate = FifoGate(1)
    gate.enter()  # this thread holds the only slot
    order: list[int] = []
    queued: list[int] = []

    def client(n: int) -> None:
        queued.append(n)
        gate.enter()
        order.append(n)
        gate.leave()

    threads = []
    for n in range(5):  # queue them one after another, so their order is known
        threads.append(threading.Thread(target=client, args=(n,)))
        threads[-1].start()
        wait_until(lambda n=n: len(gate._waiters) == n + 1, 5, f"waiter {n} queued")
    gate.leave()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_new_arrival_does_not_take_a_freed_slot_ahead_of_a_waiter():
    gate = FifoGate(1)
    gate.enter()
    got: list[str] = []
    waiter = threading.Thread(target=lambda: (gate.enter(), got.append("waiter"), gate.leave()))
    waiter.start()
    wait_until(lambda: len(gate._waiters) == 1, 5, "the waiter queued")
    gate.leave()
    gate.enter()  # asks again at once: it must queue behind the waiter, not barge in
    got.append("again")
    gate.leave()
    waiter.join(5)
    assert got == ["waiter", "again"]


def test_released_gives_the_slot_up_for_a_wait_and_takes_it_back():
    gate = FifoGate(1)
    gate.enter()
    with cpugate.released():
        assert gate._free == 1  # another thread could compute meanwhile
    assert gate._free == 0
    cpugate.leave_if_held()
    assert gate._free == 1
    cpugate.leave_if_held()  # nothing held: nothing to do
    assert gate._free == 1


def test_threads_that_hold_no_slot_pass_through_released():
    gate = FifoGate(1)
    with cpugate.released():
        assert gate._free == 1
    assert gate._free == 1


def test_a_gate_needs_a_slot():
    with pytest.raises(ValueError):
        FifoGate(0)


def test_no_gate_lets_every_thread_through_and_holds_nothing():
    gate = cpugate.NoGate()
    gate.enter()
    assert cpugate.holding() is False
    cpugate.leave_if_held()
    gate.leave()
