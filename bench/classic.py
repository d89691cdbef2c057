"""Benchmark of the classic-classifiers section against the seed's way, in one run.

    .venv/bin/python bench/classic.py [--dataset fashion-mnist] [--seed-parts svc,depth]

ours: the section's `full` profile, every step timed, in its own process (peak RSS its own).
seed: in another process, what the seed did: `SVC()` fitted on the raw 784 pixels and scored on
      the test set ("svc"), DecisionTreeClassifier(max_depth=d) refitted for d = 1..19 on raw
      pixels ("depth"), and SVC with each kernel on the full raw data ("kernels": about an hour
      on 2 cores, so not run unless asked for).
If scikit-learn-intelex is installed, `--intelex` patches scikit-learn for a second "ours" run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(dataset: str, intelex: bool) -> dict:
    if intelex:
        from sklearnex import patch_sklearn

        patch_sklearn()
    from mnistlab import build_config, load_dataset
    from mnistlab.sections import classic

    data = load_dataset(dataset)
    params = build_config("full").classic
    results, times = {}, {}
    started = time.perf_counter()
    for step in classic.plan(data, params, seed=0):
        t0 = time.perf_counter()
        results[step.name] = step.run({n: results[n] for n in step.needs})
        times[step.name] = time.perf_counter() - t0
    models = {k.split(":", 1)[1]: v.row for k, v in results.items() if k.startswith("model:")}
    return {"total": time.perf_counter() - started, "times": times, "peak_mb": peak_rss_mb(),
            "models": models, "best_depth": results["tree_depth"].best_depth,
            "depth_test": dict(zip(results["tree_depth"].depths,
                                   results["tree_depth"].test_acc)),
            "kernels": results["svc_kernels"].rows}


def run_seed(dataset: str, parts: list[str]) -> dict:
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    from mnistlab import load_dataset

    data = load_dataset(dataset)
    x = data.x_train.reshape(len(data.x_train), -1)
    xt = data.x_test.reshape(len(data.x_test), -1)
    out: dict = {"times": {}}
    if "svc" in parts:
        t0 = time.perf_counter()
        model = SVC().fit(x, data.y_train)
        out["svc_fit_s"] = time.perf_counter() - t0
        out["svc_test_acc"] = float(np.mean(model.predict(xt) == data.y_test))
        out["times"]["svc"] = time.perf_counter() - t0
    if "depth" in parts:
        t0 = time.perf_counter()
        out["depth_test"] = {}
        for d in range(1, 20):
            tree = DecisionTreeClassifier(max_depth=d).fit(x, data.y_train)
            tree.predict(x)  # the seed scored the training set too
            out["depth_test"][d] = float(np.mean(tree.predict(xt) == data.y_test))
        out["times"]["depth"] = time.perf_counter() - t0
    if "kernels" in parts:
        t0 = time.perf_counter()
        out["kernels"] = {}
        for kernel in ("linear", "poly", "rbf", "sigmoid"):
            model = SVC(kernel=kernel).fit(x, data.y_train)
            out["kernels"][kernel] = float(np.mean(model.predict(xt) == data.y_test))
        out["times"]["kernels"] = time.perf_counter() - t0
    out["total"] = sum(out["times"].values())
    out["peak_mb"] = peak_rss_mb()
    return out


def child(args, part: str, intelex: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--dataset", args.dataset, "--part", part,
           "--seed-parts", args.seed_parts] + (["--intelex"] if intelex else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{part} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--part", choices=["ours", "seed"])
    parser.add_argument("--seed-parts", default="svc,depth")
    parser.add_argument("--intelex", action="store_true")
    args = parser.parse_args()
    parts = [p for p in args.seed_parts.split(",") if p]
    if args.part == "ours":
        print(json.dumps(run_ours(args.dataset, args.intelex)))
        return
    if args.part == "seed":
        print(json.dumps(run_seed(args.dataset, parts)))
        return
    ours = child(args, "ours")
    seed = child(args, "seed")
    print(f"dataset {args.dataset}; seed parts run: {', '.join(parts)}")
    print("ours, per step (s):")
    for name, s in ours["times"].items():
        print(f"  {name:28s} {s:8.1f}")
    print(f"ours total {ours['total']:.1f} s, peak RSS {ours['peak_mb']:.0f} MiB")
    print(f"{'model':16s} {'val acc':>8s} {'test acc':>8s} {'fit (s)':>8s}")
    for name, r in ours["models"].items():
        print(f"{name:16s} {r['val_acc']:8.4f} {r['test_acc']:8.4f} {r['fit_s']:8.1f}")
    if "svc" in parts:
        r = ours["models"].get("svc-rbf")
        print(f"best SVC: ours svc-rbf (PCA-50, C=10) test {r['test_acc']:.4f} fit {r['fit_s']:.1f} s"
              f" | seed SVC() raw pixels test {seed['svc_test_acc']:.4f} fit "
              f"{seed['svc_fit_s']:.1f} s | fit ratio {seed['svc_fit_s'] / r['fit_s']:.1f}x")
    if "depth" in parts:
        a, b = ours["times"]["tree_depth"], seed["times"]["depth"]
        print(f"depth sweep: ours 1..25 {a:.1f} s | seed 1..19 refits {b:.1f} s | "
              f"ratio {b / a:.1f}x")
        for d in (5, 10, 15, 19):
            print(f"  depth {d}: test ours {ours['depth_test'][str(d)]:.4f} | "
                  f"seed {seed['depth_test'][str(d)]:.4f}")
    print(f"seed parts total {seed['total']:.1f} s, peak RSS {seed['peak_mb']:.0f} MiB")
    print(f"whole section ours {ours['total']:.1f} s vs the seed parts alone "
          f"{seed['total']:.1f} s: ratio {seed['total'] / ours['total']:.1f}x")
    if args.intelex:
        fast = child(args, "ours", intelex=True)
        print(f"with scikit-learn-intelex: ours total {fast['total']:.1f} s")


if __name__ == "__main__":
    main()
