"""Capturing the services' JSON log lines in-process, for unit tests."""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
from collections.abc import Callable, Iterator

import logjson
from polling import wait_until

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class LineSink:
    """A thread-safe text stream that hands back what was written as parsed JSON lines."""

    def __init__(self) -> None:
        self._buf, self._lock = io.StringIO(), threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self._buf.write(text)

    def flush(self) -> None:
        pass

    def lines(self) -> list[dict]:
        with self._lock:
            return [json.loads(line) for line in self._buf.getvalue().splitlines()]


@contextlib.contextmanager
def capture_logs(service: str) -> Iterator[LineSink]:
    """Point ``logjson.log`` at a fresh sink as ``service`` (INFO), restoring it after."""
    saved = (logjson.log.service, logjson.log.threshold, logjson.log.stream)
    sink = LineSink()
    logjson.log.service, logjson.log.threshold, logjson.log.stream = service, logjson.LEVELS["INFO"], sink
    try:
        yield sink
    finally:
        logjson.log.service, logjson.log.threshold, logjson.log.stream = saved


def wait_for_line(sink: LineSink, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
    """The first line matching ``predicate``, its timestamp checked and removed."""
    line = wait_until(lambda: next(filter(predicate, sink.lines()), None), timeout, "a matching log line")
    assert TIMESTAMP_RE.match(line.pop("timestamp"))
    return line
