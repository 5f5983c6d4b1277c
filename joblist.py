"""``GET /jobs``: its query parameters and its cursors (the route is in ``orchestrator``).

``parse_query`` reads ``state``, ``limit`` and ``cursor`` from a request target, strictly: an
unknown or repeated parameter, a value out of range and a cursor the service did not issue
(or issued for another ``state``) are ``ValueError``s whose message names the parameter and
what it accepts (the handler answers 400 ``invalid_request`` with it).

A cursor is where the previous page ended: the store's ``created_key`` of its last job, and
the state filter it was issued for, as base64url JSON behind a checksum. Clients treat it as
opaque. The checksum tells a cursor the service issued from garbage (a truncated, edited or
made-up string); it is not a signature: a cursor forged with it can only point into the list
the same client may read anyway, and its key is checked for the shape of a real one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass

from store import LISTABLE_STATES, MAX_LIST_LIMIT

DEFAULT_LIMIT = 20
PARAMETERS = ("state", "limit", "cursor")
CHECKSUM_BYTES = 8
MAX_CURSOR_CHARS = 512
_KEY_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z#[!-~]{1,200}")  # createdAt#jobId
_LIMIT_RE = re.compile(r"[0-9]{1,4}")


@dataclass(frozen=True)
class ListQuery:
    """What ``GET /jobs`` asks of ``JobStore.list_jobs``."""

    state: str | None
    limit: int
    before: str | None


def parse_query(target: str) -> ListQuery:
    """The list query of request target ``target`` (``/jobs?state=failed&limit=50``)."""
    fields = _fields(urllib.parse.urlsplit(target).query)
    state = fields.get("state")
    if state is not None and state not in LISTABLE_STATES:
        raise ValueError(f"state must be one of {', '.join(LISTABLE_STATES)}, got {state!r}")
    limit = _limit(fields.get("limit"))
    cursor = fields.get("cursor")
    return ListQuery(state, limit, None if cursor is None else decode_cursor(cursor, state))


def _fields(query: str) -> dict[str, str]:
    """Each parameter's value; ``ValueError`` for an unknown one, one given twice, or text that
    is not UTF-8 once percent-decoded."""
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ValueError("the query string is not UTF-8 once percent-decoded") from None
    unknown = sorted({name for name, _ in pairs if name not in PARAMETERS})
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise ValueError(f"unknown query parameter{'s' if len(unknown) > 1 else ''} {names}; "
                         f"accepted: {', '.join(PARAMETERS)}")
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise ValueError(f"query parameter {name!r} is given more than once; give it at most once")
        fields[name] = value
    return fields


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not _LIMIT_RE.fullmatch(text) or not 1 <= int(text) <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}, got {text!r}")
    return int(text)


def encode_cursor(key: str, state: str | None) -> str:
    """The cursor of a page that ended at store key ``key``, for the filter ``state``."""
    payload = json.dumps({"k": key, "s": state}, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(_checksum(payload) + payload).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, state: str | None) -> str:
    """The store key of ``cursor``; ``ValueError`` unless this service issued it for ``state``."""
    fields = _cursor_fields(cursor)
    key, issued_for = fields.get("k"), fields.get("s")
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key) or issued_for not in (None, *LISTABLE_STATES):
        raise _not_issued()
    if issued_for != state:
        raise ValueError(f"cursor was issued for {_filter(issued_for)}, not {_filter(state)}: "
                         "send it with the state filter of the page it came from")
    return key


def _cursor_fields(cursor: str) -> dict[str, object]:
    """The JSON object inside ``cursor`` if its checksum holds."""
    if not 0 < len(cursor) <= MAX_CURSOR_CHARS:
        raise _not_issued()
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        raise _not_issued() from None
    payload = raw[CHECKSUM_BYTES:]
    if raw[:CHECKSUM_BYTES] != _checksum(payload):
        raise _not_issued()
    try:
        fields = json.loads(payload)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise _not_issued() from None
    if not isinstance(fields, dict):
        raise _not_issued()
    return fields


def _not_issued() -> ValueError:
    return ValueError("cursor is not one this service issued; pass nextCursor from the previous page unchanged")


def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(b"ghost-engine/jobs-cursor/1\0" + payload).digest()[:CHECKSUM_BYTES]


def _filter(state: str | None) -> str:
    return "the list of all jobs" if state is None else f"state={state}"
