"""The HTTP benchmark: ``GET /status/<id>`` and ``POST /generate-scene`` on every peer, at
each connection count, for several rounds.

Each round starts every peer afresh, then for each (endpoint, connections) cell runs the
peers one after the other, in an order rotated by round and cell, so no peer always goes
first: a warm-up run (discarded), then the measured run. Noise on a shared machine comes
in bursts; measured back to back, the peers of one cell see much the same machine, so the
per-round ratio (orchestrator / peer) is steadier than either figure, and the reported
ratio is the median of the per-round ratios. Absolute figures are medians over rounds.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import api
import peers
import stats
from loadgen import LoadGen
from procs import Pinning

GET_STATUS = "GET /status/<id>"
POST_SCENE = "POST /generate-scene"
ENDPOINTS = (GET_STATUS, POST_SCENE)
POST_BODY = json.dumps(api.JOB_BODY).encode("utf-8")


@dataclass(frozen=True)
class MatrixPlan:
    rounds: int
    duration_s: float
    warmup_s: float
    connections: tuple[int, ...]


def rotated(names: list[str], by: int) -> list[str]:
    k = by % len(names)
    return names[k:] + names[:k]


def _request(peer: peers.Peer, endpoint: str) -> tuple[str, str, bytes | None]:
    if endpoint == GET_STATUS:
        return peer.url + peer.status_path, "GET", None
    return peer.url + "/generate-scene", "POST", POST_BODY


def run_round(plan: MatrixPlan, names: list[str], load: LoadGen, log_dir: pathlib.Path, pin: Pinning,
              index: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """One round: start every peer, measure every cell, stop them; the samples measured.
    The round's logs (an access line per request: hundreds of MB over a full run) are
    deleted after a round that went well."""
    started: dict[str, peers.Peer] = {}
    samples = []
    round_logs = log_dir / f"round-{index + 1}"
    round_logs.mkdir()
    try:
        for name in names:
            started[name] = peers.STARTERS[name](round_logs, pin)
        cells = [(e, c) for e in ENDPOINTS for c in plan.connections]
        for cell, (endpoint, connections) in enumerate(cells):
            for name in rotated(names, index + cell):
                url, method, body = _request(started[name], endpoint)
                if plan.warmup_s > 0:
                    load.run(url, method, body, connections, plan.warmup_s)
                result = load.run(url, method, body, connections, plan.duration_s)
                samples.append({"round": index, "endpoint": endpoint, "connections": connections, "peer": name,
                                **asdict(result)})
                say(f"round {index + 1}/{plan.rounds} {endpoint} c={connections} {name}: {result.rps:,.0f} req/s")
    finally:
        for peer in started.values():
            peer.stop()
    shutil.rmtree(round_logs)
    return samples


def summarize(samples: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Per (endpoint, connections, peer): medians over rounds, and errors added up."""
    rows = []
    for endpoint, connections in _cells(samples):
        for name in names:
            mine = [s for s in samples if (s["endpoint"], s["connections"], s["peer"]) == (endpoint, connections, name)]
            rows.append({
                "endpoint": endpoint, "connections": connections, "peer": name, "rounds": len(mine),
                "rps": stats.rounded(stats.median([s["rps"] for s in mine]), 1),
                "p50_ms": stats.rounded(stats.median([s["p50_ms"] for s in mine])),
                "p99_ms": stats.rounded(stats.median([s["p99_ms"] for s in mine])),
                "socket_errors": sum(s["socket_errors"] for s in mine),
                "non_2xx": sum(s["non_2xx"] for s in mine),
            })
    return rows


def ratios(samples: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Per (endpoint, connections): orchestrator req/s over each other peer's, round by round,
    and their median."""
    rows = []
    rounds = sorted({s["round"] for s in samples})
    for endpoint, connections in _cells(samples):
        rps = {(s["peer"], s["round"]): s["rps"] for s in samples
               if (s["endpoint"], s["connections"]) == (endpoint, connections)}
        row: dict[str, Any] = {"endpoint": endpoint, "connections": connections}
        for other in [n for n in names if n != "orchestrator"]:
            per_round = stats.ratios([rps.get(("orchestrator", r)) for r in rounds],
                                     [rps.get((other, r)) for r in rounds])
            row[f"orchestrator/{other}"] = {"median": stats.rounded(stats.median(per_round)),
                                            "per_round": [stats.rounded(x) for x in per_round]}
        rows.append(row)
    return rows


def _cells(samples: list[dict[str, Any]]) -> list[tuple[str, int]]:
    seen: dict[tuple[str, int], None] = {}
    for s in samples:
        seen.setdefault((s["endpoint"], s["connections"]), None)
    return list(seen)


def run(plan: MatrixPlan, load: LoadGen, log_dir: pathlib.Path, pin: Pinning,
        say: Callable[[str], None]) -> dict[str, Any]:
    """Every round, then the summary and the ratios, as the ``http`` part of the output."""
    names, skipped = peers.available()
    samples: list[dict[str, Any]] = []
    for index in range(plan.rounds):
        samples += run_round(plan, names, load, log_dir, pin, index, say)
    return {
        "client": load.kind, "client_description": load.description,
        "rounds": plan.rounds, "duration_s": plan.duration_s, "warmup_s": plan.warmup_s,
        "connections": list(plan.connections), "peers": names, "peer_config": peers.describe(names),
        "skipped_peers": skipped,
        "summary": summarize(samples, names), "ratios": ratios(samples, names), "samples": samples,
    }
