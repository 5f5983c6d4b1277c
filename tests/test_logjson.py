"""Unit tests for logjson: line shape, context ids, errors, levels, stdlib routing, atomic writes."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import re
import threading
import time
import warnings

import pytest

import logjson

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def parse_lines(text: str) -> list[dict]:
    """Every line as JSON, with its timestamp checked against the format and removed."""
    lines = []
    for raw in text.splitlines():
        line = json.loads(raw)
        assert TIMESTAMP_RE.match(line.pop("timestamp")), raw
        lines.append(line)
    return lines


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def logger(stream: io.StringIO) -> logjson.Logger:
    return logjson.Logger(service="svc", level="DEBUG", stream=stream)


@pytest.fixture
def configured(stream: io.StringIO):
    """``logjson.configure`` applied to a StringIO, with the global logger, the root
    logger and warnings capture restored afterwards."""
    saved = (logjson.log.service, logjson.log.threshold, logjson.log.stream)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            yield logjson.configure("svc", "INFO", stream)
            logging.captureWarnings(False)
    finally:
        logjson.log.service, logjson.log.threshold, logjson.log.stream = saved
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


# -- iso_utc ----------------------------------------------------------------------------


@pytest.mark.parametrize(("epoch", "expected"), [
    (0, "1970-01-01T00:00:00.000Z"),
    (1700000000.123456, "2023-11-14T22:13:20.123Z"),
    (1700000000.9999, "2023-11-14T22:13:20.999Z"),
    (1798449782.5, "2026-12-28T09:23:02.500Z"),
])
def test_iso_utc_formats_utc_with_truncated_milliseconds(epoch, expected):
    assert logjson.iso_utc(epoch) == expected


def test_dumps_is_compact_keeps_non_ascii_and_stringifies_unknown_types():
    class Thing:
        def __str__(self) -> str:
            return "thing!"

    assert logjson.dumps({"a": [1, 2], "b": "é", "c": Thing()}) == '{"a":[1,2],"b":"é","c":"thing!"}'


# -- line shape -------------------------------------------------------------------------


def test_line_keys_come_in_fixed_order_with_call_fields_after_ids(logger, stream):
    rid = logjson.request_id.set("req-1")
    jid = logjson.job_id.set("job-1")
    try:
        logger.info("job dispatched", zeta=1, alpha="a")
    finally:
        logjson.job_id.reset(jid)
        logjson.request_id.reset(rid)
    line = json.loads(stream.getvalue())
    assert list(line) == ["timestamp", "level", "service", "message", "requestId", "jobId", "zeta", "alpha"]
    del line["timestamp"]
    assert line == {"level": "INFO", "service": "svc", "message": "job dispatched",
                    "requestId": "req-1", "jobId": "job-1", "zeta": 1, "alpha": "a"}


def test_none_values_are_dropped_including_unset_ids(logger, stream):
    logger.warning("careful", reason=None, count=0, flag=False, text="")
    assert parse_lines(stream.getvalue()) == [
        {"level": "WARNING", "service": "svc", "message": "careful", "count": 0, "flag": False, "text": ""},
    ]


def test_one_line_per_call_ending_in_newline(logger, stream):
    logger.info("one")
    logger.debug("two", detail="multi\nline")
    text = stream.getvalue()
    assert text.endswith("\n")
    assert parse_lines(text) == [
        {"level": "INFO", "service": "svc", "message": "one"},
        {"level": "DEBUG", "service": "svc", "message": "two", "detail": "multi\nline"},
    ]


def test_ids_come_from_the_context_of_the_calling_code(logger, stream):
    def in_job() -> None:
        logjson.request_id.set("req-ctx")
        logjson.job_id.set("job-ctx")
        logger.info("inside")

    contextvars.copy_context().run(in_job)
    logger.info("outside")
    assert parse_lines(stream.getvalue()) == [
        {"level": "INFO", "service": "svc", "message": "inside", "requestId": "req-ctx", "jobId": "job-ctx"},
        {"level": "INFO", "service": "svc", "message": "outside"},
    ]


def test_explicit_job_id_field_overrides_the_context_value_in_place(logger, stream):
    token = logjson.job_id.set("job-ctx")
    try:
        logger.info("job handed back", jobId="job-explicit")
    finally:
        logjson.job_id.reset(token)
    line = json.loads(stream.getvalue())
    assert list(line) == ["timestamp", "level", "service", "message", "jobId"]
    assert line["jobId"] == "job-explicit"


# -- errors -----------------------------------------------------------------------------


def test_error_object_of_an_unraised_exception_has_type_message_and_one_line_stack(logger, stream):
    logger.error("job failed", exc=ValueError("seed is odd"), attempt=2)
    line = json.loads(stream.getvalue())
    assert list(line)[-1] == "error"
    del line["timestamp"]
    assert line == {"level": "ERROR", "service": "svc", "message": "job failed", "attempt": 2,
                    "error": {"type": "ValueError", "message": "seed is odd", "stack": "ValueError: seed is odd"}}


def _explode() -> None:
    raise KeyError("missing-key")


def test_error_stack_of_a_raised_exception_is_the_full_traceback(logger, stream):
    try:
        _explode()
    except KeyError as exc:
        logger.error("unhandled error", exc=exc)
    error = json.loads(stream.getvalue())["error"]
    assert error["type"] == "KeyError"
    assert error["message"] == "'missing-key'"
    stack = error["stack"].splitlines()
    assert stack[0] == "Traceback (most recent call last):"
    assert stack[-1] == "KeyError: 'missing-key'"
    assert any("in _explode" in s for s in stack)


def test_error_fields_stack_has_no_trailing_newline():
    assert logjson.error_fields(RuntimeError("x")) == {"type": "RuntimeError", "message": "x", "stack": "RuntimeError: x"}


# -- levels -----------------------------------------------------------------------------


@pytest.mark.parametrize(("threshold", "expected_levels"), [
    ("DEBUG", ["DEBUG", "INFO", "WARNING", "ERROR"]),
    ("INFO", ["INFO", "WARNING", "ERROR"]),
    ("WARNING", ["WARNING", "ERROR"]),
    ("ERROR", ["ERROR"]),
])
def test_level_threshold_drops_lower_levels(stream, threshold, expected_levels):
    logger = logjson.Logger(service="svc", level=threshold, stream=stream)
    logger.debug("d")
    logger.info("i")
    logger.warning("w")
    logger.error("e")
    assert [line["level"] for line in parse_lines(stream.getvalue())] == expected_levels


def test_write_sends_any_document_verbatim_regardless_of_level(stream):
    logger = logjson.Logger(service="svc", level="ERROR", stream=stream)
    logger.write({"_aws": {"Timestamp": 1}, "JobSucceeded": 1})
    assert stream.getvalue() == '{"_aws":{"Timestamp":1},"JobSucceeded":1}\n'


# -- stdlib logging and warnings --------------------------------------------------------


def test_configure_routes_stdlib_logging_as_json_lines(configured, stream):
    logging.getLogger("botocore.retry").warning("retrying %s in %d s", "GetItem", 2)
    logging.getLogger("lib").info("chatter below WARNING is not routed")
    logging.getLogger("lib").critical("disk on fire")
    assert parse_lines(stream.getvalue()) == [
        {"level": "WARNING", "service": "svc", "message": "retrying GetItem in 2 s", "logger": "botocore.retry"},
        {"level": "ERROR", "service": "svc", "message": "disk on fire", "logger": "lib"},
    ]


def test_configure_routes_stdlib_exception_info_into_the_error_object(configured, stream):
    try:
        raise OSError("socket closed")
    except OSError:
        logging.getLogger("urllib3").exception("request failed")
    [line] = parse_lines(stream.getvalue())
    stack = line["error"].pop("stack")
    assert stack.splitlines()[-1] == "OSError: socket closed"
    assert line == {"level": "ERROR", "service": "svc", "message": "request failed", "logger": "urllib3",
                    "error": {"type": "OSError", "message": "socket closed"}}


def test_configure_routes_warnings_as_json_lines(configured, stream):
    warnings.warn_explicit("old API", DeprecationWarning, "legacy.py", 7)
    assert parse_lines(stream.getvalue()) == [
        {"level": "WARNING", "service": "svc", "message": "legacy.py:7: DeprecationWarning: old API\n",
         "logger": "py.warnings"},
    ]


def test_configure_sets_service_and_level_of_the_module_logger(configured, stream):
    logjson.log.info("info passes")
    logjson.log.debug("debug is below INFO")
    assert parse_lines(stream.getvalue()) == [{"level": "INFO", "service": "svc", "message": "info passes"}]


# -- concurrency ------------------------------------------------------------------------


class SlowStream:
    """A stream that writes each line in two halves and yields the GIL in between, so
    unsynchronised writers would interleave their lines."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        half = len(text) // 2
        self.parts.append(text[:half])
        time.sleep(0)
        self.parts.append(text[half:])

    def flush(self) -> None:
        time.sleep(0)


def test_write_keeps_lines_whole_under_concurrent_threads():
    threads_n, lines_m = 8, 200
    sink = SlowStream()
    logger = logjson.Logger(service="svc", level="INFO", stream=sink)
    start = threading.Barrier(threads_n)

    def writer(n: int) -> None:
        start.wait()
        for m in range(lines_m):
            logger.info("tick", thread=n, n=m, pad="x" * 50)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    lines = parse_lines("".join(sink.parts))
    assert len(lines) == threads_n * lines_m
    assert sorted((line["thread"], line["n"]) for line in lines) == [
        (n, m) for n in range(threads_n) for m in range(lines_m)]


# -- batching ---------------------------------------------------------------------------


def test_a_batching_logger_writes_nothing_until_its_flush_then_all_lines_in_order_in_one_write():
    writes: list[str] = []
    sink = type("Sink", (), {"write": lambda self, text: writes.append(text), "flush": lambda self: None})()
    logger = logjson.Logger(service="svc", stream=sink)
    logger.start_batching(3600)  # the background writer will not run during the test
    for n in range(3):
        logger.info("line", n=n)
    assert writes == []
    logger.flush()
    assert len(writes) == 1
    assert [json.loads(x)["n"] for x in writes[0].splitlines()] == [0, 1, 2]
    logger.flush()
    assert len(writes) == 1  # nothing pending: no empty write


def test_a_batching_logger_writes_itself_once_max_pending_lines_wait():
    """Back-pressure: a burst cannot grow the buffer without bound."""
    writes: list[str] = []
    sink = type("Sink", (), {"write": lambda self, text: writes.append(text), "flush": lambda self: None})()
    logger = logjson.Logger(service="svc", stream=sink)
    logger.MAX_PENDING = 5
    logger.start_batching(3600)
    for n in range(4):
        logger.info("line", n=n)
    assert writes == []
    logger.info("line", n=4)
    assert [len(w.splitlines()) for w in writes] == [5]


def test_a_logger_that_is_not_batching_writes_every_line_at_once(logger, stream):
    logger.info("one")
    assert stream.getvalue().count("\n") == 1
