"""Benchmark of the Dask executor: a study in-process vs on a local cluster, and what more
workers could buy.

    .venv/bin/python bench/cluster.py [--dataset fashion-mnist] [--profile full] [--workers 2]

In one run on this machine: the same study (fresh run folders) in-process, then with
`--workers N`; prints both wall times and their ratio. Then, from the in-process run's stored
per-step wall times and the plan's dependencies: the total work, the critical path (the
graph's own limit), and the wall time a greedy scheduler would reach with 4, 16 and 64
workers, each step taking the time it took in-process (optimistic: a step that used both
cores in-process takes longer on a one-thread worker); then the same from the workers run's
one-thread step times (what a cluster of one-thread workers would see).
"""

from __future__ import annotations

import argparse
import heapq
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnistlab import load_config, load_dataset, plan_study


def _study(dataset: str, profile: str, out: Path, extra: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mnistlab", "study", "--dataset", dataset,
                    "--profile", profile, "--quiet", "--out", str(out), *extra], check=True)
    return time.perf_counter() - started


def _graph(dataset: str, profile: str, out: Path) -> tuple[dict, dict, list[str]]:
    """Per step key: its in-process wall time, and the keys it needs; keys in plan order."""
    data = load_dataset(dataset)
    planned = plan_study(data, load_config(None, profile=profile))
    with sqlite3.connect(out / "study.sqlite") as db:
        wall = dict(db.execute("SELECT key, wall_s FROM steps"))
    needs = {}
    for item in planned:
        keys = [v for v in item.needed_keys.values() if isinstance(v, str)]
        keys += [k for v in item.needed_keys.values() if isinstance(v, dict) for k in v.values()]
        needs[item.key] = keys
    return {k: wall.get(k) or 0.0 for k in needs}, needs, [p.key for p in planned]


def critical_path(wall: dict, needs: dict, order: list[str]) -> float:
    finish: dict[str, float] = {}
    for key in order:  # the plan lists every step after the steps it needs
        finish[key] = wall[key] + max((finish[k] for k in needs[key]), default=0.0)
    return max(finish.values())


def greedy_wall(wall: dict, needs: dict, order: list[str], workers: int) -> float:
    """List scheduling: whenever a worker is free, it takes the first ready step in plan
    order."""
    done_at: dict[str, float] = {}
    free = [0.0] * workers
    waiting = list(order)
    clock = 0.0
    running: list[tuple[float, str]] = []
    while waiting or running:
        ready = [k for k in waiting if all(n in done_at and done_at[n] <= clock
                                           for n in needs[k])]
        while ready and free:
            free.pop()
            key = ready.pop(0)
            waiting.remove(key)
            heapq.heappush(running, (clock + wall[key], key))
        end, key = heapq.heappop(running)
        clock = end
        done_at[key] = end
        free.append(end)
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    here = _study(args.dataset, args.profile, root / "in-process", [])
    there = _study(args.dataset, args.profile, root / "workers",
                   ["--workers", str(args.workers)])
    print(f"{args.dataset}, profile {args.profile}, run folders in {root}")
    print(f"in-process:            {here:8.1f} s")
    print(f"--workers {args.workers}:           {there:8.1f} s")
    print(f"speed-up:              {here / there:8.2f}x")
    for run, what in (("in-process", "in-process step times (all cores per step)"),
                      ("workers", "one-thread step times (as on a cluster's workers)")):
        wall, needs, order = _graph(args.dataset, args.profile, root / run)
        total = sum(wall.values())
        path = critical_path(wall, needs, order)
        print(f"\nfrom the {what}:")
        print(f"steps: {len(order)}, total work {total:.1f} s, critical path {path:.1f} s "
              f"(no number of workers goes below it)")
        for workers in (args.workers, 4, 16, 64):
            estimate = greedy_wall(wall, needs, order, workers)
            print(f"{workers:>3} workers, greedy schedule: {estimate:8.1f} s "
                  f"({here / estimate:.2f}x the in-process wall time)")
        longest = sorted(wall.items(), key=lambda kv: -kv[1])[:5]
        names = {p.key: f"{p.section}.{p.step.name}" for p in
                 plan_study(load_dataset(args.dataset), load_config(None, profile=args.profile))}
        print("longest steps: " + ", ".join(f"{names[k]} {w:.1f} s" for k, w in longest))


if __name__ == "__main__":
    from results import recorded  # bench/results.py: this script's part of RESULTS.md

    with recorded("bench/cluster.py"):
        main()
