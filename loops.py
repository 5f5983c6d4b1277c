"""Background loops that cannot die silently, and the health that readiness is made of.

A ``BackgroundLoop`` runs ``step`` on its own daemon thread, once at start and then every
``interval`` seconds. Whatever ``step`` raises (a store outage, ``NoCredentialsError``, a
bug) becomes one JSON ERROR line naming the loop, one call of ``on_error`` (the
``BackgroundLoopErrors`` metric) and a wait that grows from ``interval`` up to
``max_backoff``; then the loop tries again. Before this, one exception type nobody expected
ended the reaper thread for good while ``/healthz`` stayed green.

``health()`` says whether the loop is doing its work: healthy when a pass succeeded within
``stale_after`` seconds (three intervals, at least ``MIN_STALE_SECONDS``). That tolerates a
failed pass or two (a store blip) and catches both a loop that keeps failing and one that is
stuck inside a pass. Before its first success a loop is not healthy: a replica whose
reaper cannot reach the store is not ready to take traffic.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from backoff import Backoff
from logjson import log

MIN_STALE_SECONDS = 5.0


class BackgroundLoop:
    """Runs ``step`` every ``interval`` seconds on a daemon thread and survives any exception."""

    def __init__(self, name: str, step: Callable[[], None], interval: float, *, max_backoff: float,
                 on_error: Callable[[str], None] | None = None, stale_after: float | None = None,
                 clock: Callable[[], float] = time.monotonic, rng: Callable[[], float] = random.random):
        self.name, self.interval = name, interval
        self._step, self._on_error = step, on_error or (lambda name: None)
        self._backoff = Backoff(interval, max(interval, max_backoff))
        self.stale_after = stale_after if stale_after is not None else max(3 * interval, MIN_STALE_SECONDS)
        self._clock, self._rng = clock, rng
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0  # completed, successful or not
        self.failures = 0  # in a row
        self._last_success: float | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self.run_once()
            self._stop.wait(delay)

    def run_once(self) -> float:
        """One pass; returns the wait before the next (the interval, or the backoff after a failure)."""
        try:
            self._step()
        except Exception as exc:  # the point of this class: any failure is logged and retried
            self.failures += 1
            self.passes += 1
            delay = self._backoff.delay(self.failures, self._rng)
            log.error("background loop failed", exc=exc, loop=self.name, failures=self.failures,
                      retryInSeconds=round(delay, 3))
            self._report(exc)
            return delay
        self.failures = 0
        self.passes += 1
        self._last_success = self._clock()
        return self.interval

    def _report(self, exc: Exception) -> None:
        try:
            self._on_error(self.name)
        except Exception as report_exc:  # a broken metric writer must not end the loop either
            log.error("could not record a background loop failure", exc=report_exc, loop=self.name,
                      failure=type(exc).__name__)

    def health(self) -> dict[str, Any]:
        """``{"ok", "lastSuccessSecondsAgo", "consecutiveFailures"}``; no exception text: this
        is served to the load balancer (the log line has the detail)."""
        ago = None if self._last_success is None else round(self._clock() - self._last_success, 3)
        ok = ago is not None and ago <= self.stale_after
        return {"ok": ok, "lastSuccessSecondsAgo": ago, "consecutiveFailures": self.failures}
