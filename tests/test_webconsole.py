"""Unit tests for webconsole and the console's files: served with their types, a strong ETag
revalidated with 304, a strict Content-Security-Policy, open without the API token; and
files that need nothing the policy forbids (no inline script or style, no other origin, no
HTML built from strings). The browser test is tests/test_e2e_console.py."""

from __future__ import annotations

import hashlib
import html.parser
import re

import pytest

import orchestrator
import webconsole
from conftest import ROOT
from test_apidoc import get, serving

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
EXPECTED = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/console": ("index.html", "text/html; charset=utf-8"),
    "/console/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/console/app.css": ("app.css", "text/css; charset=utf-8"),
    "/console/icon.svg": ("icon.svg", "image/svg+xml"),
    "/favicon.ico": ("icon.svg", "image/svg+xml"),
}


def test_the_route_table_serves_exactly_the_console_files_and_they_are_public():
    console_routes = {path for (method, path), handler in orchestrator.ROUTES.items() if handler is webconsole.serve}
    assert console_routes == set(EXPECTED) == set(webconsole.FILES)
    assert all(method == "GET" for (method, path) in orchestrator.ROUTES if path in EXPECTED)
    assert set(EXPECTED) <= orchestrator.OrchestratorHandler.public_paths
    assert webconsole.CONTENT_SECURITY_POLICY == CSP


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_each_file_is_served_without_a_token_with_its_type_etag_and_policy(path):
    name, content_type = EXPECTED[path]
    body = (ROOT / "console" / name).read_bytes()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    with serving() as port:  # API_TOKEN set
        status, headers, served = get(port, {}, path)
        assert (status, served) == (200, body)
        assert {k: headers[k] for k in ("Content-Type", "Cache-Control", "ETag", "Content-Security-Policy",
                                         "X-Content-Type-Options", "Referrer-Policy", "Content-Length")} == {
            "Content-Type": content_type, "Cache-Control": "no-cache", "ETag": etag, "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Content-Length": str(len(body))}
        status, headers, served = get(port, {"If-None-Match": f'W/{etag}'}, path + "?v=1")
        assert (status, headers["ETag"], served) == (304, etag, b"")
        assert get(port, {"If-None-Match": '"other"'}, path)[0] == 200
        assert get(port, {}, "/jobs")[0] == 401  # the API itself still needs the token


def test_post_to_the_page_is_405_and_an_unknown_console_file_404():
    with serving() as port:
        assert get(port, {}, "/console/other.js")[0] == 404
    import http.client

    with serving() as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/", b"{}", {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert (resp.status, resp.headers["Allow"]) == (405, "GET, HEAD")
        conn.close()


def test_load_names_the_file_it_cannot_serve(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        webconsole.load(tmp_path)
    assert str(info.value).startswith("cannot serve the web console's app.js: [Errno 2]")


class _Page(html.parser.HTMLParser):
    """Collects what the CSP cares about in the page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag == "style" or "style" in attributes:
            self.inline.append(f"style on <{tag}>")
        self.inline += [f"{name} on <{tag}>" for name in attributes if name.startswith("on")]
        self.urls += [value or "" for name, value in attrs if name in ("src", "href", "action")]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script")


def test_the_page_has_one_module_script_no_inline_code_and_only_same_origin_urls():
    page = _Page()
    page.feed((ROOT / "console" / "index.html").read_text(encoding="utf-8"))
    assert page.scripts == [{"type": "module", "src": "/console/app.js"}]
    assert page.inline == []
    assert page.urls and [u for u in page.urls if not re.fullmatch(r"(/[\w./-]*|#.*)", u)] == []


def test_the_script_builds_no_html_from_strings():
    """Job values go in as text: no innerHTML, outerHTML, insertAdjacentHTML, document.write,
    eval or Function (the policy would refuse the last two anyway)."""
    source = (ROOT / "console" / "app.js").read_text(encoding="utf-8")
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("//"))
    assert re.findall(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function", code) == []
    assert "textContent" in code and "createElementNS" in code
    assert re.findall(r"https?://(?!www\.w3\.org/2000/svg)", source) == []  # no other origin
