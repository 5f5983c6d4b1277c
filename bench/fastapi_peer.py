"""The peer users would pick instead: uvicorn + FastAPI, with the same two routes.

- ``GET /status/{job_id}``: the job from a dict (404 if absent), returned as a dict.
- ``POST /generate-scene``: the body validated by a pydantic model (the orchestrator's rules:
  prompt 1-1000 characters, optional integer seed, optional style up to 64 characters, no
  other fields), stored as a job in the dict; 202 ``{"jobId", "statusUrl"}`` with ``Location``.
- ``GET /healthz``: ``{"ok": true}``.

uvicorn runs with its defaults (one process, its access log on, ``http="auto"`` and
``loop="auto"``: httptools and uvloop only if installed); the harness records which were used.
Neither package is a project dependency: without them the harness skips this peer.

Run: ``PORT=8091 python bench/fastapi_peer.py``.
"""

# No ``from __future__ import annotations``: FastAPI reads the route functions' annotations
# at run time, and the request model is local to ``make_app`` (fastapi is optional).
import importlib.util
import os
import sys
import uuid
from typing import Any

MODULES = ("fastapi", "uvicorn", "pydantic")


def missing() -> str | None:
    """Why this peer cannot run here, or None when it can."""
    absent = [m for m in MODULES if importlib.util.find_spec(m) is None]
    if absent:
        return f"{', '.join(absent)} not importable (pip install fastapi uvicorn to compare with it)"
    return None


def versions() -> dict[str, str | None]:
    """Versions of the peer's packages and of uvicorn's optional speedups (None: absent)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in (*MODULES, "starlette", "httptools", "uvloop"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def make_app() -> Any:
    from datetime import UTC, datetime

    from fastapi import FastAPI, HTTPException
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field

    class SceneRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        prompt: str = Field(min_length=1, max_length=1000)
        seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
        style: str | None = Field(default=None, max_length=64)

    app = FastAPI()
    jobs: dict[str, dict[str, Any]] = {}

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/status/{job_id}")
    def status(job_id: str) -> dict[str, Any]:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job with id {job_id!r}")
        return job

    @app.post("/generate-scene", status_code=202)
    def generate_scene(request: SceneRequest) -> JSONResponse:
        job_id = str(uuid.uuid4())
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        jobs[job_id] = {"jobId": job_id, "state": "queued", "progress": 0.0, "result": None, "error": None,
                        "createdAt": stamp, "updatedAt": stamp, "input": request.model_dump(), "attempts": 0}
        status_url = f"/status/{job_id}"
        return JSONResponse({"jobId": job_id, "statusUrl": status_url}, 202, {"Location": status_url})

    return app


def main() -> int:
    import uvicorn

    uvicorn.run(make_app(), host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8091")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
