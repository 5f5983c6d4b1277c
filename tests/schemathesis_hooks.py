"""Hooks that tests/test_e2e_openapi.py loads into schemathesis (SCHEMATHESIS_HOOKS).

JSON Schema's data model counts ``1.0`` as an integer, so schemathesis may send ``"seed": 1.0``
as schema-valid data. The API takes integers written as integers (``seed must be an integer,
got 1.0``, and the description of ``seed`` says so) because a float cannot carry every
64-bit seed exactly. This hook writes such generated seeds the way clients write integers.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_body(_context: schemathesis.HookContext, body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("seed"), float) and body["seed"].is_integer():
        return {**body, "seed": int(body["seed"])}
    return body
