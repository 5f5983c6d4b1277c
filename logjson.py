"""JSON-lines logging for both services: one object per line on stdout.

Keys come in a fixed order (``timestamp level service message requestId jobId``, then the
call's own fields, then ``error``); ``None`` values are dropped. ``requestId`` and ``jobId``
come from context variables set at the request/job boundary, so code deep in a call chain
logs them without passing them around. Library logging (``logging``) and ``warnings`` are
routed through the same writer, so nothing reaches stdout or stderr as plain text.

The services write in batches (``Logger.start_batching``): a request thread only appends
its line to a list, and one background thread writes what has gathered every
``LOG_FLUSH_MS`` (50 ms) in one call. A clean stop (SIGTERM) writes everything first; a
SIGKILL loses at most the lines of the last interval. Written one line at a time, the
access log alone took a third of a busy orchestrator's time.
"""

from __future__ import annotations

import atexit
import collections
import contextvars
import datetime
import json
import logging
import sys
import threading
import time
import traceback
from typing import Any, TextIO

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


_second_cache: tuple[int, str] = (-1, "")


def iso_utc(epoch_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-28T09:23:02.123Z``. The formatted
    second is cached: every log line and job write stamps one."""
    global _second_cache
    whole = int(epoch_seconds // 1)
    micros = round((epoch_seconds - whole) * 1_000_000)  # as datetime rounds it
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    cached_second, prefix = _second_cache  # one tuple: read and replaced atomically
    if cached_second != whole:
        prefix = datetime.datetime.fromtimestamp(whole, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _second_cache = (whole, prefix)
    return f"{prefix}{micros // 1000:03d}Z"


def error_fields(exc: BaseException) -> dict[str, str]:
    """The ``error`` object of a log line: type, message and stack."""
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "stack": "".join(traceback.format_exception(exc)).rstrip(),
    }


# Built once: json.dumps with options builds a new encoder on every call.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str).encode


_quote = json.encoder.encode_basestring_ascii  # a str as a JSON string, escaped to ASCII
_REQUEST_ID, _JOB_ID = '"requestId":', '"jobId":'


def dumps(obj: Any) -> str:
    """Compact JSON, the encoding every line and response uses. Always encodable as UTF-8:
    text that is not (an unpaired surrogate) comes out as a JSON escape instead."""
    text = _ENCODE(obj)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _ENCODE_ASCII(obj)
    return text


class Logger:
    """Writes log lines (and any other JSON documents, such as EMF) one per line: at once,
    or in batches once ``start_batching`` has been called."""

    MAX_PENDING = 10_000  # past this many unwritten lines, the writer of the next one flushes

    def __init__(self, service: str = "unset", level: str = "INFO", stream: TextIO | None = None):
        self.service = service
        self.threshold = LEVELS[level]
        self.stream = stream
        # deque.append and popleft are atomic: request threads append without a lock, so
        # none waits behind another that the interpreter preempted while holding one.
        self._pending: collections.deque[str] = collections.deque()
        self._write_lock = threading.Lock()  # one writer to the stream at a time, lines in order
        self._batching = False

    def write(self, obj: dict[str, Any]) -> None:
        """Write one JSON document as a line, whole and in order with respect to other threads."""
        self._emit(dumps(obj))

    def _emit(self, text: str) -> None:
        self._pending.append(text + "\n")
        if not self._batching or len(self._pending) >= self.MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        """Write every pending line now, in one call."""
        with self._write_lock:
            pending = self._pending
            lines = [pending.popleft() for _ in range(len(pending))]
            if lines:
                stream = self.stream or sys.stdout
                stream.write("".join(lines))
                stream.flush()

    def start_batching(self, interval_seconds: float) -> None:
        """From now on, write pending lines every ``interval_seconds`` from a background
        thread (and at interpreter exit), instead of one write per line."""
        if interval_seconds <= 0 or self._batching:
            return
        self._batching = True
        atexit.register(self.flush)
        threading.Thread(target=self._flush_every, args=(interval_seconds,), name="log-writer", daemon=True).start()

    def _flush_every(self, interval_seconds: float) -> None:
        while True:
            time.sleep(interval_seconds)
            try:
                self.flush()
            except Exception as exc:  # stdout is gone: those lines are lost, later ones may not be
                print(f"logjson: could not write log lines: {exc!r}", file=sys.stderr)

    def log(self, level: str, message: str, exc: BaseException | None = None, **fields: Any) -> None:
        if LEVELS[level] < self.threshold:
            return
        self._write_line(level, message, exc, fields)

    def metric(self, message: str, **fields: Any) -> None:
        """Write an EMF document as an INFO line whatever ``LOG_LEVEL`` says: the alarms
        read metrics from these lines, and with ``treat_missing_data = notBreaching`` a
        level that dropped them would keep every alarm OK forever."""
        self._write_line("INFO", message, None, fields)

    def _write_line(self, level: str, message: str, exc: BaseException | None, fields: dict[str, Any]) -> None:
        line: dict[str, Any] = {
            "timestamp": iso_utc(time.time()),
            "level": level,
            "service": self.service,
            "message": message,
            "requestId": request_id.get(),
            "jobId": job_id.get(),
        }
        if fields:
            line.update(fields)
        if exc is not None:
            line["error"] = error_fields(exc)
        if None in line.values():
            line = {k: v for k, v in line.items() if v is not None}
        self.write(line)

    def access(self, method: str, path: str, status: int, duration_ms: float) -> None:
        """The ``request`` line written for every request: exactly the line
        ``info("request", method=..., path=..., status=..., durationMs=...)`` writes, formatted
        directly because it is on every request (a third of the cost of building and encoding
        a dict). Strings are JSON-escaped to ASCII, so the line is valid UTF-8 whatever they hold."""
        if self.threshold > LEVELS["INFO"]:
            return
        rid, jid = request_id.get(), job_id.get()
        self._emit(f'{{"timestamp":"{iso_utc(time.time())}","level":"INFO","service":{_quote(self.service)},'
                   f'"message":"request"{"" if rid is None else f",{_REQUEST_ID}{_quote(rid)}"}'
                   f'{"" if jid is None else f",{_JOB_ID}{_quote(jid)}"},"method":{_quote(method)},'
                   f'"path":{_quote(path)},"status":{int(status)},"durationMs":{float(duration_ms)!r}}}')

    def debug(self, message: str, **fields: Any) -> None:
        self.log("DEBUG", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.log("INFO", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.log("WARNING", message, **fields)

    def error(self, message: str, exc: BaseException | None = None, **fields: Any) -> None:
        self.log("ERROR", message, exc=exc, **fields)


log = Logger()


class _Bridge(logging.Handler):
    """Sends records of the standard ``logging`` module (boto3, warnings) to ``log``."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname if record.levelname in LEVELS else "ERROR"
        exc = record.exc_info[1] if record.exc_info else None
        log.log(level, record.getMessage(), exc=exc, logger=record.name)


def configure(service: str, level: str = "INFO", stream: TextIO | None = None,
              flush_ms: int = 0) -> Logger:
    """Set up ``log`` for ``service`` and route stdlib logging and warnings through it;
    with ``flush_ms`` > 0, write in batches that often (``Logger.start_batching``)."""
    log.service = service
    log.threshold = LEVELS[level]
    log.stream = stream
    root = logging.getLogger()
    root.handlers[:] = [_Bridge()]
    root.setLevel(max(logging.WARNING, LEVELS[level]))
    logging.captureWarnings(True)
    log.start_batching(flush_ms / 1000)
    return log
