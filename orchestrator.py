"""The orchestrator service: the public API of the Ghost Engine kernel: its configuration,
route table and wiring.

``POST /generate-scene`` validates a job, records it as ``queued`` and answers 202 at
once; ``dispatcher.Dispatcher`` runs it on the worker in the background. ``GET
/status/<jobId>`` reads the job from the store (and may wait for a change), ``GET
/status/<jobId>/events`` streams its changes, ``POST /jobs/<jobId>/cancel`` cancels it,
``GET /jobs`` lists jobs newest first, a page at a time: those handlers are in ``jobapi``.
``GET /healthz`` says the process is up (liveness: it touches nothing else, so the
container healthcheck never kills a task for a store blip); ``GET /readyz`` says its
background loops are doing their work (readiness, for the load balancer's target health).
``GET /openapi.json`` describes the API (``apidoc``). ``GET /`` (and ``/console``) is the web
console: static files that call this API (``webconsole``).

Run: ``python orchestrator.py`` (configuration from the environment; see README).
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apidoc
import awsconfig
import httpserver
import jobapi
import logjson
import store
import webconsole
from config import ConfigError, Env, handle_arguments, service_usage, variables
from dispatcher import DispatchConfig, Dispatcher, IdempotencyKeyReused, QueueFull
from httpkit import HTTPError, JsonHandler, Router
from httpserver import Limits
from leases import lease_problems
from logjson import log
from metrics import JobMetrics, LoadMetrics, LoopMetrics
from watch import JobWatch, ObservedStore, TooManyWaiting
from workerclient import WorkerClient

# With a store other replicas write too, a waiting request reads the job at least this often.
WAIT_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class OrchestratorConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    log_flush_ms: int = 50
    jobs_table_name: str | None = None
    job_ttl_days: int = 7
    memory_max_jobs: int = store.DEFAULT_MEMORY_MAX_JOBS
    limits: Limits = Limits()
    shutdown_grace_seconds: float = 20.0
    environment: str = "local"
    metrics_namespace: str = "GhostEngine"
    dispatch: DispatchConfig = DispatchConfig()
    max_waiting_requests: int = 256
    sse_heartbeat_seconds: float = 15.0
    worker_token: str | None = field(default=None, repr=False)  # sent to the worker; secrets stay out of reprs
    api_token: str | None = field(default=None, repr=False)  # required of API clients when set

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OrchestratorConfig:
        env = Env(environ)
        table = env.text("JOBS_TABLE_NAME", "") or None
        worker_token, api_token = _tokens(env)
        d = DispatchConfig
        dispatch = DispatchConfig(
            worker_url=env.text("WORKER_URL", d.worker_url),
            max_concurrent_jobs=env.integer("MAX_CONCURRENT_JOBS", d.max_concurrent_jobs, minimum=1),
            max_queued_jobs=env.integer("MAX_QUEUED_JOBS", d.max_queued_jobs, minimum=1),
            retry_budget_seconds=env.number("WORKER_RETRY_BUDGET_SECONDS", d.retry_budget_seconds),
            busy_budget_seconds=env.number("WORKER_BUSY_BUDGET_SECONDS", d.busy_budget_seconds),
            retry_backoff_ms=env.integer("RETRY_BACKOFF_MS", d.retry_backoff_ms),
            retry_backoff_max_ms=env.integer("RETRY_BACKOFF_MAX_MS", d.retry_backoff_max_ms),
            worker_connect_timeout_seconds=env.number("WORKER_CONNECT_TIMEOUT_SECONDS",
                                                      d.worker_connect_timeout_seconds, 0.1),
            worker_timeout_seconds=env.number("WORKER_TIMEOUT_SECONDS", d.worker_timeout_seconds, 0.1),
            lease_seconds=env.number("JOB_LEASE_SECONDS", d.lease_seconds),
            max_job_attempts=env.integer("MAX_JOB_ATTEMPTS", d.max_job_attempts, minimum=1),
            # Every step in memory; at most one write a second per job in DynamoDB (cost).
            progress_write_interval_ms=env.integer("PROGRESS_WRITE_INTERVAL_MS", 1000 if table else 0),
            reaper_interval_seconds=env.number("REAPER_INTERVAL_SECONDS", d.reaper_interval_seconds, 0.05),
        )
        problems = lease_problems(dispatch.lease_seconds, dispatch.worker_timeout_seconds,
                                  dispatch.progress_write_interval_ms)
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(
            worker_token=worker_token,
            api_token=api_token,
            host=env.text("HOST", cls.host),
            port=env.port(cls.port),
            log_level=env.level(),
            log_flush_ms=env.integer("LOG_FLUSH_MS", cls.log_flush_ms, maximum=10_000),
            jobs_table_name=table,
            job_ttl_days=env.integer("JOB_TTL_DAYS", cls.job_ttl_days, minimum=1),
            memory_max_jobs=env.integer("MEMORY_MAX_JOBS", cls.memory_max_jobs, minimum=1),
            limits=Limits.from_env(env),
            max_waiting_requests=env.integer("MAX_WAITING_REQUESTS", cls.max_waiting_requests, minimum=1),
            sse_heartbeat_seconds=env.number("SSE_HEARTBEAT_SECONDS", cls.sse_heartbeat_seconds, 0.1),
            shutdown_grace_seconds=env.number("SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds),
            environment=env.text("ENVIRONMENT", cls.environment),
            metrics_namespace=env.text("METRICS_NAMESPACE", cls.metrics_namespace),
            dispatch=dispatch,
        )


def _tokens(env: Env) -> tuple[str | None, str | None]:
    """``(WORKER_TOKEN, API_TOKEN)``; they must differ, or an API client could call the worker."""
    worker_token, api_token = env.secret("WORKER_TOKEN"), env.secret("API_TOKEN")
    if api_token is not None and api_token == worker_token:
        raise ConfigError("API_TOKEN and WORKER_TOKEN must differ: an API client must not be able to call the worker")
    return worker_token, api_token


@dataclass
class Orchestrator:
    """The orchestrator's application state, shared by all request threads."""

    config: OrchestratorConfig
    store: store.JobStore
    dispatcher: Dispatcher
    watch: JobWatch
    api_document: apidoc.ApiDocument = field(default_factory=apidoc.load)  # read at start: a bad file stops it
    console: webconsole.Console = field(default_factory=webconsole.load)  # the same


def healthz(_h: JsonHandler) -> tuple[int, dict[str, Any]]:
    return 200, {"ok": True}


def readyz(h: OrchestratorHandler) -> tuple[int, dict[str, Any]]:
    """200 while the reaper, the lease keeper and the dispatch threads do their work; else
    503 naming the parts that do not. Read from memory: no store request per probe."""
    ready, parts = h.app.dispatcher.readiness()
    if ready:
        return 200, {"ok": True, "loops": parts}
    failing = sorted(name for name, part in parts.items() if not part["ok"])
    message = f"not ready: {', '.join(failing)} not working; see the service log"
    return 503, {"ok": False, "error": {"code": "not_ready", "message": message}, "loops": parts}


ROUTES: dict[tuple[str, str], Callable[..., Any]] = {
    ("POST", "/generate-scene"): jobapi.generate_scene,
    ("GET", "/status/{job_id}"): jobapi.job_status,
    ("GET", "/status/{job_id}/events"): jobapi.job_events,
    ("POST", "/jobs/{job_id}/cancel"): jobapi.cancel_job,
    ("GET", "/jobs"): jobapi.list_jobs,
    ("GET", "/healthz"): healthz,
    ("GET", "/readyz"): readyz,
    ("GET", "/openapi.json"): apidoc.serve,
    # The web console's files (webconsole.FILES): the page, its module, style and icon.
    ("GET", "/"): webconsole.serve,
    ("GET", "/console"): webconsole.serve,
    ("GET", "/console/app.js"): webconsole.serve,
    ("GET", "/console/app.css"): webconsole.serve,
    ("GET", "/console/icon.svg"): webconsole.serve,
    ("GET", "/favicon.ico"): webconsole.serve,
}


# Error bodies name no table, endpoint or exception class: the request's log line has those.
def _unavailable(_exc: BaseException) -> HTTPError:
    return HTTPError(503, "store_unavailable", "the job store is unavailable; retry shortly", {"Retry-After": "1"})


def _full(_exc: BaseException) -> HTTPError:
    return HTTPError(503, "store_full", "this orchestrator holds its maximum of active jobs; retry shortly",
                     {"Retry-After": "1"})


def _misconfigured(_exc: BaseException) -> HTTPError:
    return HTTPError(500, "store_misconfigured", "the job store is not set up; see the service log for this requestId")


def _queue_full(_exc: BaseException) -> HTTPError:
    return HTTPError(503, "queue_full", "too many jobs are waiting; retry in a few seconds", {"Retry-After": "5"})


class OrchestratorHandler(JsonHandler):
    router = Router(ROUTES)
    error_map = {store.StoreUnavailable: _unavailable, store.StoreFull: _full,
                 store.StoreMisconfigured: _misconfigured, QueueFull: _queue_full,
                 IdempotencyKeyReused: jobapi.idempotency_key_reused, TooManyWaiting: jobapi.too_many_waiting}
    # Open even with API_TOKEN: the ALB's and ECS's health checks, the API's description, and
    # the console's files (the page asks for the token; the API calls it makes carry it).
    public_paths = frozenset({"/healthz", "/readyz", "/openapi.json", *webconsole.FILES})

    def bearer_token(self) -> str | None:
        return self.app.config.api_token


def open_store(config: OrchestratorConfig) -> store.JobStore:
    """The DynamoDB store when ``JOBS_TABLE_NAME`` is set, else the in-memory one."""
    if not config.jobs_table_name:
        return store.MemoryStore(max_jobs=config.memory_max_jobs)
    import dynamostore  # here, not at the top: boto3 stays off the in-memory start path

    return dynamostore.DynamoStore(config.jobs_table_name, ttl_seconds=config.job_ttl_days * 86400)


def build(config: OrchestratorConfig) -> Orchestrator:
    """Wire the store, the worker client and the dispatcher from the configuration. The
    store is observed: every write made here wakes the requests waiting on that job."""
    backend = open_store(config)
    watch = JobWatch(backend, WAIT_POLL_SECONDS if backend.shared else None, config.max_waiting_requests)
    job_store = ObservedStore(backend, watch)
    d = config.dispatch
    client = WorkerClient(d.worker_url, d.worker_connect_timeout_seconds, d.worker_timeout_seconds, config.worker_token)
    owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    job_metrics = JobMetrics(config.metrics_namespace, "orchestrator", config.environment)
    loop_metrics = LoopMetrics(config.metrics_namespace, "orchestrator", config.environment)
    load_metrics = LoadMetrics(config.metrics_namespace, "orchestrator", config.environment)
    dispatcher = Dispatcher(job_store, client, d, owner, job_metrics.job_finished, loop_metrics.loop_failed,
                            load_metrics.sampled)
    return Orchestrator(config, job_store, dispatcher, watch)


def check_store(job_store: store.JobStore) -> None:
    """Refuse to start on a store that cannot work (a missing table: ``StoreMisconfigured``);
    start anyway when it is unreachable now, or failed some other way (no AWS credentials
    yet, say): it may come back, and ``/readyz`` shows the reaper failing until it does."""
    try:
        job_store.check()
    except store.StoreUnavailable as exc:
        log.warning("job store unreachable at start; serving anyway", reason=str(exc))
    except store.StoreMisconfigured:
        raise
    except Exception as exc:  # e.g. botocore's NoCredentialsError: logged, not a crash at start
        log.error("job store check failed at start; serving anyway", exc=exc)


def usage() -> str:
    """``python orchestrator.py --help``: every variable ``from_env`` reads, with its default."""
    return service_usage("orchestrator.py", "The Ghost Engine orchestrator: the public job API.\nConfigured by "
                        "environment variables only (README \"Configuration\").",
                        [("Environment (default):", variables(OrchestratorConfig.from_env,
                                                                      {"JOBS_TABLE_NAME": "jobs"})),
                         ("AWS, with JOBS_TABLE_NAME (README \"AWS settings\"):", awsconfig.VARIABLES)])


def main(environ: Mapping[str, str] = os.environ, argv: Sequence[str] = ()) -> int:
    answered = handle_arguments(argv, "orchestrator.py", usage)
    if answered is not None:
        return answered
    logjson.configure("orchestrator")
    try:
        config = OrchestratorConfig.from_env(environ)
        app = build(config)
        check_store(app.store)
    except (ConfigError, ValueError, store.StoreMisconfigured) as exc:  # ValueError: WORKER_URL
        log.error("invalid configuration", reason=str(exc))
        return 2
    logjson.configure("orchestrator", config.log_level, flush_ms=config.log_flush_ms)
    try:
        server = httpserver.Server((config.host, config.port), OrchestratorHandler, app, config.limits)
    except httpserver.ListenError as exc:
        log.error("cannot listen", reason=str(exc))
        return 2
    # DynamoDB: the region it is in, and the endpoint when overridden (None values are left out).
    where: dict[str, str | None] = getattr(app.store, "location", dict)()
    log.info("store selected", store="dynamodb" if config.jobs_table_name else "memory",
             table=config.jobs_table_name, **where, workerUrl=config.dispatch.worker_url)
    app.dispatcher.start()  # after the line above: its first load sample is logged at once
    return httpserver.serve(server, lambda: app.dispatcher.stop(config.shutdown_grace_seconds))


if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
