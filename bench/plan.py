"""What a benchmark run does, from its command line: the full run's sizes, the ``--quick``
preset (a smoke check in under a minute), and explicit options over either."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

from loadgen import CLIENTS

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
SECTIONS = ("http", "jobs", "dynamodb", "startup")


@dataclass(frozen=True)
class Sizes:
    rounds: int = 5
    duration: float = 5.0
    warmup: float = 1.0
    connections: tuple[int, ...] = (1, 16, 64, 256)
    jobs: int = 10_000
    sequential_jobs: int = 200
    dynamodb_jobs: int = 8
    startup_runs: int = 10


FULL = Sizes()
QUICK = Sizes(rounds=1, duration=1.0, warmup=0.0, jobs=1_000, sequential_jobs=20, dynamodb_jobs=2, startup_runs=3)


@dataclass(frozen=True)
class Plan:
    quick: bool
    out: pathlib.Path
    client: str
    pin_enabled: bool
    sections: tuple[str, ...]
    sizes: Sizes


def _number(kind: Callable[[str], float], minimum: float, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


def _connections(text: str) -> tuple[int, ...]:
    one = _number(int, 1, "connection counts of at least 1, separated by commas")
    return tuple(int(one(x)) for x in text.split(","))


def _sections(text: str) -> tuple[str, ...]:
    values = tuple(s for s in text.split(",") if s)
    if not values or set(values) - set(SECTIONS):
        raise argparse.ArgumentTypeError(f"expected some of {','.join(SECTIONS)}, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    count = _number(int, 1, "an integer of at least 1")
    seconds = _number(float, 0.1, "a number of seconds, at least 0.1")
    p = argparse.ArgumentParser(prog="python bench/run.py", description=(
        "Benchmark the orchestrator against a bare stdlib server and uvicorn + FastAPI, and measure jobs end to "
        "end, DynamoDB requests per job, start-up time and memory. Prints a table and writes JSON (and a PNG "
        "chart when matplotlib is importable)."))
    p.add_argument("--quick", action="store_true", help="a smoke run in under a minute: 1 round of 1 s, fewer jobs")
    p.add_argument("--out", type=pathlib.Path, help="JSON output path (default: bench/results/<UTC time>.json)")
    p.add_argument("--client", choices=CLIENTS, default="auto", help="load generator (default auto: wrk if installed)")
    p.add_argument("--no-pin", dest="pin_enabled", action="store_false", help="do not pin with taskset")
    p.add_argument("--sections", type=_sections, default=SECTIONS, help=f"default: {','.join(SECTIONS)}")
    p.add_argument("--rounds", type=count, help=f"HTTP rounds (full {FULL.rounds}, quick {QUICK.rounds})")
    p.add_argument("--duration", type=seconds, help=f"seconds measured per cell (full {FULL.duration:g}, "
                                                    f"quick {QUICK.duration:g})")
    p.add_argument("--warmup", type=_number(float, 0, "seconds, 0 or more"),
                   help=f"seconds of warm-up per cell (full {FULL.warmup:g}, quick {QUICK.warmup:g})")
    p.add_argument("--connections", type=_connections, help="comma-separated (default 1,16,64,256)")
    p.add_argument("--jobs", type=count, help=f"jobs for throughput and memory (full {FULL.jobs}, quick {QUICK.jobs})")
    p.add_argument("--sequential-jobs", type=count, help=f"jobs run one at a time for the overhead (full "
                                                         f"{FULL.sequential_jobs}, quick {QUICK.sequential_jobs})")
    p.add_argument("--dynamodb-jobs", type=count, help=f"jobs counted against moto (full {FULL.dynamodb_jobs}, "
                                                       f"quick {QUICK.dynamodb_jobs})")
    p.add_argument("--startup-runs", type=count, help=f"starts per service and mode (full {FULL.startup_runs}, "
                                                      f"quick {QUICK.startup_runs})")
    return p


def from_args(argv: list[str] | None = None) -> Plan:
    args = parser().parse_args(argv)
    chosen = {f.name: getattr(args, f.name) for f in dataclasses.fields(Sizes) if getattr(args, f.name) is not None}
    sizes = dataclasses.replace(QUICK if args.quick else FULL, **chosen)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"{stamp}{'-quick' if args.quick else ''}.json"
    return Plan(args.quick, out, args.client, args.pin_enabled, args.sections, sizes)
