"""Benchmark of the classic-classifiers section against the seed's way, in one run.

    .venv/bin/python bench/classic.py [--dataset fashion-mnist] [--seed-parts svc,depth,...]

ours: the section's `full` profile, every step timed, in its own process (peak RSS its own).
seed: what the seed's part 3 did, on all training images scaled to 0..1 float64 as the seed
      scaled them, each part in its own process (libsvm and the tree fit use one core):
      svc       SVC() on the 784 pixels, scored on the test set;
      depth     DecisionTreeClassifier(max_depth=d) refitted for d = 1..19, train and test scored;
      svc_pca   PCA(n) then SVC() for n in 10, 20, 30, 40, 50, 100, 200, train and test scored;
      kernels   SVC(kernel=k) on the pixels for the four kernels, test scored;
      tree_pca  PCA(n) then DecisionTreeClassifier(max_depth=10) (the depth the seed chose)
                for n in 1, 2, 3, 5, 10, 20, ..., 100, train and test scored.
      Default: svc,depth (about 8 minutes); all five take well over an hour.
Each seed part is compared with the step of ours that answers the same question, and printed as
soon as it finishes. If scikit-learn-intelex is installed, `--intelex` adds a
second "ours" run with `--engine sklearnex`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

SEED_PARTS = ("svc", "depth", "svc_pca", "kernels", "tree_pca")
# the step of ours that answers the same question as each seed part
OURS_FOR = {"svc": "model:svc-rbf", "depth": "tree_depth", "svc_pca": "svc_pca",
            "kernels": "svc_kernels", "tree_pca": "tree_pca"}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(dataset: str, engine: str) -> dict:
    import tempfile
    from pathlib import Path

    from mnistlab import build_config, load_dataset
    from mnistlab.engine.plan import per_argument
    from mnistlab.sections import classic

    data = load_dataset(dataset)
    params = build_config("full").classic
    results, times = {}, {}
    files = Path(tempfile.mkdtemp(prefix="mnistlab-bench-classic-")) / "models"
    started = time.perf_counter()
    for step in classic.plan(data, params, seed=0, engine=engine):
        inputs = per_argument(step.needs, results.__getitem__)
        if step.files:
            inputs.update(files_dir=files, files_key=step.name.replace(":", "-"))
        t0 = time.perf_counter()
        results[step.name] = step(data, **inputs)
        times[step.name] = time.perf_counter() - t0
    models = {k.split(":", 1)[1]: v.row for k, v in results.items() if k.startswith("model:")}
    depth = results["tree_depth"]

    def by_n(rows):
        return {str(r["n_components"]): r["test_acc"] for r in rows}

    return {"total": time.perf_counter() - started, "times": times, "peak_mb": peak_rss_mb(),
            "models": models, "accuracy": {
                "svc": {"test_acc": models["svc-rbf"]["test_acc"]},
                "depth": {str(d): a for d, a in zip(depth.depths, depth.test_acc)},
                "svc_pca": by_n(results["svc_pca"].rows),
                "tree_pca": by_n(results["tree_pca"].rows),
                "kernels": {r["kernel"]: r["test_acc"] for r in results["svc_kernels"].rows}}}


def run_seed(dataset: str, part: str) -> dict:
    from sklearn.decomposition import PCA
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    from mnistlab import load_dataset

    data = load_dataset(dataset)
    x = data.x_train.reshape(len(data.x_train), -1) / 255
    xt = data.x_test.reshape(len(data.x_test), -1) / 255
    y, yt = data.y_train, data.y_test
    acc: dict = {}
    started = time.perf_counter()
    if part == "svc":
        model = SVC().fit(x, y)
        acc["test_acc"] = float(np.mean(model.predict(xt) == yt))
    elif part == "depth":
        for d in range(1, 20):
            tree = DecisionTreeClassifier(max_depth=d).fit(x, y)
            tree.predict(x)  # the seed scored the training set too
            acc[d] = float(np.mean(tree.predict(xt) == yt))
    elif part in ("svc_pca", "tree_pca"):
        ns = ([10, 20, 30, 40, 50, 100, 200] if part == "svc_pca"
              else [1, 2, 3, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
        for n in (n for n in ns if n <= x.shape[1]):
            pca = PCA(n).fit(x)
            z, zt = pca.transform(x), pca.transform(xt)
            model = SVC() if part == "svc_pca" else DecisionTreeClassifier(max_depth=10)
            model.fit(z, y).predict(z)  # the seed scored the training set too
            acc[n] = float(np.mean(model.predict(zt) == yt))
    elif part == "kernels":
        for kernel in ("linear", "poly", "rbf", "sigmoid"):
            model = SVC(kernel=kernel).fit(x, y)
            acc[kernel] = float(np.mean(model.predict(xt) == yt))
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_rss_mb(), "accuracy": acc}


def child(args, part: str, intelex: bool = False) -> dict:
    """``part`` in a process of its own; "ours" on the scikit-learn engine unless ``intelex``."""
    cmd = [sys.executable, __file__, "--dataset", args.dataset, "--part", part]
    done = subprocess.run(cmd + (["--intelex"] if intelex else []), capture_output=True,
                          text=True)
    if done.returncode:
        sys.exit(f"{part} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--part", choices=["ours", *SEED_PARTS])
    parser.add_argument("--seed-parts", default="svc,depth")
    parser.add_argument("--intelex", action="store_true")
    args = parser.parse_args()
    parts = [p for p in args.seed_parts.split(",") if p]
    unknown = sorted(set(parts) - set(SEED_PARTS))
    if unknown:
        parser.error(f"--seed-parts: unknown {', '.join(unknown)}; known: {', '.join(SEED_PARTS)}")
    if args.part:
        print(json.dumps(run_ours(args.dataset, "sklearnex" if args.intelex else "sklearn")
                         if args.part == "ours"
                         else run_seed(args.dataset, args.part)))
        return

    ours = child(args, "ours")
    print(f"dataset {args.dataset}\nours, per step (s):")
    for name, s in ours["times"].items():
        print(f"  {name:28s} {s:8.1f}")
    print(f"ours total {ours['total']:.1f} s, peak RSS {ours['peak_mb']:.0f} MiB")
    print(f"{'model':16s} {'representation':28s} {'val acc':>8s} {'test acc':>8s} {'fit (s)':>8s}")
    for name, r in ours["models"].items():
        print(f"{name:16s} {r['representation']:28s} {r['val_acc']:8.4f} {r['test_acc']:8.4f} "
              f"{r['fit_s']:8.1f}")
    print("\nseed parts, each against the step of ours that answers the same question:",
          flush=True)
    seed_total = ours_total = 0.0
    for part in parts:
        seed = child(args, part)
        mine = ours["times"][OURS_FOR[part]]
        seed_total += seed["seconds"]
        ours_total += mine
        print(f"{part:9s} seed {seed['seconds']:7.1f} s (peak {seed['peak_mb']:.0f} MiB) | ours "
              f"{OURS_FOR[part]} {mine:6.1f} s | ratio {seed['seconds'] / mine:5.1f}x")
        for key, theirs in seed["accuracy"].items():
            mine_acc = ours["accuracy"][part].get(key)
            print(f"    {key:>9s}: test acc seed {theirs:.4f} | ours "
                  + ("-" if mine_acc is None else f"{mine_acc:.4f}"), flush=True)
    if parts:
        print(f"\nthe seed parts run: seed {seed_total:.1f} s vs ours {ours_total:.1f} s for the same "
              f"questions: ratio {seed_total / ours_total:.1f}x")
        print(f"whole section ours {ours['total']:.1f} s (every experiment, every model) vs "
              f"those seed parts alone {seed_total:.1f} s: ratio {seed_total / ours['total']:.1f}x")
    if args.intelex:
        fast = child(args, "ours", intelex=True)
        print(f"\nwith scikit-learn-intelex: ours total {fast['total']:.1f} s (without: "
              f"{ours['total']:.1f} s), peak RSS {fast['peak_mb']:.0f} MiB")
        for name, s in fast["times"].items():
            print(f"  {name:28s} {s:8.1f} s (without {ours['times'][name]:6.1f} s)")
        for name, r in fast["models"].items():
            print(f"  {name:16s} test acc {r['test_acc']:.4f} (without "
                  f"{ours['models'][name]['test_acc']:.4f})")


if __name__ == "__main__":
    from results import recorded  # bench/results.py: this script's part of RESULTS.md

    with recorded("bench/classic.py"):
        main()
