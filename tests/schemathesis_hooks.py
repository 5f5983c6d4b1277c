"""Hooks that tests/test_e2e_openapi.py loads into schemathesis (SCHEMATHESIS_HOOKS).

JSON Schema's data model counts ``1.0`` as an integer, so schemathesis may send ``"seed": 1.0``
as schema-valid data. The API takes integers written as integers (``seed must be an integer,
got 1.0``, and the description of ``seed`` says so) because a float cannot carry every
64-bit seed exactly. This hook writes such generated seeds the way clients write integers.

A ``cursor`` of ``GET /jobs`` is valid only if the service issued it: its checksum is beyond
what a schema can say, so a generated cursor of the documented shape is a cursor the service
would refuse. ``map_case`` puts in its place one the service issues (for the case's ``state``);
a cursor of another shape stays as generated, for the service to refuse.

Two rules of the job API involve more than one value, which a schema cannot say either:
``since`` of ``GET /status`` needs ``wait`` (alone it is refused, 400), so a generated
``since`` without ``wait`` gets ``wait=0``; and an ``Idempotency-Key`` reused with another body
is refused (422, the point of the key), so each generated key of the documented shape is made
unique to its case. Keys and ``since`` of other shapes stay as generated, for the service to
refuse.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis

import joblist
import store

CURSOR_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,512}")  # the cursor parameter's schema in openapi.json
IDEMPOTENCY_KEY_SHAPE = re.compile(r"[ -~]{1,255}")  # the Idempotency-Key parameter's schema
CURSOR_KEY = "2027-01-15T08:00:00.000Z#0d4c3f0e-8f5a-4b8e-9c1d-2a3b4c5d6e7f"


@schemathesis.hook
def map_body(_context: schemathesis.HookContext, body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("seed"), float) and body["seed"].is_integer():
        return {**body, "seed": int(body["seed"])}
    return body


@schemathesis.hook
def map_case(_context: schemathesis.HookContext, case: Any) -> Any:
    query = case.query
    if case.path == "/jobs" and isinstance(query, dict) and isinstance(query.get("cursor"), str) \
            and CURSOR_SHAPE.fullmatch(query["cursor"]):
        state = query.get("state")
        query["cursor"] = joblist.encode_cursor(CURSOR_KEY, state if state in store.LISTABLE_STATES else None)
    if case.path == "/status/{jobId}" and isinstance(query, dict) and "since" in query and "wait" not in query:
        query["wait"] = 0
    headers = case.headers
    if case.path == "/generate-scene" and headers is not None \
            and IDEMPOTENCY_KEY_SHAPE.fullmatch(str(headers.get("Idempotency-Key", ""))):
        headers["Idempotency-Key"] = f"{uuid.uuid4()}-{headers['Idempotency-Key']}"[:255]
    return case
