"""The one way tests wait: poll a probe until it gives a truthy value, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.01, ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``probe`` every ``interval`` seconds until it returns something truthy, and
    return that. Exceptions of the ``ignoring`` types count as "not yet"; after ``timeout``
    seconds an AssertionError names ``what`` and the last value or exception seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except ignoring as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s; last seen: {last!r}")
        time.sleep(interval)
