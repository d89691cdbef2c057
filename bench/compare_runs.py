"""Compare every stored result of two run folders, step by step: "a refactor changes no number".

Steps are matched by section and name (their keys change when the key derivation does); each
result's fields and arrays are compared exactly, except the ones that measure the machine
(times, memory, thread counts, file paths), which are listed separately.

    python bench/compare_runs.py RUN_BEFORE RUN_AFTER
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np

# Fields that measure the run, not the science: they differ between two runs of the same code.
MACHINE_SUFFIXES = ("_s", "_mb", "_s_per_10k")
# model_sha256: a skops file is a zip archive, whose entries carry the time they were written.
MACHINE_FIELDS = {"seconds", "threads", "weights_file", "train_pid", "model_sha256"}


def _is_machine_field(path: str) -> bool:
    leaf = path.rsplit(".", 1)[-1].split("[")[0]  # "history.seconds[3]" -> seconds
    return leaf in MACHINE_FIELDS or leaf.endswith(MACHINE_SUFFIXES)


def load_steps(folder: Path) -> dict[tuple[str, str], tuple[dict, dict]]:
    with sqlite3.connect(folder / "study.sqlite") as db:
        keys = json.loads(db.execute("SELECT step_keys FROM studies WHERE status='done' "
                                     "ORDER BY id DESC LIMIT 1").fetchone()[0])
        steps = {}
        for key in keys:
            section, name, metrics, arrays_file = db.execute(
                "SELECT section, name, metrics, arrays_file FROM steps WHERE key=?",
                (key,)).fetchone()
            arrays = {}
            if arrays_file:
                with np.load(folder / "arrays" / arrays_file) as npz:
                    arrays = {k: npz[k] for k in npz.files}
            steps[(section, name)] = (json.loads(metrics), arrays)
    return steps


def step_keys(folder: Path) -> dict[tuple[str, str], str]:
    """Each step's cache key, by section and name, in the last finished study."""
    with sqlite3.connect(folder / "study.sqlite") as db:
        keys = json.loads(db.execute("SELECT step_keys FROM studies WHERE status='done' "
                                     "ORDER BY id DESC LIMIT 1").fetchone()[0])
        return {tuple(db.execute("SELECT section, name FROM steps WHERE key=?",
                                 (key,)).fetchone()): key for key in keys}


def _diff(a, b, path: str, out: list[tuple[str, str]]) -> None:
    """(path, what differs) for every leaf that differs between ``a`` and ``b``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append((f"{path}.{k}", f"only in {'after' if k not in a else 'before'}"))
            else:
                _diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append((path, f"length {len(a)} -> {len(b)}"))
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and np.isnan(a)
                         and np.isnan(b)):
        out.append((path, f"{a!r} -> {b!r}"))


def compare(before: Path, after: Path) -> tuple[list[str], list[str], int]:
    """(differences in results, differences in machine measurements, values compared)."""
    a, b = load_steps(before), load_steps(after)
    science, machine, n = [], [], 0
    for step in sorted(set(a) | set(b)):
        label = ".".join(step)
        if step not in a or step not in b:
            science.append(f"{label}: only in {'after' if step not in a else 'before'}")
            continue
        (fa, xa), (fb, xb) = a[step], b[step]
        diffs: list[tuple[str, str]] = []
        _diff(fa, fb, label, diffs)
        n += len(json.dumps(fa))
        for name in sorted(set(xa) | set(xb)):
            if name not in xa or name not in xb or xa[name].shape != xb[name].shape or \
                    not np.array_equal(xa[name], xb[name], equal_nan=True):
                diffs.append((f"{label}.{name}", "array differs"))
        for path, what in diffs:
            (machine if _is_machine_field(path) else science).append(f"{path}: {what}")
    return science, machine, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--show-machine", action="store_true",
                        help="also list the timing/memory fields that differ")
    args = parser.parse_args()
    science, machine, _ = compare(args.before, args.after)
    steps = len(load_steps(args.before))
    print(f"{steps} steps compared; {len(science)} result difference(s), {len(machine)} "
          f"machine-measurement difference(s) (times, memory, paths)")
    keys_a, keys_b = step_keys(args.before), step_keys(args.after)
    changed = sorted(".".join(s) for s in set(keys_a) & set(keys_b) if keys_a[s] != keys_b[s])
    print(f"step keys: {len(set(keys_a) & set(keys_b)) - len(changed)} equal, "
          f"{len(changed)} changed")
    for line in changed:
        print("  KEY    ", line)
    for line in science:
        print("  RESULT ", line)
    if args.show_machine:
        for line in machine:
            print("  machine", line)
    return 1 if science else 0


if __name__ == "__main__":
    sys.exit(main())
