"""The public API's OpenAPI 3.1 description, served by the orchestrator at ``GET /openapi.json``.

The document is hand-written in ``openapi.json`` beside this module (the repository's copy
is the one tools and readers use; the image copies it too). It is read once, at start,
encoded compactly and served with a strong ``ETag`` and ``Cache-Control: no-cache``, so a
client may keep it and revalidate with ``If-None-Match`` (304, no body).
tests/test_apidoc.py holds the document to the route table; tests/test_e2e_openapi.py runs
schemathesis against a live orchestrator with it.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from dataclasses import dataclass

import logjson
from httpkit import JSON_TYPE, JsonHandler, etag_matches

DOCUMENT_PATH = pathlib.Path(__file__).resolve().with_name("openapi.json")


@dataclass(frozen=True)
class ApiDocument:
    """The encoded document and its entity tag."""

    body: bytes
    etag: str


def load(path: pathlib.Path = DOCUMENT_PATH) -> ApiDocument:
    """Read and encode the document; ``ValueError`` naming the file if it is missing or not JSON."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot serve the API description {path.name}: {exc}") from None
    body = logjson.dumps(document).encode("utf-8")
    return ApiDocument(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def serve(h: JsonHandler) -> None:
    """``GET /openapi.json``: the application's ``api_document``, or 304 when the client's
    ``If-None-Match`` names its tag."""
    document: ApiDocument = h.app.api_document
    headers = {"ETag": document.etag, "Cache-Control": "no-cache"}
    status = 304 if etag_matches(h.headers.get("If-None-Match"), document.etag) else 200
    h.send_body(status, JSON_TYPE, document.body, headers)

