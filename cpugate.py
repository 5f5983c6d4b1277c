"""A first-come, first-served gate on request processing: at most ``slots`` request threads
run Python at once; the others wait their turn in arrival order.

Why: a ``ThreadingHTTPServer`` runs one thread per connection, and with hundreds of them
the interpreter lock goes to whichever thread the OS wakes, not the one that waited
longest; some requests wait seconds (p99 of 3 s at 256 connections, measured). Queued in
order, a request waits only for the ones before it (p99 34 ms at 256 connections, and
throughput no lower): README "Performance".

A request thread holds a slot from routing to its access line, response included: the
response goes out with a non-blocking send, and only a client too slow to take it at once
makes the thread give its slot up before waiting (``httpkit``), so a slow reader cannot
stall the others. For the length of any other wait, network calls (``dynamostore``) and
long waits in handlers are wrapped in ``released()``, which takes a slot again afterwards,
at the back of the queue; a stream gives its slot up for good. Threads that never entered
(dispatch threads, background loops) pass through untouched.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator

_held = threading.local()  # .gate: the gate whose slot this thread holds, if any


class FifoGate:
    """``slots`` slots, granted in the order they were asked for (no barging)."""

    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError(f"a gate needs at least one slot, got {slots}")
        self._lock = threading.Lock()
        self._free = slots
        self._waiters: collections.deque[threading.Lock] = collections.deque()

    def enter(self) -> None:
        """Take a slot for this thread, waiting behind everyone who asked before."""
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                _held.gate = self
                return
            baton = threading.Lock()
            baton.acquire()
            self._waiters.append(baton)
        baton.acquire()  # released by the thread that hands its slot over
        _held.gate = self

    def leave(self) -> None:
        """Give this thread's slot to the longest waiter (or back to the pool)."""
        _held.gate = None
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1


class NoGate:
    """``CPU_SLOTS=0``: every request thread runs when the OS lets it (the stdlib's way)."""

    def enter(self) -> None:
        """Nothing to wait for."""

    def leave(self) -> None:
        """Nothing to give back."""


def holding() -> bool:
    """Whether this thread holds a slot."""
    return getattr(_held, "gate", None) is not None


def leave_if_held() -> None:
    """Give up the slot this thread holds, if any (before a write that may block, or at
    the end of a request)."""
    gate = getattr(_held, "gate", None)
    if gate is not None:
        gate.leave()


@contextlib.contextmanager
def released() -> Iterator[None]:
    """Wait (on the network, a condition, a sleep) without a slot; take one again after."""
    gate = getattr(_held, "gate", None)
    if gate is None:
        yield
        return
    gate.leave()
    try:
        yield
    finally:
        gate.enter()
