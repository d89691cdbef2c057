"""Benchmark of the unsupervised section against the seed's way, in one run.

    .venv/bin/python bench/unsupervised.py [--dataset fashion-mnist] [--skip-seed-gmm]

Runs, each in its own process so that peak memory is its own:
  ours: the section's `full` profile (PCA, K sweep, inits with sampled silhouettes, PCA-2,
        GMMs, BIC curve, Birch, UMAP embedding), every step timed;
  seed: the seed's code with library defaults: PCA(200), KMeans(k, random_state=0) for the K
        sweep, k-means++ and random inits with silhouette_score on all points, GaussianMixture
        spherical/tied/diag on raw pixels (max_iter=100).
Prints each part's time, the ratio, the metrics side by side and each process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

K_SWEEP = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 50, 100, 150]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(dataset: str) -> dict:
    from mnistlab import build_config, load_dataset
    from mnistlab.sections import unsupervised

    data = load_dataset(dataset)
    params = build_config("full").unsupervised
    results, times = {}, {}
    started = time.perf_counter()
    for step in unsupervised.plan(data, params, seed=0):
        t0 = time.perf_counter()
        results[step.name] = step.run(results)
        times[step.name] = time.perf_counter() - t0
    total = time.perf_counter() - started
    inits = {r["init"]: r for r in results["kmeans_inits"].rows}
    gmm = {r["covariance"]: r for r in results["gmm"].rows}
    return {"times": times, "total": total, "peak_mb": peak_rss_mb(),
            "n_components": results["pca"].n_chosen,
            "k10_homogeneity": next(r for r in results["kmeans_sweep"].rows
                                    if r["k"] == 10)["homogeneity"],
            "silhouette": {k: [v["silhouette"], v["silhouette_sd"]] for k, v in inits.items()},
            "homogeneity": {k: v["homogeneity"] for k, v in inits.items()},
            "gmm_ari": {k: v["ari"] for k, v in gmm.items()},
            "embedding_accuracy": results["embedding"].row["accuracy"]
            if "embedding" in results else None}


def run_seed(dataset: str, skip_gmm: bool) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, homogeneity_score, silhouette_score
    from sklearn.mixture import GaussianMixture

    from mnistlab import load_dataset
    from mnistlab.sections.clustering_metrics import silhouette_estimate

    data = load_dataset(dataset)
    x = data.x_train.reshape(len(data.x_train), -1)
    y = data.y_train
    times, out = {}, {}
    t0 = time.perf_counter()
    z = PCA(n_components=200).fit(x).transform(x)
    times["pca"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in K_SWEEP:
        labels = KMeans(n_clusters=k, random_state=0).fit(z).labels_
        if k == 10:
            out["k10_homogeneity"] = homogeneity_score(y, labels)
    times["kmeans_sweep"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["silhouette"], out["homogeneity"], labels_by_init = {}, {}, {}
    for init in ("k-means++", "random"):
        labels = KMeans(n_clusters=10, init=init, random_state=0).fit(z).labels_
        out["silhouette"][init] = float(silhouette_score(z, labels))
        out["homogeneity"][init] = homogeneity_score(y, labels)
        labels_by_init[init] = labels
    times["inits_full_silhouette"] = time.perf_counter() - t0
    # Our estimator on the seed's own labels and space: does sampling change the number?
    out["silhouette_sampled"] = {
        init: silhouette_estimate(z.astype(np.float32), labels, 10_000, 3, 0)["silhouette"]
        for init, labels in labels_by_init.items()}
    if not skip_gmm:
        xr = x / 255
        t0 = time.perf_counter()
        out["gmm_ari"] = {}
        for cov in ("spherical", "tied", "diag"):
            gmm = GaussianMixture(n_components=10, covariance_type=cov, max_iter=100,
                                  random_state=0).fit(xr)
            out["gmm_ari"][cov] = adjusted_rand_score(y, gmm.predict(xr))
        times["gmm_raw"] = time.perf_counter() - t0
    return {"times": times, "total": sum(times.values()), "peak_mb": peak_rss_mb(), **out}


def child(part: str, args) -> dict:
    cmd = [sys.executable, __file__, "--dataset", args.dataset, "--part", part]
    if args.skip_seed_gmm:
        cmd.append("--skip-seed-gmm")
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--part", choices=["ours", "seed"])
    parser.add_argument("--skip-seed-gmm", action="store_true",
                        help="skip the seed's raw-pixel GMMs (about 1,000 s)")
    args = parser.parse_args()
    if args.part == "ours":
        print(json.dumps(run_ours(args.dataset)))
        return
    if args.part == "seed":
        print(json.dumps(run_seed(args.dataset, args.skip_seed_gmm)))
        return
    ours, seed = child("ours", args), child("seed", args)
    print(f"dataset {args.dataset}; ours: PCA to {ours['n_components']} components (90 %), "
          "seed: PCA 200")
    print(f"{'part':34s} {'ours (s)':>9s} {'seed (s)':>9s} {'ratio':>7s}")
    pairs = [("PCA", ["pca"], ["pca"]), ("K sweep", ["kmeans_sweep"], ["kmeans_sweep"]),
             ("inits + silhouette", ["kmeans_inits"], ["inits_full_silhouette"]),
             ("GMMs (ours: PCA space, 4 types)", ["gmm"], ["gmm_raw"])]
    for name, mine, theirs in pairs:
        a = sum(ours["times"].get(k, 0) for k in mine)
        b = sum(seed["times"].get(k, 0) for k in theirs)
        print(f"{name:34s} {a:9.1f} {b:9.1f} {b / a if a and b else float('nan'):7.1f}")
    for extra in ("kmeans_2d", "bic", "birch", "embedding"):
        print(f"{'ours only: ' + extra:34s} {ours['times'].get(extra, 0):9.1f}")
    print(f"{'TOTAL':34s} {ours['total']:9.1f} {seed['total']:9.1f} "
          f"{seed['total'] / ours['total']:7.1f}")
    print(f"peak RSS (MiB): ours {ours['peak_mb']:.0f}, seed {seed['peak_mb']:.0f}")
    print("metrics (ours | seed):")
    print(f"  k-means K=10 homogeneity: {ours['k10_homogeneity']:.4f} | "
          f"{seed['k10_homogeneity']:.4f}")
    for init in ("k-means++", "random"):
        print(f"  {init} silhouette: ours {ours['silhouette'][init][0]:.4f} "
              f"± {ours['silhouette'][init][1]:.4f} (sampled, PCA-{ours['n_components']}) | "
              f"seed {seed['silhouette'][init]:.4f} (all points, PCA-200); our estimator on the "
              f"seed's labels: {seed['silhouette_sampled'][init]:.4f} "
              f"(diff {seed['silhouette_sampled'][init] - seed['silhouette'][init]:+.4f})")
        print(f"  {init} homogeneity: {ours['homogeneity'][init]:.4f} | "
              f"{seed['homogeneity'][init]:.4f}")
    for cov, ari in ours["gmm_ari"].items():
        theirs = seed.get("gmm_ari", {}).get(cov)
        print(f"  GMM {cov} ARI: {ari:.4f} | {theirs if theirs is None else round(theirs, 4)}")
    if ours["embedding_accuracy"] is not None:
        print(f"  UMAP + GMM cluster accuracy: {ours['embedding_accuracy']:.4f}")


if __name__ == "__main__":
    from results import recorded  # bench/results.py: this script's part of RESULTS.md

    with recorded("bench/unsupervised.py"):
        main()
