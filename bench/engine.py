"""Does the accelerated engine change what the study reports? Every stored number of a study on
scikit-learn-intelex against the seed-to-seed spread of the same study on scikit-learn.

    .venv/bin/python bench/engine.py [--dataset mnist-5k] [--profile full] [--seeds 0,1,2,3]
                                     [--keep DIR]

Runs the study with ``--engine sklearn`` once per seed and with ``--engine sklearnex`` on the
first seed, one after the other, in fresh run folders. For every number both engines stored
(bench/compare_runs.py's leaves; times, memory and paths aside) the spread is the range of the
scikit-learn values over the seeds; a number "moved" when the sklearnex value is further from
scikit-learn's on the same seed than that range. Prints the counts, every number that moved,
and the wall time and the classic and unsupervised sections' step time of both engines on the
first seed. Then, on ``--svc-dataset`` (default fashion-mnist), the RBF SVC of the leaderboard
(PCA-100 of sqrt(pixels), C=10) fitted by oneDAL and the time to predict the test set three
ways: oneDAL's predict, mnistlab's BLAS predictor on the model converted to scikit-learn (what
a saved model runs), and libsvm's (scikit-learn's own); labels compared. Run nothing else
beside it.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_runs import _is_machine_field, load_steps  # noqa: E402
from results import recorded  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _study(dataset: str, profile: str, seed: int, engine: str, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mnistlab", "study", "--dataset", dataset,
                    "--profile", profile, "--seed", str(seed), "--engine", engine, "--quiet",
                    "--out", str(out)], check=True, cwd=ROOT)
    return time.perf_counter() - started


def _numbers(value, path: str, out: dict[str, float]) -> None:
    """Every numeric leaf of a stored result, by path."""
    if isinstance(value, dict):
        for k, v in value.items():
            _numbers(v, f"{path}.{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _numbers(v, f"{path}[{i}]", out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not _is_machine_field(path):
            out[path] = float(value)


def stored_numbers(folder: Path) -> dict[str, float]:
    numbers: dict[str, float] = {}
    for (section, name), (metrics, _) in load_steps(folder).items():
        _numbers(metrics, f"{section}.{name}", numbers)
    return numbers


def section_seconds(folder: Path) -> dict[str, float]:
    with sqlite3.connect(folder / "study.sqlite") as db:
        rows = db.execute("SELECT section, SUM(wall_s) FROM steps WHERE status='done' "
                          "GROUP BY section").fetchall()
    return dict(rows)


def svc_predictors(dataset: str) -> None:
    """Fit time of the leaderboard's RBF SVC by oneDAL, and three ways to predict with it."""
    import numpy as np
    from sklearnex.svm import SVC as OneDalSVC

    from mnistlab import load_dataset
    from mnistlab.data.prepare import PcaProjection, flat_pixels
    from mnistlab.models.fitting import to_sklearn
    from mnistlab.models.svc import SVC

    data = load_dataset(dataset)
    x, xt = np.sqrt(flat_pixels(data.x_train)), np.sqrt(flat_pixels(data.x_test))
    projection = PcaProjection(x, 100)
    z, zt = projection.transform(x, 100), projection.transform(xt, 100)
    started = time.perf_counter()
    twin = OneDalSVC(C=10, cache_size=1000).fit(z, data.y_train)
    fit_s = time.perf_counter() - started
    plain = to_sklearn(twin, SVC(C=10, cache_size=1000))
    print(f"\n### The RBF SVC's prediction, {dataset}: {len(z):,} training images, PCA-100 of "
          f"sqrt(pixels), C=10, {int(plain.n_support_.sum()):,} support vectors; oneDAL's "
          f"fit {fit_s:.1f} s\n")
    print("| predictor (10,000 test images) | seconds | test accuracy | labels as oneDAL's |")
    print("|---|---|---|---|")
    reference = None
    for label, predict in (("oneDAL (sklearnex's predict)", twin.predict),
                           ("mnistlab BLAS predictor (the saved model)", plain.predict),
                           ("libsvm (scikit-learn's predict)",
                            lambda a: super(SVC, plain).predict(a))):
        started = time.perf_counter()
        labels = predict(zt)
        seconds = time.perf_counter() - started
        reference = labels if reference is None else reference
        print(f"| {label} | {seconds:.2f} | {np.mean(labels == data.y_test):.4f} | "
              f"{np.mean(labels == reference):.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    parser.add_argument("--svc-dataset", default="fashion-mnist",
                        help="dataset of the SVC predictors' race ('' skips it)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    parent = args.keep or Path(tempfile.mkdtemp(prefix="mnistlab-bench-engine-"))
    parent.mkdir(parents=True, exist_ok=True)
    walls, folders = {}, {}
    for engine, engine_seeds in (("sklearnex", seeds[:1]), ("sklearn", seeds)):
        for seed in engine_seeds:
            folders[engine, seed] = parent / f"{args.dataset}-{args.profile}-{engine}-seed{seed}"
            walls[engine, seed] = _study(args.dataset, args.profile, seed, engine,
                                         folders[engine, seed])
    first = seeds[0]
    fast = stored_numbers(folders["sklearnex", first])
    by_seed = {seed: stored_numbers(folders["sklearn", seed]) for seed in seeds}
    paths = sorted(set(fast) & set.intersection(*(set(n) for n in by_seed.values())))
    equal, within, moved = 0, 0, []
    for path in paths:
        values = [by_seed[s][path] for s in seeds]
        spread = max(values) - min(values)
        change = abs(fast[path] - by_seed[first][path])
        if change == 0:
            equal += 1
        elif change <= spread:
            within += 1
        else:
            moved.append((path, by_seed[first][path], fast[path], min(values), max(values)))
    print(f"## bench/engine.py: {args.dataset}, {args.profile} profile, seeds {args.seeds}\n")
    print(f"{len(paths):,} numbers stored by both engines (times, memory and paths aside): "
          f"{equal:,} equal, {within:,} changed within scikit-learn's seed-to-seed range, "
          f"{len(moved):,} beyond it.\n")
    seconds = {engine: section_seconds(folders[engine, first]) for engine in ("sklearn",
                                                                              "sklearnex")}
    print("| seed " + str(first) + " | wall (s) | classic steps (s) | unsupervised steps (s) |")
    print("|---|---|---|---|")
    for engine in ("sklearn", "sklearnex"):
        print(f"| {engine} | {walls[engine, first]:.1f} | "
              f"{seconds[engine].get('classic', 0):.1f} | "
              f"{seconds[engine].get('unsupervised', 0):.1f} |")
    if moved:
        print("\nBeyond the seed range (number: sklearn seed "
              f"{first} -> sklearnex seed {first}; sklearn's range over the seeds):\n")
        for path, before, after, low, high in moved:
            print(f"- `{path}`: {before:.6g} -> {after:.6g} (range {low:.6g} .. {high:.6g})")
    if not args.keep:
        print(f"\n(run folders in {parent})")
    if args.svc_dataset:
        svc_predictors(args.svc_dataset)


if __name__ == "__main__":
    with recorded("bench/engine.py"):
        main()
