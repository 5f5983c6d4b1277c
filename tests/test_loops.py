"""Unit tests for loops: a background loop survives any exception with one JSON ERROR line,
a metric call and a growing wait, and its health says whether it does its work."""

from __future__ import annotations


import pytest
from botocore.exceptions import NoCredentialsError

import metrics
from logcapture import capture_logs
from emfcheck import assert_emf_valid
from logcapture import wait_for_line
from loops import BackgroundLoop
from polling import wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class Script:
    """A loop step that raises the scripted exceptions in turn, then succeeds."""

    def __init__(self, *failures: Exception):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)


def test_a_failing_pass_is_one_error_line_one_metric_call_and_a_growing_wait(logs):
    reported: list[str] = []
    loop = BackgroundLoop("reaper", Script(NoCredentialsError(), RuntimeError("bug")), 1.0, max_backoff=60.0,
                          on_error=reported.append, rng=lambda: 1.0)
    assert [loop.run_once(), loop.run_once(), loop.run_once()] == [2.0, 4.0, 1.0]
    assert reported == ["reaper", "reaper"]
    errors = [x for x in logs.lines() if x["level"] == "ERROR"]
    for line in errors:
        assert line.pop("timestamp") and line["error"].pop("stack").startswith("Traceback")
    assert errors == [
        {"level": "ERROR", "service": "test", "message": "background loop failed", "loop": "reaper", "failures": 1,
         "retryInSeconds": 2.0, "error": {"type": "NoCredentialsError", "message": "Unable to locate credentials"}},
        {"level": "ERROR", "service": "test", "message": "background loop failed", "loop": "reaper", "failures": 2,
         "retryInSeconds": 4.0, "error": {"type": "RuntimeError", "message": "bug"}},
    ]


def test_the_wait_after_failures_stops_growing_at_max_backoff():
    loop = BackgroundLoop("reaper", Script(*[OSError()] * 8), 1.0, max_backoff=5.0, rng=lambda: 1.0)
    assert [loop.run_once() for _ in range(4)] == [2.0, 4.0, 5.0, 5.0]


def test_a_loop_thread_keeps_running_after_its_step_raises(logs):
    step = Script(NoCredentialsError(), KeyError("x"), ValueError("y"))
    loop = BackgroundLoop("reaper", step, 0.01, max_backoff=0.01)
    loop.start()
    try:
        wait_until(lambda: step.calls >= 6, what="six passes")
    finally:
        loop.stop()
    assert loop.health()["consecutiveFailures"] == 0
    assert [x["error"]["type"] for x in logs.lines() if x["level"] == "ERROR"] == [
        "NoCredentialsError", "KeyError", "ValueError"]


def test_a_broken_metric_writer_is_logged_and_the_loop_goes_on(logs):
    def broken(_name: str) -> None:
        raise OSError("stdout closed")

    loop = BackgroundLoop("lease-keeper", Script(RuntimeError("renewal failed")), 1.0, max_backoff=1.0,
                          on_error=broken, rng=lambda: 1.0)
    assert (loop.run_once(), loop.run_once()) == (1.0, 1.0)
    line = wait_for_line(logs, lambda x: x["message"] == "could not record a background loop failure")
    assert (line["loop"], line["failure"], line["error"]["message"]) == ("lease-keeper", "RuntimeError", "stdout closed")


def test_health_is_false_before_the_first_success_and_after_stale_after_without_one():
    clock = FakeClock()
    loop = BackgroundLoop("reaper", Script(OSError("down")), 2.0, max_backoff=10.0, clock=clock)
    assert loop.stale_after == 6.0  # three intervals
    loop.run_once()
    assert loop.health() == {"ok": False, "lastSuccessSecondsAgo": None, "consecutiveFailures": 1}
    loop.run_once()
    assert loop.health() == {"ok": True, "lastSuccessSecondsAgo": 0.0, "consecutiveFailures": 0}
    clock.now += 6.0
    assert loop.health()["ok"] is True
    clock.now += 0.001
    assert loop.health() == {"ok": False, "lastSuccessSecondsAgo": 6.001, "consecutiveFailures": 0}


@pytest.mark.parametrize(("interval", "stale_after"), [(0.2, 5.0), (5.0, 15.0)])
def test_stale_after_is_three_intervals_but_at_least_five_seconds(interval, stale_after):
    assert BackgroundLoop("l", Script(), interval, max_backoff=1.0).stale_after == stale_after


def test_loop_metrics_writes_one_background_loop_errors_emf_line():
    with capture_logs("orchestrator") as sink:
        metrics.LoopMetrics("GhostEngine", "orchestrator", "dev").loop_failed("reaper")
    [line] = sink.lines()
    assert_emf_valid(line)
    assert isinstance(line["_aws"].pop("Timestamp"), int)
    del line["timestamp"]
    assert line == {
        "level": "INFO", "service": "orchestrator", "message": "loop metrics",
        "_aws": {"CloudWatchMetrics": [{"Namespace": "GhostEngine", "Dimensions": [["Service", "Environment"]],
                                        "Metrics": [{"Name": "BackgroundLoopErrors", "Unit": "Count"}]}]},
        "Service": "orchestrator", "Environment": "dev", "BackgroundLoopErrors": 1, "loop": "reaper",
    }
