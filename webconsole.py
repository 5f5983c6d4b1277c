"""The web console's static files, served by the orchestrator at ``GET /`` and ``/console``.

The console is four files kept in ``console/`` beside this module (one HTML page, one ES
module, one stylesheet, one SVG icon); no build step, nothing from another origin. They are
read once, at start (a missing file stops the orchestrator, as a missing ``openapi.json``
does), each with a strong ``ETag``, and served with ``Cache-Control: no-cache`` (a browser
keeps them and revalidates with ``If-None-Match``: 304, no body) and a strict
``Content-Security-Policy``: scripts, styles, images and requests from this origin only, no
inline script or style, no plugins, no framing. The page talks to the job API like any other
client (README "Web console").
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass

from httpkit import JsonHandler, etag_matches

CONSOLE_DIR = pathlib.Path(__file__).resolve().with_name("console")
# Request path -> (file in CONSOLE_DIR, Content-Type). /favicon.ico is the icon: browsers and
# tools ask for it whatever the page links, and a 404 there is noise in every log and console.
FILES: Mapping[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/console": ("index.html", "text/html; charset=utf-8"),
    "/console/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/console/app.css": ("app.css", "text/css; charset=utf-8"),
    "/console/icon.svg": ("icon.svg", "image/svg+xml"),
    "/favicon.ico": ("icon.svg", "image/svg+xml"),
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",  # a file is only ever what its Content-Type says
    "Referrer-Policy": "no-referrer",  # job ids in the URL's fragment stay here anyway; be sure
}


@dataclass(frozen=True)
class Asset:
    """One file as served: its bytes, type and entity tag."""

    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True)
class Console:
    """The console's files by request path."""

    assets: Mapping[str, Asset]


def load(directory: pathlib.Path = CONSOLE_DIR) -> Console:
    """Read every file once; ``ValueError`` naming the file if one cannot be read."""
    by_name: dict[str, bytes] = {}
    for name, _ in FILES.values():
        if name not in by_name:
            try:
                by_name[name] = (directory / name).read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot serve the web console's {name}: {exc}") from None
    assets = {path: Asset(by_name[name], content_type, f'"{hashlib.sha256(by_name[name]).hexdigest()[:32]}"')
              for path, (name, content_type) in FILES.items()}
    return Console(assets)


def serve(h: JsonHandler) -> None:
    """``GET`` of a console file: the file, or 304 when ``If-None-Match`` names its tag."""
    asset = h.app.console.assets[h.path.partition("?")[0]]  # routed here only for FILES' paths
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", **SECURITY_HEADERS}
    status = 304 if etag_matches(h.headers.get("If-None-Match"), asset.etag) else 200
    h.send_body(status, asset.content_type, asset.body, headers)
