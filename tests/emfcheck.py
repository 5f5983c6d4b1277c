"""Validation of EMF documents: the JSON Schema in tests/schemas plus the cross-member
rules a schema cannot express."""

from __future__ import annotations

import json
import pathlib

import jsonschema

SCHEMA = json.loads((pathlib.Path(__file__).parent / "schemas" / "emf.schema.json").read_text())
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def assert_emf_valid(doc: dict) -> None:
    """Fail unless ``doc`` is a valid EMF document: schema, and every dimension a root
    string, every metric a root number (or a list of at most 100 numbers)."""
    _VALIDATOR.validate(doc)
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                assert isinstance(doc.get(key), str), f"dimension {key!r} must be a string at the root"
        for metric in directive["Metrics"]:
            value = doc.get(metric["Name"])
            values = value if isinstance(value, list) else [value]
            assert 0 < len(values) <= 100, f"metric {metric['Name']!r}: 1..100 values"
            for v in values:
                assert isinstance(v, (int, float)) and not isinstance(v, bool), \
                    f"metric {metric['Name']!r} must be a number at the root, got {v!r}"
