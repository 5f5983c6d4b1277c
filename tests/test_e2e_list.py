"""End to end: GET /jobs on real orchestrator and worker processes, in memory mode and in
DynamoDB mode (a moto server): pages newest first, through more than one page while jobs are
being created, by state, across replicas, and the 400s of bad parameters."""

from __future__ import annotations

import itertools
import threading

import pytest

from apiclient import poll, request, submit
from conftest import create_table
from polling import wait_until

PAYLOAD = {"prompt": "a haunted cellar", "seed": 7, "style": "noir"}
API_TOKEN = "e2e-api-token-0123456789abcdef"
_tables = itertools.count()


@pytest.fixture(params=["memory", "dynamodb"])
def store_env(request) -> dict[str, str]:
    """The orchestrator's environment for the store under test (a fresh table in DynamoDB mode)."""
    if request.param == "memory":
        return {}
    return create_table(request.getfixturevalue("moto_server"), f"jobs-e2e-list-{next(_tables)}")


def list_page(url: str, query: str = "", headers: dict[str, str] | None = None) -> dict:
    reply = request(url, "GET", f"/jobs{query}", headers=headers)
    assert reply.status == 200, reply.raw
    return reply.json


def list_all(url: str, query: str = "", limit: int = 2) -> list[list[dict]]:
    """Every page of GET /jobs, following nextCursor until it is null."""
    separator = "&" if query else ""
    pages = [list_page(url, f"?{query}{separator}limit={limit}")]
    while pages[-1]["nextCursor"] is not None:
        pages.append(list_page(url, f"?{query}{separator}limit={limit}&cursor={pages[-1]['nextCursor']}"))
    return [page["jobs"] for page in pages]


def newest_first(jobs: list[dict]) -> list[str]:
    return [j["jobId"] for j in sorted(jobs, key=lambda j: (j["createdAt"], j["jobId"]), reverse=True)]


class Creator(threading.Thread):
    """Submits jobs one after another until stopped (at most ``most``), recording their ids."""

    def __init__(self, url: str, most: int = 200):
        super().__init__(daemon=True)
        self.url, self.most = url, most
        self.ids: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        for seed in range(self.most):
            if self.stopping.is_set():
                return
            self.ids.append(submit(self.url, {**PAYLOAD, "seed": seed}))

    def stop(self) -> list[str]:
        self.stopping.set()
        self.join(timeout=30)
        return list(self.ids)


def test_paging_while_jobs_are_created_lists_every_earlier_job_once_newest_first(stack, store_env):
    _, orch = stack(worker_env={"WORK_MS": "0"}, orchestrator_env=store_env)
    earlier = [submit(orch.url, {**PAYLOAD, "seed": seed}) for seed in range(9)]
    creator = Creator(orch.url)
    creator.start()
    pages = [list_page(orch.url, "?limit=2")]
    while pages[-1]["nextCursor"] is not None:
        made = len(creator.ids)  # a job is created between every two pages
        wait_until(lambda made=made: len(creator.ids) > made, 10, "a job created while paging")
        pages.append(list_page(orch.url, f"?limit=2&cursor={pages[-1]['nextCursor']}"))
    created_meanwhile = creator.stop()

    listed = [job for page in pages for job in page["jobs"]]
    ids = [job["jobId"] for job in listed]
    assert len(pages) >= 5 and all(len(page["jobs"]) == 2 for page in pages[:-1])
    assert len(ids) == len(set(ids)), ids  # no repeats
    assert set(earlier) <= set(ids)  # no gaps
    assert set(ids) <= set(earlier) | set(created_meanwhile)
    assert ids == newest_first(listed)
    assert len(created_meanwhile) >= len(pages) - 1
    everything = list_page(orch.url, "?limit=100")
    assert [j["jobId"] for j in everything["jobs"]] == newest_first(everything["jobs"])
    assert (sorted(j["jobId"] for j in everything["jobs"]), everything["nextCursor"]) == (
        sorted(earlier + created_meanwhile), None)


def test_state_filter_lists_done_and_failed_jobs_apart_each_as_status_shows_it(services, store_env):
    worker = services("worker.py", {"WORK_MS": "50"})
    orch = services("orchestrator.py", {**store_env, "WORKER_URL": worker.url, "WORKER_RETRY_BUDGET_SECONDS": "0"})
    done = [submit(orch.url, {**PAYLOAD, "seed": seed}) for seed in range(3)]
    for job_id in done:
        assert poll(orch.url, job_id)[-1]["state"] == "done"
    worker.stop()
    failed = [submit(orch.url, {**PAYLOAD, "seed": seed}) for seed in range(2)]
    for job_id in failed:
        assert poll(orch.url, job_id)[-1]["state"] == "failed"

    status = {job_id: request(orch.url, "GET", f"/status/{job_id}").json for job_id in done + failed}
    done, failed = newest_first([status[j] for j in done]), newest_first([status[j] for j in failed])
    by_state = {state: [[j["jobId"] for j in page] for page in list_all(orch.url, f"state={state}")]
                for state in ("queued", "running", "done", "failed", "canceled")}
    assert by_state == {"queued": [[]], "running": [[]], "done": [done[:2], done[2:]], "failed": [failed],
                        "canceled": [[]]}
    every = list_page(orch.url)
    assert (every["jobs"], every["nextCursor"]) == ([status[job_id] for job_id in failed + done], None)

    cursor = list_page(orch.url, "?state=done&limit=1")["nextCursor"]
    refused = request(orch.url, "GET", f"/jobs?state=failed&cursor={cursor}")
    assert (refused.status, refused.json) == (400, {"error": {"code": "invalid_request", "message": (
        "cursor was issued for state=done, not state=failed: send it with the state filter of the page it came from")}})


def test_every_replica_lists_the_jobs_of_all_replicas(services, moto_server):
    env = create_table(moto_server, f"jobs-e2e-list-{next(_tables)}")
    worker = services("worker.py", {"WORK_MS": "0"})
    a, b = (services("orchestrator.py", {**env, "WORKER_URL": worker.url}) for _ in range(2))
    ids = [submit(replica.url, {**PAYLOAD, "seed": seed}) for seed, replica in enumerate([a, b] * 3)]
    from_a, from_b = ([j["jobId"] for page in list_all(replica.url, limit=4) for j in page] for replica in (a, b))
    assert from_a == from_b
    assert sorted(from_a) == sorted(ids)


NOT_ISSUED = "cursor is not one this service issued; pass nextCursor from the previous page unchanged"


BAD_QUERIES = {
    "?limit=0": "limit must be an integer from 1 to 100, got '0'",
    "?limit=101": "limit must be an integer from 1 to 100, got '101'",
    "?limit=ten": "limit must be an integer from 1 to 100, got 'ten'",
    "?state=lost": "state must be one of queued, running, done, failed, canceled, got 'lost'",
    "?page=2&size=5": "unknown query parameters 'page', 'size'; accepted: state, limit, cursor",
    "?state=done&state=failed": "query parameter 'state' is given more than once; give it at most once",
    "?cursor=bm90LWEtY3Vyc29y": NOT_ISSUED,
    "?cursor=%ff": "the query string is not UTF-8 once percent-decoded",
}


def test_bad_parameters_get_400_invalid_request_naming_them(stack, store_env):
    _, orch = stack(orchestrator_env=store_env)
    for query, message in BAD_QUERIES.items():
        reply = request(orch.url, "GET", f"/jobs{query}")
        assert (reply.status, reply.headers["content-type"], reply.json) == (
            400, "application/json", {"error": {"code": "invalid_request", "message": message}}), query

    def access_lines(lines: list[dict]) -> list[dict]:
        return [x for x in lines if x["message"] == "request" and x["path"] == "/jobs"]

    lines = orch.lines_when(lambda lines: len(access_lines(lines)) == len(BAD_QUERIES), "the access lines")
    assert [x["status"] for x in access_lines(lines)] == [400] * len(BAD_QUERIES)


def test_with_api_token_the_list_needs_it(stack):
    _, orch = stack(orchestrator_env={"API_TOKEN": API_TOKEN})
    refused = request(orch.url, "GET", "/jobs")
    assert (refused.status, refused.headers["www-authenticate"], refused.json["error"]["code"]) == (
        401, "Bearer", "unauthorized")
    job_id = submit(orch.url, PAYLOAD, {"Authorization": f"Bearer {API_TOKEN}"})
    page = list_page(orch.url, headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert ([j["jobId"] for j in page["jobs"]], page["nextCursor"]) == ([job_id], None)
