"""The benchmark's outputs: a text table for the terminal, the JSON document, and a PNG
chart of requests per second when matplotlib is importable (it is not a dependency)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
from typing import Any


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def http_table(http: dict[str, Any]) -> list[str]:
    if "skipped" in http:
        return [f"HTTP: skipped ({http['skipped']})"]
    lines = [f"HTTP: {http['client_description']}; {http['rounds']} round(s) x {http['duration_s']:g} s "
             f"(+{http['warmup_s']:g} s warm-up) per cell; medians over rounds; ratio = median of per-round "
             "orchestrator/peer req/s"]
    lines += [f"  {name}: {how}" for name, how in http["peer_config"].items()]
    lines += [f"  {name}: skipped, {why}" for name, why in http["skipped_peers"].items()]
    lines.append(f"  {'endpoint':<22}{'conns':>6}  {'peer':<13}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
                 f"{'sock err':>9}{'non-2xx':>8}{'orch/peer':>10}")
    ratios = {(r["endpoint"], r["connections"]): r for r in http["ratios"]}
    last = None
    for row in http["summary"]:
        cell = (row["endpoint"], row["connections"])
        ratio = ratios[cell].get(f"orchestrator/{row['peer']}", {}).get("median")
        head = f"{row['endpoint']:<22}{row['connections']:>6}" if cell != last else " " * 28
        last = cell
        lines.append(f"  {head}  {row['peer']:<13}{_num(row['rps'], 0):>9}{_num(row['p50_ms']):>9}"
                     f"{_num(row['p99_ms']):>9}{row['socket_errors']:>9}{row['non_2xx']:>8}"
                     f"{(_num(ratio) + 'x') if ratio is not None else '':>10}")
    return lines


def other_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    jobs, memory = doc["jobs"], doc["memory"]
    if "skipped" in jobs:
        lines.append(f"Jobs: skipped ({jobs['skipped']})")
    else:
        o, t = jobs["overhead"], jobs["throughput"]
        lines.append(f"Jobs (WORK_MS=0): overhead p50 {_num(o['p50_ms'], 0)} ms, p90 {_num(o['p90_ms'], 0)} ms, "
                     f"max {_num(o['max_ms'], 0)} ms over {o['jobs']} jobs one at a time; throughput "
                     f"{_num(t['jobs_per_s'], 0)} jobs/s ({_num(t['ms_per_job'])} ms/job) over {t['jobs']:,} jobs, "
                     f"{t['failed']} failed")
        lines.append(f"Memory: orchestrator RSS {_num(memory['rss_mib'], 1)} MiB with {memory['retained_jobs']:,} "
                     f"retained jobs (idle {_num((memory['rss_idle_kib'] or 0) / 1024, 1)} MiB, "
                     f"{_num(memory['kib_per_retained_job'])} KiB per job)")
    d = doc["dynamodb"]
    if "skipped" in d:
        lines.append(f"DynamoDB: skipped ({d['skipped']})")
    else:
        per = d["per_job"]
        lines.append(f"DynamoDB per job (WORK_MS={d['work_ms']}, {d['jobs']} jobs): PutItem "
                     f"{per['PutItem']['median']:g}, UpdateItem {per['UpdateItem']['median']:g} (max "
                     f"{per['UpdateItem']['max']:g}), writes {per['writes']['median']:g} (max "
                     f"{per['writes']['max']:g}); GetItem per status poll {d['get_item_per_status_poll']}; "
                     f"not per job: {d['not_per_job'] or 'none'}")
    s = doc["startup"]
    if "skipped" in s:
        lines.append(f"Start to healthy: skipped ({s['skipped']})")
    else:
        rows = [f"{name} {_num(r.get('median_ms'), 0)} ms" if "skipped" not in r else f"{name} skipped"
                for name, r in s.items() if isinstance(r, dict)]
        runs = next((r["runs"] for r in s.values() if isinstance(r, dict) and "runs" in r), 0)
        lines.append(f"Start to healthy (median of {runs}): " + ", ".join(rows))
    return lines


def text(doc: dict[str, Any]) -> str:
    header = [f"Ghost Engine kernel benchmark, {doc['started_at']}{' (quick)' if doc['quick'] else ''}",
              f"Machine: {doc['machine']['cpus']} CPUs, Python {doc['versions']['python']}; "
              f"pinning: {doc['machine']['pinning']}"]
    return "\n".join([*header, *http_table(doc["http"]), *other_lines(doc), *doc["notes"]])


def write_json(doc: dict[str, Any], path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def write_chart(doc: dict[str, Any], path: pathlib.Path) -> bool:
    """Bars of median req/s per peer, one panel per endpoint; False without matplotlib."""
    http = doc["http"]
    if importlib.util.find_spec("matplotlib") is None or "skipped" in http:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    endpoints = list(dict.fromkeys(r["endpoint"] for r in http["summary"]))
    fig, axes = plt.subplots(1, len(endpoints), figsize=(6 * len(endpoints), 4), squeeze=False)
    width = 0.8 / len(http["peers"])
    for ax, endpoint in zip(axes[0], endpoints, strict=True):
        for i, peer in enumerate(http["peers"]):
            rows = [r for r in http["summary"] if r["endpoint"] == endpoint and r["peer"] == peer]
            ax.bar([k + i * width for k in range(len(rows))], [r["rps"] or 0 for r in rows], width, label=peer)
        ax.set_xticks([k + width * (len(http["peers"]) - 1) / 2 for k in range(len(http["connections"]))],
                      [str(c) for c in http["connections"]])
        ax.set_title(endpoint)
        ax.set_xlabel("connections")
        ax.set_ylabel("requests/s (median of rounds)")
        ax.legend()
    fig.suptitle(f"{doc['started_at']}, {http['client']}, {http['rounds']} round(s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
