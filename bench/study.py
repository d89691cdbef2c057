"""Benchmark of the whole study: this checkout against an earlier commit, back to back.

    .venv/bin/python bench/study.py --against REV [--dataset fashion-mnist] [--profile full]
                                    [--keep DIR] [--part NAME]

Checks REV out in a git worktree (under the system's temporary folder) and runs
`mnistlab study` there and here, one after the other, in-process, on the same data, each into a
fresh run folder and each in a fresh process (REV's code first on the Python path). Prints per
step (matched by section and name): the wall time and peak memory at REV and here, and the
ratio; then the totals (the command's wall time, the process tree's peak RSS) and every stored
metric that changed (bench/compare_runs.py's rules: times, memory and paths aside).

Both runs share this venv and numba's on-disk cache: a warm-up study on the 8x8 digits (quick
profile, not timed) compiles UMAP's kernels first, so that neither run pays for it. Run nothing
else beside it: the two studies' times are compared with each other.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_runs import compare  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _study(src: Path, dataset: str, profile: str, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, the largest process of the study's tree) of one study
    run with the package found in ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "mnistlab", "study", "--dataset", dataset,
                              "--profile", profile, "--quiet", "--out", str(out)], env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench/study.py: the study at {src} failed (exit "
                 f"{os.waitstatus_to_exitcode(status)})")
    # ru_maxrss of the waited child covers the study process and the children it waited for
    # (the networks' training processes): the largest of them, not their sum.
    return wall, usage.ru_maxrss / 1024


def _steps(out: Path) -> dict[str, tuple[float, float]]:
    """section.name -> (wall s, peak RSS MiB) of the study's steps."""
    with sqlite3.connect(out / "study.sqlite") as db:
        rows = db.execute("SELECT section, name, wall_s, peak_rss_mb FROM steps "
                          "WHERE status='done'").fetchall()
    return {f"{section}.{name}": (wall or 0.0, peak or 0.0) for section, name, wall, peak in rows}


def _worktree(rev: str, where: Path) -> str:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], check=True,
                            capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(where),
                    commit], check=True, capture_output=True)
    return commit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--top", type=int, default=30, help="steps listed (longest first)")
    parser.add_argument("--part", help="name of this comparison's part of RESULTS.md (default: "
                        "the script's one part)")
    parser.add_argument("--keep", type=Path, help="copy both run folders here (before/, after/)")
    args = parser.parse_args()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          check=True, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src"],
                           capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="mnistlab-bench-") as scratch:
        scratch = Path(scratch)
        base = _worktree(args.against, scratch / "base")
        try:
            _study(REPO / "src", "digits", "quick", scratch / "warm-up")
            before = _study(scratch / "base" / "src", args.dataset, args.profile,
                            scratch / "before")
            after = _study(REPO / "src", args.dataset, args.profile, scratch / "after")
            print(f"study --dataset {args.dataset} --profile {args.profile}, in-process, "
                  f"{os.cpu_count()} cores; {base} (before) vs {head}{' + changes' if dirty else ''}"
                  f" (after)")
            a, b = _steps(scratch / "before"), _steps(scratch / "after")
            longest = sorted(set(a) | set(b), key=lambda s: -max(a.get(s, (0, 0))[0],
                                                                 b.get(s, (0, 0))[0]))
            print(f"{'step':34s} {'before s':>9s} {'after s':>9s} {'ratio':>6s} "
                  f"{'before MiB':>10s} {'after MiB':>10s}")
            for name in longest[:args.top]:
                (wa, ma), (wb, mb) = a.get(name, (0.0, 0.0)), b.get(name, (0.0, 0.0))
                ratio = f"{wb / wa:6.2f}" if wa and wb else "     -"
                print(f"{name:34s} {wa:9.1f} {wb:9.1f} {ratio} {ma:10.0f} {mb:10.0f}")
            rest = longest[args.top:]
            if rest:
                print(f"{f'({len(rest)} more steps)':34s} "
                      f"{sum(a.get(s, (0, 0))[0] for s in rest):9.1f} "
                      f"{sum(b.get(s, (0, 0))[0] for s in rest):9.1f}")
            print(f"{'sum of step times':34s} {sum(w for w, _ in a.values()):9.1f} "
                  f"{sum(w for w, _ in b.values()):9.1f} "
                  f"{sum(w for w, _ in b.values()) / sum(w for w, _ in a.values()):6.2f}")
            print(f"{'whole study (wall, peak RSS)':34s} {before[0]:9.1f} {after[0]:9.1f} "
                  f"{after[0] / before[0]:6.2f} {before[1]:10.0f} {after[1]:10.0f}")
            science, _, _ = compare(scratch / "before", scratch / "after")
            print(f"\n{len(a)} steps before, {len(b)} after; {len(science)} stored result(s) "
                  "differ:")
            for line in science:
                print("  ", line)
            if args.keep:
                for name in ("before", "after"):
                    shutil.copytree(scratch / name, args.keep / name, dirs_exist_ok=True)
                print(f"run folders kept in {args.keep}")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(scratch / "base")], capture_output=True)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this script's own peak RSS: {own:.0f} MiB)")
    return 0


if __name__ == "__main__":
    from results import recorded  # bench/results.py: this script's part of RESULTS.md

    part = sys.argv[sys.argv.index("--part") + 1] if "--part" in sys.argv else None
    with recorded("bench/study.py", part):
        status = main()
    sys.exit(status)
