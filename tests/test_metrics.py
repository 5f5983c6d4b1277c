"""EMF documents: built by a pure function, written as log lines, valid per the spec."""

from __future__ import annotations


import jsonschema
import pytest

import logjson
import metrics
from logcapture import capture_logs
from emfcheck import assert_emf_valid


def test_build_emf_returns_the_literal_document():
    doc = metrics.build_emf("GhostEngine", {"Service": "orchestrator", "Environment": "dev"},
                            [("JobSucceeded", "Count", 1), ("JobDurationMs", "Milliseconds", 2004)],
                            timestamp_ms=1795858367981, properties={"state": "done"})
    assert doc == {
        "_aws": {
            "Timestamp": 1795858367981,
            "CloudWatchMetrics": [{
                "Namespace": "GhostEngine",
                "Dimensions": [["Service", "Environment"]],
                "Metrics": [{"Name": "JobSucceeded", "Unit": "Count"},
                            {"Name": "JobDurationMs", "Unit": "Milliseconds"}],
            }],
        },
        "Service": "orchestrator",
        "Environment": "dev",
        "JobSucceeded": 1,
        "JobDurationMs": 2004,
        "state": "done",
    }
    assert_emf_valid(doc)


def test_build_emf_rejects_an_unknown_unit_and_too_many_metrics():
    with pytest.raises(ValueError, match="metric X: unit 'Widgets' is not an EMF unit"):
        metrics.build_emf("N", {"Service": "s"}, [("X", "Widgets", 1)], 0)
    with pytest.raises(ValueError, match="1..100 metrics, got 101"):
        metrics.build_emf("N", {"Service": "s"}, [(f"M{i}", "Count", 1) for i in range(101)], 0)


def test_job_metrics_writes_one_emf_log_line_per_finished_job():
    token = logjson.job_id.set("job-1")
    try:
        with capture_logs("orchestrator") as sink:
            metrics.JobMetrics("GhostEngine", "orchestrator", "dev").job_finished(
                {"state": "failed", "attempts": 2, "createdAt": "2026-11-28T09:00:00.000Z",
                 "updatedAt": "2026-11-28T09:00:03.250Z"},
                {"updatedAt": "2026-11-28T09:00:00.125Z"})
    finally:
        logjson.job_id.reset(token)
    [line] = sink.lines()
    assert_emf_valid(line)
    assert isinstance(line["_aws"].pop("Timestamp"), int)
    del line["timestamp"]
    assert line == {
        "level": "INFO", "service": "orchestrator", "message": "job metrics", "jobId": "job-1",
        "_aws": {"CloudWatchMetrics": [{
            "Namespace": "GhostEngine", "Dimensions": [["Service", "Environment"]],
            "Metrics": [{"Name": "JobSucceeded", "Unit": "Count"}, {"Name": "JobFailed", "Unit": "Count"},
                        {"Name": "JobCanceled", "Unit": "Count"}, {"Name": "JobDurationMs", "Unit": "Milliseconds"},
                        {"Name": "JobQueueWaitMs", "Unit": "Milliseconds"}]}]},
        "Service": "orchestrator", "Environment": "dev",
        "JobSucceeded": 0, "JobFailed": 1, "JobCanceled": 0, "JobDurationMs": 3250, "JobQueueWaitMs": 125,
        "state": "failed", "attempts": 2,
    }


def test_load_metrics_writes_running_waiting_and_busy_percent_as_one_emf_line():
    """What the worker's and the orchestrator's auto scaling track (autoscaling.tf)."""
    with capture_logs("orchestrator") as sink:
        metrics.LoadMetrics("GhostEngine", "orchestrator", "prod").sampled(running=6, waiting=3, slots=8)
    [line] = sink.lines()
    assert_emf_valid(line)
    assert isinstance(line["_aws"].pop("Timestamp"), int)
    del line["timestamp"]
    assert line == {
        "level": "INFO", "service": "orchestrator", "message": "load metrics",
        "_aws": {"CloudWatchMetrics": [{
            "Namespace": "GhostEngine", "Dimensions": [["Service", "Environment"]],
            "Metrics": [{"Name": "JobsRunning", "Unit": "Count"}, {"Name": "JobsWaiting", "Unit": "Count"},
                        {"Name": "DispatchSlotsBusyPercent", "Unit": "Percent"}]}]},
        "Service": "orchestrator", "Environment": "prod",
        "JobsRunning": 6, "JobsWaiting": 3, "DispatchSlotsBusyPercent": 75.0, "dispatchSlots": 8,
    }


@pytest.mark.parametrize("broken", [
    {"_aws": {"CloudWatchMetrics": []}},  # no Timestamp
    {"_aws": {"Timestamp": "1", "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [], "Metrics": [{"Name": "M"}]}]}, "M": 1},
    {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [["D"]], "Metrics": [{"Name": "M", "Unit": "Widgets"}]}]}, "D": "x", "M": 1},
])
def test_the_schema_rejects_invalid_documents(broken):
    with pytest.raises(jsonschema.ValidationError):
        assert_emf_valid(broken)


@pytest.mark.parametrize("broken", [
    {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [["D"]], "Metrics": [{"Name": "M"}]}]}, "M": 1},
    {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [], "Metrics": [{"Name": "M"}]}]}, "M": "1"},
])
def test_the_target_member_check_rejects_missing_dimensions_and_non_numeric_metrics(broken):
    with pytest.raises(AssertionError):
        assert_emf_valid(broken)


@pytest.mark.parametrize("level", ["WARNING", "ERROR"])
def test_metrics_are_written_whatever_the_log_level(level):
    """The JobFailed alarm treats missing data as OK: a LOG_LEVEL that dropped EMF lines
    would blind it, so metrics bypass the level while other INFO lines obey it."""
    with capture_logs("orchestrator") as sink:
        logjson.log.threshold = logjson.LEVELS[level]
        logjson.log.info("an info line")
        metrics.JobMetrics("GhostEngine", "orchestrator", "dev").job_finished(
            {"state": "failed", "attempts": 1, "createdAt": "2026-11-28T09:00:00.000Z",
             "updatedAt": "2026-11-28T09:00:01.000Z"}, None)
        metrics.LoopMetrics("GhostEngine", "orchestrator", "dev").loop_failed("reaper")
    lines = sink.lines()
    assert [(line["level"], line["message"]) for line in lines] == [
        ("INFO", "job metrics"), ("INFO", "loop metrics")]
    for line in lines:
        assert_emf_valid(line)
    assert (lines[0]["JobFailed"], lines[1]["BackgroundLoopErrors"]) == (1, 1)
