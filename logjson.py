"""JSON-lines logging for both services: one object per line on stdout.

Keys come in a fixed order (``timestamp level service message requestId jobId``, then the
call's own fields, then ``error``); ``None`` values are dropped. ``requestId`` and ``jobId``
come from context variables set at the request/job boundary, so code deep in a call chain
logs them without passing them around. Library logging (``logging``) and ``warnings`` are
routed through the same writer, so nothing reaches stdout or stderr as plain text.
"""

from __future__ import annotations

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


def iso_utc(epoch_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-28T09:23:02.123Z``."""
    dt = datetime.datetime.fromtimestamp(epoch_seconds, datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def error_fields(exc: BaseException) -> dict[str, str]:
    """The ``error`` object of a log line: type, message and stack."""
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "stack": "".join(traceback.format_exception(exc)).rstrip(),
    }


def dumps(obj: Any) -> str:
    """Compact JSON, the encoding every line and response uses. Always encodable as UTF-8:
    text that is not (an unpaired surrogate) comes out as a JSON escape instead."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True, default=str)
    return text


class Logger:
    """Writes log lines (and any other JSON documents, such as EMF) one per line."""

    def __init__(self, service: str = "unset", level: str = "INFO", stream: TextIO | None = None):
        self.service = service
        self.threshold = LEVELS[level]
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, obj: dict[str, Any]) -> None:
        """Write one JSON document as a line, atomically with respect to other threads."""
        line = dumps(obj) + "\n"
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write(line)
            stream.flush()

    def log(self, level: str, message: str, exc: BaseException | None = None, **fields: Any) -> None:
        if LEVELS[level] < self.threshold:
            return
        line: dict[str, Any] = {
            "timestamp": iso_utc(time.time()),
            "level": level,
            "service": self.service,
            "message": message,
            "requestId": request_id.get(),
            "jobId": job_id.get(),
        }
        line.update(fields)
        if exc is not None:
            line["error"] = error_fields(exc)
        self.write({k: v for k, v in line.items() if v is not None})

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


def configure(service: str, level: str = "INFO", stream: TextIO | None = None) -> Logger:
    """Set up ``log`` for ``service`` and route stdlib logging and warnings through it."""
    log.service = service
    log.threshold = LEVELS[level]
    log.stream = stream
    root = logging.getLogger()
    root.handlers[:] = [_Bridge()]
    root.setLevel(max(logging.WARNING, LEVELS[level]))
    logging.captureWarnings(True)
    return log
