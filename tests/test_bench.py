"""The benchmark's pieces work (bench/, README "Benchmark"): the load clients count what a
server did, the ceiling answers like the orchestrator, the DynamoDB proxy counts by
operation and job, the summaries compute what they say, and a shrunken --quick run writes
the documented document. Nothing here passes or fails on speed."""

from __future__ import annotations

import asyncio
import collections
import http.client
import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import awsproxy
import ceiling
import dynamocost
import fastapi_peer
import httpbench
import loadgen
import plan
import pyload
import stats
import wrkload
from conftest import ROOT, serving_in_thread
from procs import Pinning, Process

RESULT_KEYS = ["requests", "duration_s", "rps", "p50_ms", "p99_ms", "socket_errors", "non_2xx"]
STATUS_FIELDS = ["jobId", "state", "progress", "result", "error", "createdAt", "updatedAt", "input", "attempts"]


class _Scripted(BaseHTTPRequestHandler):
    """``/alternate``: 200, 503, 200, ... (counted across connections); ``/close``: 200 with
    ``Connection: close``; ``/drop``: closes without answering."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    served = 0

    def do_GET(self):
        if self.path == "/drop":
            self.close_connection = True
            return
        with self.lock:
            type(self).served += 1
            status = 503 if self.path == "/alternate" and self.served % 2 == 0 else 200
        close = self.path == "/close"
        self.close_connection = close
        self.wfile.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n{{}}".encode())

    def log_message(self, format, *args):
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """The client's resets (a dropped or cancelled connection) are expected here."""


@pytest.fixture
def scripted():
    _Scripted.served = 0
    with serving_in_thread(_QuietServer(("127.0.0.1", 0), _Scripted)) as port:
        yield port


@pytest.fixture
def ceiling_server():
    server = ceiling.CeilingServer(("127.0.0.1", 0))
    with serving_in_thread(server) as port:
        yield server, port


def _load(url, connections, per_connection, method="GET", body=None):
    return asyncio.run(pyload.run(url, method, body, connections, duration=20, requests_per_connection=per_connection))


# -- the built-in client ---------------------------------------------------------------

def test_builtin_client_counts_every_answer_and_the_non_2xx_ones(scripted):
    result = _load(f"http://127.0.0.1:{scripted}/alternate", connections=2, per_connection=10)
    assert list(result) == RESULT_KEYS
    assert (result["requests"], result["non_2xx"], result["socket_errors"]) == (20, 10, 0)
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_builtin_client_opens_a_new_connection_after_connection_close(scripted):
    result = _load(f"http://127.0.0.1:{scripted}/close", connections=2, per_connection=3)
    assert (result["requests"], result["non_2xx"], result["socket_errors"]) == (6, 0, 0)


def test_builtin_client_counts_a_connection_closed_without_an_answer_as_a_socket_error(scripted):
    result = _load(f"http://127.0.0.1:{scripted}/drop", connections=2, per_connection=3)
    assert (result["requests"], result["non_2xx"], result["socket_errors"]) == (0, 0, 6)
    assert (result["p50_ms"], result["p99_ms"]) == (None, None)


def test_builtin_client_counts_refused_connections_as_socket_errors(refused_port):
    result = _load(f"http://127.0.0.1:{refused_port}/", connections=1, per_connection=4)
    assert (result["requests"], result["socket_errors"]) == (0, 4)


def test_builtin_client_posts_the_json_body(ceiling_server):
    server, port = ceiling_server
    result = _load(f"http://127.0.0.1:{port}/generate-scene", 2, 5, "POST", b'{"prompt": "a hall"}')
    assert (result["requests"], result["non_2xx"], result["socket_errors"]) == (10, 0, 0)
    assert [job["input"] for job in server.jobs.values()] == [{"prompt": "a hall"}] * 10


def test_builtin_client_program_prints_one_result_object(ceiling_server):
    _server, port = ceiling_server
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "pyload.py"), f"http://127.0.0.1:{port}/healthz",
                          "--connections", "2", "--duration", "0.3"], capture_output=True, text=True, timeout=30)
    result = json.loads(out.stdout)
    assert (out.returncode, list(result)) == (0, RESULT_KEYS)
    assert result["requests"] > 0 and (result["non_2xx"], result["socket_errors"]) == (0, 0)


# -- wrk -------------------------------------------------------------------------------

def test_wrk_output_line_becomes_the_result_object():
    out = ("Running 1s test\n  10 requests\n"
           'BENCH_RESULT {"requests":5000,"duration_us":2000000,"connect":1,"read":2,"write":3,"timeout":4,'
           '"status":7,"p50_us":1500,"p99_us":12345}\n')
    assert wrkload.parse(out) == {"requests": 5000, "duration_s": 2.0, "rps": 2500.0, "p50_ms": 1.5,
                                  "p99_ms": 12.345, "socket_errors": 10, "non_2xx": 7}


def test_wrk_output_without_the_result_line_is_an_error():
    with pytest.raises(ValueError, match="no BENCH_RESULT line"):
        wrkload.parse("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_command_rounds_the_duration_up_to_whole_seconds():
    assert wrkload.command("wrk", "http://h/x", 64, 0.3) == [
        "wrk", "-t1", "-c64", "-d1s", "--timeout=10s", "-s", str(ROOT / "bench" / "wrk_report.lua"), "http://h/x"]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (Debian/Ubuntu: apt-get install -y wrk)")
def test_wrk_posts_through_the_lua_script_and_counts_non_2xx(ceiling_server):
    server, port = ceiling_server
    load = loadgen.choose("wrk", Pinning())
    posted = load.run(f"http://127.0.0.1:{port}/generate-scene", "POST", b'{"prompt": "a hall"}', 2, 1)
    assert posted.requests > 0 and (posted.non_2xx, posted.socket_errors) == (0, 0)
    assert len(server.jobs) >= posted.requests
    # A copy in one step: wrk's last requests may still be landing (iterating the dict would race them).
    assert {json.dumps(job["input"]) for job in list(server.jobs.values())} == {'{"prompt": "a hall"}'}
    missing = load.run(f"http://127.0.0.1:{port}/status/nope", "GET", None, 2, 1)
    assert missing.requests > 0 and missing.non_2xx == missing.requests


# -- the ceiling -----------------------------------------------------------------------

def test_ceiling_answers_post_and_status_as_the_orchestrator_does(ceiling_server, stack):
    _worker, orch = stack()
    shapes = {}
    for name, port in (("ceiling", ceiling_server[1]), ("orchestrator", orch.port)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/generate-scene", b'{"prompt": "a hall", "seed": 7, "style": "doom"}',
                     {"Content-Type": "application/json"})
        posted = conn.getresponse()
        created = json.loads(posted.read())
        conn.request("GET", posted.getheader("Location"))  # the same connection: kept alive
        answer = conn.getresponse()
        job = json.loads(answer.read())
        conn.close()
        shapes[name] = (posted.status, list(created), created["statusUrl"] == f"/status/{job['jobId']}",
                        answer.status, list(job), job["input"])
    assert shapes["ceiling"] == shapes["orchestrator"] == (
        202, ["jobId", "statusUrl"], True, 200, STATUS_FIELDS, {"prompt": "a hall", "seed": 7, "style": "doom"})


def test_ceiling_answers_unknown_ids_and_bad_json_with_json_errors(ceiling_server):
    _server, port = ceiling_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/status/nope")
    answer = conn.getresponse()
    assert (answer.status, json.loads(answer.read())["error"]["code"]) == (404, "not_found")
    conn.request("POST", "/generate-scene", b"{", {"Content-Type": "application/json"})
    answer = conn.getresponse()
    assert (answer.status, json.loads(answer.read())["error"]["code"]) == (400, "invalid_json")


@pytest.mark.skipif(fastapi_peer.missing() is not None, reason="fastapi/uvicorn not installed: pip install fastapi uvicorn")
def test_fastapi_peer_answers_in_the_orchestrators_shapes(tmp_path):
    with Process.script("fastapi", "bench/fastapi_peer.py", tmp_path, Pinning()) as peer:
        peer.wait_healthy()
        conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=5)
        conn.request("POST", "/generate-scene", b'{"prompt": "a hall", "extra": 1}', {"Content-Type": "application/json"})
        rejected = conn.getresponse()
        rejected.read()
        conn.request("POST", "/generate-scene", b'{"prompt": "a hall"}', {"Content-Type": "application/json"})
        posted = conn.getresponse()
        created = json.loads(posted.read())
        conn.request("GET", created["statusUrl"])
        job = json.loads(conn.getresponse().read())
    assert (rejected.status, posted.status, posted.getheader("Location")) == (422, 202, created["statusUrl"])
    assert list(job) == STATUS_FIELDS


# -- the DynamoDB counting proxy ---------------------------------------------------------

class _FakeDynamo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n\r\n{}")

    def log_message(self, format, *args):
        pass


def test_proxy_forwards_and_counts_requests_by_job_and_operation():
    with serving_in_thread(_QuietServer(("127.0.0.1", 0), _FakeDynamo)) as upstream:
        proxy = awsproxy.CountingProxy(upstream)
        with serving_in_thread(proxy) as port:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            for operation, body in [("PutItem", {"Item": {"jobId": {"S": "j1"}, "state": {"S": "queued"}}}),
                                    ("UpdateItem", {"Key": {"jobId": {"S": "j1"}}}),
                                    ("UpdateItem", {"Key": {"jobId": {"S": "j1"}}}),
                                    ("GetItem", {"Key": {"jobId": {"S": "j2"}}}),
                                    ("Query", {"IndexName": "active"})]:
                conn.request("POST", "/", json.dumps(body), {"X-Amz-Target": f"DynamoDB_20120810.{operation}"})
                answer = conn.getresponse()
                assert (answer.status, answer.read()) == (200, b"{}")
            assert proxy.take() == {("j1", "PutItem"): 1, ("j1", "UpdateItem"): 2, ("j2", "GetItem"): 1,
                                    (None, "Query"): 1}
            assert proxy.take() == {}


def test_dynamodb_summary_is_per_job_with_reads_per_status_poll():
    counts = collections.Counter({("a", "PutItem"): 1, ("a", "UpdateItem"): 3, ("a", "GetItem"): 5,
                                  ("b", "PutItem"): 1, ("b", "UpdateItem"): 4, ("b", "GetItem"): 5,
                                  (None, "Query"): 1, ("-", "GetItem"): 1})
    assert dynamocost.summarize(counts, ["a", "b"], polls=10) == {
        "per_job": {"PutItem": {"min": 1, "median": 1, "max": 1},
                    "UpdateItem": {"min": 3, "median": 3.5, "max": 4},
                    "writes": {"min": 4, "median": 4.5, "max": 5}},
        "status_polls": 10,
        "get_item_per_status_poll": 1.0,
        "not_per_job": {"GetItem": 1, "Query": 1},
    }


# -- summaries -------------------------------------------------------------------------

def test_percentile_is_nearest_rank():
    ordered = [float(x) for x in range(1, 101)]
    assert (stats.percentile(ordered, 50), stats.percentile(ordered, 99), stats.percentile([3.0], 99)) == (50, 99, 3)
    assert stats.percentile([], 50) is None


def _sample(round_, peer, rps, endpoint=httpbench.GET_STATUS, connections=64, errors=0):
    return {"round": round_, "endpoint": endpoint, "connections": connections, "peer": peer, "requests": 1,
            "duration_s": 1.0, "rps": rps, "p50_ms": 1.0, "p99_ms": 2.0, "socket_errors": errors, "non_2xx": 0}


def test_ratio_is_the_median_of_per_round_ratios_not_the_ratio_of_medians():
    samples = [_sample(0, "orchestrator", 100), _sample(0, "ceiling", 100),
               _sample(1, "orchestrator", 50), _sample(1, "ceiling", 200),
               _sample(2, "orchestrator", 300), _sample(2, "ceiling", 150)]
    assert httpbench.ratios(samples, ["orchestrator", "ceiling"]) == [{
        "endpoint": "GET /status/<id>", "connections": 64,
        "orchestrator/ceiling": {"median": 1.0, "per_round": [1.0, 0.25, 2.0]}}]


def test_summary_takes_medians_over_rounds_and_adds_errors_up():
    samples = [_sample(0, "ceiling", 100, errors=1), _sample(1, "ceiling", 300, errors=2),
               _sample(2, "ceiling", 200)]
    assert httpbench.summarize(samples, ["ceiling"]) == [{
        "endpoint": "GET /status/<id>", "connections": 64, "peer": "ceiling", "rounds": 3, "rps": 200.0,
        "p50_ms": 1.0, "p99_ms": 2.0, "socket_errors": 3, "non_2xx": 0}]


def test_peers_take_turns_going_first():
    assert [httpbench.rotated(["o", "c", "f"], k) for k in range(4)] == [
        ["o", "c", "f"], ["c", "f", "o"], ["f", "o", "c"], ["o", "c", "f"]]


def test_pinning_puts_servers_and_load_on_different_cpus_and_nothing_without_taskset():
    pinned = Pinning(0, 1, "/usr/bin/taskset")
    assert pinned.server(["python", "x.py"]) == ["/usr/bin/taskset", "-c", "0", "python", "x.py"]
    assert pinned.client(["wrk"]) == ["/usr/bin/taskset", "-c", "1", "wrk"]
    assert Pinning().server(["python", "x.py"]) == ["python", "x.py"]


# -- the command -----------------------------------------------------------------------

def test_quick_preset_and_explicit_options_over_it(tmp_path):
    quick = plan.from_args(["--quick", "--out", str(tmp_path / "q.json")])
    assert (quick.sizes.rounds, quick.sizes.duration, quick.sizes.warmup, quick.sizes.connections) == (
        1, 1.0, 0.0, (1, 16, 64, 256))
    full = plan.from_args(["--rounds", "3", "--connections", "8,32", "--sections", "http"])
    assert (full.sizes.rounds, full.sizes.duration, full.sizes.connections, full.sections) == (
        3, 5.0, (8, 32), ("http",))
    assert full.out.parent == ROOT / "bench" / "results"


def test_bad_usage_exits_2_naming_what_is_accepted():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--connections", "0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "connection counts of at least 1" in out.stderr


def test_a_shrunken_quick_run_prints_the_table_and_writes_the_documented_document(tmp_path):
    out_path = tmp_path / "quick.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--client", "python",
                          "--duration", "0.2", "--connections", "1,8", "--jobs", "50", "--sequential-jobs", "3",
                          "--dynamodb-jobs", "1", "--startup-runs", "1", "--out", str(out_path)],
                         capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(out_path.read_text())
    assert list(doc) == ["benchmark", "format", "started_at", "quick", "sections", "machine", "versions", "http",
                         "jobs", "memory", "dynamodb", "startup", "finished_at", "wall_s", "notes"]
    http = doc["http"]
    assert list(http) == ["client", "client_description", "rounds", "duration_s", "warmup_s", "connections", "peers",
                          "peer_config", "skipped_peers", "summary", "ratios", "samples"]
    assert (http["client"], http["connections"], http["peers"][:2]) == ("python", [1, 8], ["orchestrator", "ceiling"])
    assert len(http["samples"]) == 2 * 2 * len(http["peers"])
    assert list(http["summary"][0]) == ["endpoint", "connections", "peer", "rounds", "rps", "p50_ms", "p99_ms",
                                        "socket_errors", "non_2xx"]
    assert list(http["ratios"][0])[:3] == ["endpoint", "connections", "orchestrator/ceiling"]
    assert all(row["rps"] > 0 and row["socket_errors"] == 0 and row["non_2xx"] == 0 for row in http["summary"])
    assert list(doc["jobs"]) == ["work_ms", "overhead", "throughput"]
    assert (doc["jobs"]["throughput"]["jobs"], doc["jobs"]["throughput"]["failed"]) == (50, 0)
    assert list(doc["memory"]) == ["retained_jobs", "rss_idle_kib", "rss_kib", "rss_mib", "kib_per_retained_job"]
    assert doc["memory"]["retained_jobs"] == 53
    assert doc["dynamodb"]["per_job"]["PutItem"] == {"min": 1, "median": 1, "max": 1}
    assert doc["dynamodb"]["get_item_per_status_poll"] == 1.0
    assert list(doc["startup"]) == ["method", "orchestrator/memory", "orchestrator/dynamodb", "worker"]
    assert "GET /status/<id>" in run.stdout and f"Wrote {out_path}" in run.stdout
