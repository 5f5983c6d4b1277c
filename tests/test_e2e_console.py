"""End to end in a real browser: the web console (GET /) in headless Chromium (Debian's
``chromium``, driven by Playwright) against real orchestrator and worker processes, in memory
mode and in DynamoDB mode (a moto server).

A person's path through it: load the page (no console error, no failed request), submit a
scene with the keyboard, watch the progress bar rise, see the scene drawn with as many room
shapes as the job's result has rooms, press "same seed again" and get the identical drawing,
reload the permalink, submit a prompt that is HTML and see it as text; cancel a running job,
see the API's refusal in the form, see a failed job's error; and with API_TOKEN, give the
token once. Screenshots (desktop and 375 px) go to a temp dir whose paths are printed, with
the page's weight and its time to first paint as the browser measured them.

Without a Chromium the tests fail with a one-line install hint (browser.INSTALL_HINT); they
never skip.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apiclient import request, submit
from browser import INSTALL_HINT, PageRecord, find_chromium, launch_arguments
from conftest import ROOT, create_table

XSS_PROMPT = "<img src=x onerror=alert(1)>"
XSS_STYLE = "<b>noir</b>"
API_TOKEN = "e2e-console-token-0123456789abcdef"
DESKTOP = {"width": 1280, "height": 900}
NARROW = {"width": 375, "height": 812}
CONSOLE_FILES = {"/": "index.html", "/console/app.js": "app.js", "/console/app.css": "app.css",
                 "/console/icon.svg": "icon.svg"}
_tables = itertools.count()

METRICS_JS = """() => ({
  paint: Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime])),
  entries: [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
    .map(e => ({url: e.name, body: e.encodedBodySize, transfer: e.transferSize})),
})"""
RECORD_PROGRESS_JS = """() => {
  const bar = document.getElementById('job-progress');
  window.progressSeen = [];
  new MutationObserver(() => window.progressSeen.push(bar.value))
    .observe(bar, {attributes: true, attributeFilter: ['value']});
}"""
JOB_IN_STATE_JS = """([state, notId]) => {
  const id = document.getElementById('job-id').textContent;
  return id !== '' && id !== notId && document.getElementById('job-state').dataset.state === state ? id : false;
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (every test opens its own context)."""
    executable = find_chromium()
    if executable is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: python -m pip install -r requirements-dev.txt", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=launch_arguments())
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    """Where screenshots go: a temp dir kept after the run, so a person can look at them."""
    return Path(tempfile.mkdtemp(prefix="ghost-console-"))


@pytest.fixture(params=["memory", "dynamodb"])
def store_env(request) -> dict[str, str]:
    if request.param == "memory":
        return {}
    return create_table(request.getfixturevalue("moto_server"), f"jobs-e2e-console-{next(_tables)}")


@pytest.fixture
def console(browser):
    """Factory: ``console(url)`` opens the page in a fresh browser context; yields (page, record)."""
    contexts = []

    def open_console(url: str, wait_for_list: bool = True) -> tuple[Any, PageRecord]:
        context = browser.new_context(viewport=DESKTOP)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        record = PageRecord()
        record.attach(page)
        page.goto(f"{url}/", wait_until="load")
        if wait_for_list:
            page.wait_for_function("() => document.getElementById('recent-status').textContent !== ''"
                                   " || document.getElementById('recent').children.length > 0")
        return page, record

    yield open_console
    for context in contexts:
        context.close()


def wait_job(page: Any, state: str, not_id: str = "") -> str:
    """The shown job's id once it is a job other than ``not_id`` in ``state``."""
    return page.wait_for_function(JOB_IN_STATE_JS, arg=[state, not_id]).json_value()


def tab_to(page: Any, selector: str, most: int = 20) -> None:
    """Press Tab until ``selector`` has the focus, as a keyboard user would."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} not reached with {most} presses of Tab")


def focus_ring(page: Any) -> tuple[str, str]:
    return tuple(page.evaluate("() => { const s = getComputedStyle(document.activeElement);"
                               " return [s.outlineStyle, s.outlineWidth]; }"))


def drawing(page: Any) -> str:
    return page.eval_on_selector("#scene svg", "svg => svg.outerHTML")


def status(url: str, job_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    reply = request(url, "GET", f"/status/{job_id}", headers=headers)
    assert reply.status == 200, reply.raw
    return reply.json


def page_weight(metrics: dict[str, Any], base: str) -> dict[str, int]:
    """Encoded body bytes of each console file the page loaded, by path."""
    loaded = {e["url"].removeprefix(base): e["body"] for e in metrics["entries"]}
    return {path: size for path, size in loaded.items() if path in CONSOLE_FILES}


def assert_scene_matches_result(page: Any, result: dict[str, Any]) -> None:
    scene = result["scene"]
    rooms = page.eval_on_selector_all("#scene svg rect.room", "rs => rs.length")
    assert rooms == len(scene["rooms"]) >= 3, (rooms, page.inner_text("#job"), scene)
    assert page.eval_on_selector_all("#scene svg rect.room", "rs => rs.map(r => r.dataset.room)") == [
        room["id"] for room in scene["rooms"]]
    assert page.locator("#scene svg line.door").count() == len(scene["doors"])
    assert page.eval_on_selector_all("#scene svg .entity-label", "ts => ts.map(t => t.textContent)") == [
        entity["type"] for entity in scene["entities"]]
    assert page.locator("#scene svg circle.light").count() == len(scene["lights"])
    assert page.text_content("#job-digest") == result["digest"]


def test_submit_watch_draw_rerun_reload_and_an_html_prompt_shown_as_text(stack, store_env, console, shots, capsys):
    worker, orch = stack(worker_env={"WORK_MS": "2000"}, orchestrator_env=store_env)
    page, record = console(orch.url)
    page.wait_for_function("() => performance.getEntriesByType('paint').length >= 2")
    metrics = page.evaluate(METRICS_JS)
    assert page.text_content("#recent-status") == "No jobs yet."

    # Submit with the keyboard alone; the focused control shows a ring.
    page.evaluate(RECORD_PROGRESS_JS)
    tab_to(page, "#prompt")
    assert focus_ring(page) == ("solid", "3px")
    page.keyboard.press("Control+A")
    page.keyboard.type("a haunted library above a dark cellar")
    tab_to(page, "#seed")
    page.keyboard.type("4242")
    tab_to(page, "#style")
    page.keyboard.type("noir")
    tab_to(page, "#submit-button")
    assert focus_ring(page) == ("solid", "3px")
    page.keyboard.press("Enter")
    first = wait_job(page, "done")
    assert page.url == f"{orch.url}/#/jobs/{first}"
    progress = page.evaluate("() => window.progressSeen")
    assert progress == sorted(progress) and progress[-1] == 1 and [p for p in progress if 0 < p < 1], progress

    assert record.errors == []  # a script error would leave the drawing out: say so first
    job = status(orch.url, first)
    assert (job["state"], job["input"]) == ("done", {"prompt": "a haunted library above a dark cellar",
                                                      "seed": 4242, "style": "noir"})
    assert_scene_matches_result(page, job["result"])
    assert (page.text_content("#job-state"), page.text_content("#job-seed"), page.text_content("#job-progress-text"),
            page.text_content("#job-updates")) == ("✓ done", "4242", "100 %", "")
    first_drawing = drawing(page)

    # Same seed again: a new job, the identical drawing.
    page.click("#rerun-button")
    second = wait_job(page, "done", not_id=first)
    assert drawing(page) == first_drawing
    assert status(orch.url, second)["result"] == job["result"]
    assert page.text_content("#job-note") == f"Same seed as job {first}: identical digest and identical drawing."
    page.screenshot(path=shots / f"console-desktop-{'dynamodb' if store_env else 'memory'}.png", full_page=True)

    # The permalink survives a reload.
    assert page.url == f"{orch.url}/#/jobs/{second}"
    page.reload()
    assert wait_job(page, "done") == second and drawing(page) == first_drawing
    page.wait_for_function("() => document.querySelectorAll('#recent a').length === 2")
    assert page.eval_on_selector_all("#recent a", "as => as.map(a => a.dataset.jobId)") == [second, first]

    # A prompt and a style that are HTML show as text, in the job and in the list.
    page.fill("#prompt", XSS_PROMPT)
    page.fill("#seed", "")
    page.fill("#style", XSS_STYLE)
    page.click("#submit-button")
    third = wait_job(page, "done", not_id=second)
    page.wait_for_function("(id) => document.querySelector('#recent a').dataset.jobId === id", arg=third)
    assert (page.text_content("#job-prompt"), page.text_content("#job-style")) == (XSS_PROMPT, XSS_STYLE)
    assert page.text_content("#recent a .prompt") == XSS_PROMPT
    assert page.locator("main img, main b").count() == 0
    assert drawing(page) != first_drawing
    assert status(orch.url, third)["input"]["prompt"] == XSS_PROMPT

    # 375 px wide: nothing wider than the screen but the drawing's own scroller.
    page.set_viewport_size(NARROW)
    assert page.evaluate("() => document.documentElement.scrollWidth") == NARROW["width"]
    page.screenshot(path=shots / f"console-375px-{'dynamodb' if store_env else 'memory'}.png", full_page=True)

    assert (record.errors, record.failed, record.js_dialogs) == ([], [], [])
    assert [r for r in record.requests if "/x" in r] == []
    weight = page_weight(metrics, orch.url)
    assert weight == {path: (ROOT / "console" / name).stat().st_size for path, name in CONSOLE_FILES.items()}
    first_paint = metrics["paint"]["first-paint"]
    assert first_paint > 0
    with capsys.disabled():
        mode = "dynamodb" if store_env else "memory"
        wire = sum(e["transfer"] for e in metrics["entries"] if e["url"].removeprefix(orch.url) in CONSOLE_FILES)
        print(f"\nconsole ({mode}): page weight {sum(weight.values())} bytes "
              f"({', '.join(f'{CONSOLE_FILES[p]} {n}' for p, n in sorted(weight.items()))}; {wire} on the wire "
              f"with headers); first paint {first_paint:.0f} ms, first contentful paint "
              f"{metrics['paint']['first-contentful-paint']:.0f} ms after navigation start; progress seen "
              f"{progress}")
        for shot in sorted(shots.glob(f"console-*-{mode}.png")):
            print(f"console screenshot: {shot} ({shot.stat().st_size} bytes)")


def test_cancel_a_running_job_and_the_apis_refusal_shown_in_the_form(stack, store_env, console):
    """One job runs (a minute of work), one waits: the queue is full, so the next submit is
    refused by the API, and the form shows its message; then the running job is canceled."""
    _, orch = stack(worker_env={"WORK_MS": "60000"},
                    orchestrator_env={**store_env, "MAX_CONCURRENT_JOBS": "1", "MAX_QUEUED_JOBS": "1"})
    page, record = console(orch.url)

    page.fill("#seed", "12x")
    page.click("#submit-button")
    assert page.text_content("#form-error") == 'seed must be an integer, got "12x"'
    assert page.evaluate("() => document.activeElement.id") == "seed"
    assert page.get_attribute("#seed", "aria-invalid") == "true"
    assert [r for r in record.requests if r.startswith("POST")] == []

    page.fill("#seed", "7")
    page.click("#submit-button")
    running = wait_job(page, "running")
    assert page.text_content("#job-state") == "▶ running"
    waiting = submit(orch.url, {"prompt": "waits its turn", "seed": 1})
    assert status(orch.url, waiting)["state"] == "queued"
    page.click("#submit-button")
    page.wait_for_selector("#form-error:not([hidden])")
    assert page.text_content("#form-error") == "too many jobs are waiting; retry in a few seconds"

    page.click("#cancel-button")
    assert wait_job(page, "canceled") == running
    assert page.text_content("#job-state") == "⊘ canceled"
    assert page.is_disabled("#cancel-button")
    assert status(orch.url, running)["state"] == "canceled"
    assert (record.errors, record.failed) == (
        ["console: Failed to load resource: the server responded with a status of 503 (Service Unavailable)"],
        ["POST /generate-scene: 503"])


def test_a_job_that_failed_because_the_worker_is_down_shows_its_error(services, store_env, console, refused_port):
    orch = services("orchestrator.py", {**store_env, "WORKER_URL": f"http://127.0.0.1:{refused_port}",
                                        "WORKER_RETRY_BUDGET_SECONDS": "1", "RETRY_BACKOFF_MS": "100"})
    page, record = console(orch.url)
    page.click("#submit-button")
    failed = wait_job(page, "failed")
    error = status(orch.url, failed)["error"]
    assert error.startswith("the worker could not be reached; gave up after retrying for 1 s")
    assert (page.text_content("#job-error"), page.text_content("#job-state")) == (error, "✕ failed")
    assert page.is_visible("#job-error") and not page.is_visible("#scene-figure")
    page.wait_for_function("() => document.querySelector('#recent .badge')?.dataset.state === 'failed'")
    assert (record.errors, record.failed) == ([], [])


def test_with_api_token_the_console_asks_once_and_long_polls_with_the_header(stack, console):
    _, orch = stack(worker_env={"WORK_MS": "500"}, orchestrator_env={"API_TOKEN": API_TOKEN})
    page, record = console(orch.url, wait_for_list=False)
    page.wait_for_selector("#token-dialog[open]")
    assert page.evaluate("() => document.activeElement.id") == "token-input"
    page.keyboard.type("not-the-token")
    page.keyboard.press("Enter")
    page.wait_for_selector("#token-error:not([hidden])")
    assert page.text_content("#token-error") == "That token was refused; enter the orchestrator's API_TOKEN."
    page.fill("#token-input", API_TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('recent-status').textContent === 'No jobs yet.'")
    assert not page.is_visible("#token-dialog")
    assert page.evaluate("() => sessionStorage.getItem('ghost-engine.apiToken')") == API_TOKEN

    page.click("#submit-button")
    page.wait_for_selector("#job-updates:text('live: long polling')")
    job_id = wait_job(page, "done")
    result = status(orch.url, job_id, {"Authorization": f"Bearer {API_TOKEN}"})["result"]
    assert_scene_matches_result(page, result)
    page.reload()
    assert wait_job(page, "done") == job_id and not page.is_visible("#token-dialog")  # asked once per session
    assert [r for r in record.requests if "/events" in r] == []  # EventSource cannot send the header
    assert any(r.startswith(f"GET /status/{job_id}?wait=25&since=") for r in record.requests)
    refused = "console: Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    assert (record.errors, record.failed) == ([refused, refused], ["GET /jobs?limit=10: 401"] * 2)
    assert json.dumps(record.requests).count("/generate-scene") == 1
