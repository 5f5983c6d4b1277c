"""Headless Chromium for the console's browser test: Debian's ``chromium`` driven by Playwright
for Python (Playwright's own browser downloads are not used), and a recorder of what a page
reports: console errors, uncaught exceptions, failed requests and 4xx/5xx answers."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any

INSTALL_HINT = ("chromium not found: install it with `apt-get install -y chromium` (as root; .ci/run does), "
                "or set CHROMIUM_PATH to a Chromium or Chrome binary")


BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """``CHROMIUM_PATH``, else the first of BROWSER_NAMES on PATH (Debian's package is
    ``chromium``; GitHub's hosted Ubuntu runners have ``google-chrome``)."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), *map(shutil.which, BROWSER_NAMES)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def launch_arguments() -> list[str]:
    """Chromium refuses to start its sandbox as root (CI runs as root)."""
    return ["--no-sandbox"] if os.geteuid() == 0 else []


@dataclass
class PageRecord:
    """What went wrong on a page, as text lines a failing assertion shows."""

    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    failed: list[str] = field(default_factory=list)  # failed requests and 4xx/5xx answers
    requests: list[str] = field(default_factory=list)  # "METHOD path" of every request
    js_dialogs: list[str] = field(default_factory=list)  # alert() and friends: an XSS would fire one

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.method} {_path(r.url)}: {r.failure}"))
        page.on("request", lambda r: self.requests.append(f"{r.method} {_path(r.url)}"))
        page.on("response", lambda r: self.failed.append(f"{r.request.method} {_path(r.url)}: {r.status}")
                if r.status >= 400 else None)
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.js_dialogs.append(dialog.message)
        dialog.dismiss()


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3] if url.count("/") >= 3 else url
