"""How long to wait before trying again: jittered exponential backoff, and the budget that
decides when a job's run stops retrying its worker.

``Backoff.delay`` is the n-th wait: ``base * 2**n`` capped at ``cap``, then scaled by a
random factor in [0.5, 1), so that jobs that failed together (a worker restart fails
every job at once) do not all come back in the same instant.

``RetryBudget`` is one run's account of its waits. Faults (the worker unreachable,
silent, broken) are retried until ``fault_seconds`` have passed since the run's first
fault; a worker that answers "busy" is not at fault and its waits (which honour its
``Retry-After``) come out of a separate ``busy_seconds`` budget, so saturation neither
fails a job early nor lets it wait forever. The clock and the random source are injected,
so tests can state exact waits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

# A busy worker is asked again no sooner than this, whatever the backoff or Retry-After: the
# busy budget is counted in waits, so a zero wait would let a job ask forever.
MIN_BUSY_WAIT = 0.1


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential backoff: the n-th wait is ``min(cap, base * 2**n) * [0.5, 1)``."""

    base: float
    cap: float

    def delay(self, n: int, rng: Callable[[], float] = random.random) -> float:
        if self.base <= 0:
            return 0.0
        return min(self.cap, self.base * 2 ** min(n, 32)) * (0.5 + 0.5 * rng())


class RetryBudget:
    """When one run may retry its worker, and after how long (see the module docstring)."""

    def __init__(self, backoff: Backoff, fault_seconds: float, busy_seconds: float,
                 clock: Callable[[], float] = time.monotonic, rng: Callable[[], float] = random.random):
        self.backoff, self.fault_seconds, self.busy_seconds = backoff, fault_seconds, busy_seconds
        self._clock, self._rng = clock, rng
        self.retries = 0  # after faults
        self.busy_waits = 0
        self.busy_spent = 0.0
        self._first_fault: float | None = None
        self._busy_before_first_fault = 0.0

    def faulty_for(self) -> float:
        """Seconds since the run's first fault, less the time spent waiting on a busy worker."""
        if self._first_fault is None:
            return 0.0
        return self._clock() - self._first_fault - (self.busy_spent - self._busy_before_first_fault)

    def after_fault(self) -> float | None:
        """The wait before retrying after a fault, or None once the fault budget is spent.
        The last wait is cut short so the last retry happens as the budget ends."""
        if self._first_fault is None:
            self._first_fault, self._busy_before_first_fault = self._clock(), self.busy_spent
        left = self.fault_seconds - self.faulty_for()
        if left <= 0:
            return None
        wait = min(self.backoff.delay(self.retries, self._rng), left)
        self.retries += 1
        return wait

    def after_busy(self, retry_after: float | None) -> float | None:
        """The wait before asking a busy worker again: its ``Retry-After`` plus up to half of
        it again at random (else the backoff), or None once the busy budget is spent."""
        left = self.busy_seconds - self.busy_spent
        if left <= 0:
            return None
        if retry_after is not None:
            wait = retry_after * (1 + 0.5 * self._rng())
        else:
            wait = self.backoff.delay(self.busy_waits, self._rng)
        wait = min(max(wait, MIN_BUSY_WAIT), left)
        self.busy_spent += wait
        self.busy_waits += 1
        return wait
