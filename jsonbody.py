"""Decoding a request body into a JSON object, refusing what JSON allows but our data must
not hold: text that is not valid Unicode, duplicate keys, NaN and Infinity.

Why each: a string with an unpaired surrogate escape (``"\\ud800"``) is valid JSON but cannot
be encoded as UTF-8, so a job holding one could be neither stored, logged nor answered;
with duplicate keys, two parsers may each take a different value. Every refusal is an
``HTTPError`` 400 naming the field.
"""

from __future__ import annotations

import json
from typing import Any


class BodyError(ValueError):
    """The body is not a JSON object we accept; the message says why, naming the field."""


def decode(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``BodyError``."""
    try:
        body = _DECODER.decode(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not valid UTF-8 (byte {exc.start})") from None
    except _DuplicateKey as exc:
        raise BodyError(f"body has the key {exc.key!a} more than once") from None
    except (ValueError, RecursionError) as exc:
        raise BodyError(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BodyError(f"body must be a JSON object, got {type(body).__name__}")
    if b"\\u" in raw:  # only a \\uXXXX escape can produce a surrogate from valid UTF-8
        _check_text(body, "")
    return body


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


# One decoder for every body: json.loads with hooks builds a new one per call (2 us of a
# POST's ~100). Threads may share it: its only state is the C scanner's key-interning memo,
# emptied after each call, and a memo emptied under another call changes no result.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def _check_text(value: Any, path: str) -> None:
    """``BodyError`` naming the first string (key or value) that is not encodable as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BodyError(f"{path or 'body'} is not valid Unicode text (it holds an unpaired surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"{path}{'.' if path else ''}{key!a}")
            _check_text(item, f"{path}{'.' if path else ''}{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{path}[{index}]")
