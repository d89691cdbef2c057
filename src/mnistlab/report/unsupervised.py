"""Report part 2 from the unsupervised section's stored results."""

from __future__ import annotations

import numpy as np

from ..sections.unsupervised import (
    BicCurve,
    BirchResult,
    EmbeddingResult,
    GmmResult,
    KMeans2D,
    KMeansInits,
    KMeansSweep,
    PcaResult,
)
from ..study.results import StudyContext
from .blocks import Block, FigureSink, esc, heading, maybe, new_figure, table, text, the
from .figures import image_grid, legend, share_heatmap

SCORES = ["homogeneity", "completeness", "v_measure", "ari", "ami", "rand"]
SCORE_LABELS = {"homogeneity": "homogeneity", "completeness": "completeness",
                "v_measure": "V-measure", "ari": "adjusted Rand", "ami": "adjusted MI",
                "rand": "Rand index", "accuracy": "cluster accuracy"}


def _f(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def _silhouette(row: dict) -> str:
    if row["silhouette_exact"]:
        return _f(row["silhouette"])
    return f"{_f(row['silhouette'])} ± {_f(row['silhouette_sd'])}"


def _gallery_figure(pca: PcaResult):
    images = [pca.gallery_image / 255] + [np.clip(img, 0, 1) for img in
                                          pca.gallery_reconstructions]
    titles = ["original"] + [f"n={k}\nMSE {err:.4f}" for k, err in
                                zip(pca.gallery_components, pca.gallery_mse)]
    return image_grid(images, titles, cols=min(len(images), 9), title_lines=2, fontsize=7,
                      tile_inches=1.25, vmin=0, vmax=1)


def _variance_figure(pca: PcaResult):
    fig = new_figure(7, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    cumulative = np.cumsum(pca.explained_variance_ratio)
    ax.plot(np.arange(1, len(cumulative) + 1), cumulative, color="tab:blue")
    for level, n in pca.marks.items():
        ax.axhline(float(level), color="grey", lw=0.6, ls=":")
        ax.plot([n], [cumulative[n - 1]], "o", color="tab:red")
        ax.annotate(f"{float(level):.0%}: n={n}", (n, cumulative[n - 1]), fontsize=8,
                    xytext=(6, -12), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("number of components")
    ax.set_ylabel("cumulative explained variance")
    ax.set_ylim(0, 1.02)
    return fig


def _sweep_figure(sweep: KMeansSweep):
    ks = [r["k"] for r in sweep.rows]
    fig = new_figure(11, 3.6)
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(ks, [r["inertia"] for r in sweep.rows], "o-")
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("inertia (within-cluster sum of squares)")
    ax.set_title("Elbow curve")
    ax = fig.add_subplot(1, 2, 2)
    for score in SCORES + ["accuracy"]:
        ax.plot(ks, [r[score] for r in sweep.rows], "o-", ms=3, label=SCORE_LABELS[score])
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("score")
    ax.set_title("Scores against the true labels")
    legend(ax, fontsize=7)
    return fig


def _contingency_figure(tables, titles, class_names, col_labels):
    fig = new_figure(4.6 * len(tables), 4.2)
    for i, (t, title, cols) in enumerate(zip(tables, titles, col_labels)):
        ax = fig.add_subplot(1, len(tables), i + 1)
        share_heatmap(ax, t, class_names, cols, "cluster (matched order)", title,
                      annotate_from=0.1, fontsize=5.5)
    return fig


def _scatter_figure(panels, titles, centers=None):
    fig = new_figure(4.2 * len(panels), 4)
    for i, ((pts, labels), title) in enumerate(zip(panels, titles)):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.scatter(pts[:, 0], pts[:, 1], c=labels, cmap="tab10", s=2, alpha=0.6,
                   rasterized=True)
        if centers is not None and i == 0:
            ax.scatter(centers[:, 0], centers[:, 1], c="k", marker="x", s=60)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def _bic_figure(bic: BicCurve):
    fig = new_figure(6, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(bic.ks, bic.bic, "o-", label="BIC")
    ax.plot(bic.ks, bic.aic, "s--", label="AIC")
    ax.axvline(bic.best_k, color="tab:red", lw=0.8)
    ax.set_xlabel("K (mixture components)")
    ax.set_ylabel("criterion (lower is better)")
    ax.set_title(f"{bic.covariance_type} covariance, {bic.n_samples:,} points")
    legend(ax, fontsize=8)
    return fig


def render(results: dict, sink: FigureSink, study: StudyContext) -> list[Block]:
    pca = the(results, PcaResult)
    sweep = the(results, KMeansSweep)
    inits = the(results, KMeansInits)
    k2 = the(results, KMeans2D)
    gmm = the(results, GmmResult)
    bic = the(results, BicCurve)
    birch = the(results, BirchResult)
    emb = maybe(results, EmbeddingResult)
    names = study.class_names
    n = pca.n_train
    blocks: list[Block] = [text(
        f"Everything below is fitted on {n:,} training images, flattened to {pca.n_features} "
        "pixels scaled to 0..1 (float32)."
        + (" <b>This is a subset of the training set (quick profile or max_train).</b>"
           if study.profile == "quick" else ""))]

    # PCA ---------------------------------------------------------------------------
    cumulative = np.cumsum(pca.explained_variance_ratio)
    blocks += [
        heading("2.1 PCA: reconstructions"),
        sink.block("pca-gallery", _gallery_figure(pca),
                   f"Training image #{pca.gallery_index} (seed {study.seed}) and its "
                   "reconstruction from the first n components, with its mean squared error "
                   "per pixel"),
        table(["n components", "explained variance", "MSE of this image",
               "mean MSE over the training set"],
              [[k, _f(cumulative[min(k, len(cumulative)) - 1], 4), _f(e, 5), _f(m, 5)]
               for k, e, m in zip(pca.gallery_components, pca.gallery_mse, pca.dataset_mse)],
              "Reconstruction error per pixel (0..1 scale) against the number of components"),
        heading("2.2 Explained variance and the choice of n_components"),
        sink.block("pca-variance", _variance_figure(pca),
                   "Cumulative explained variance over all components"),
        text(pca_answer(pca, study.mnist_like)),
    ]

    # k-means sweep -----------------------------------------------------------------
    blocks += [
        # The seed numbers its clustering questions from 2.1 again; the report numbers on.
        heading("2.3 k-means: the number of clusters K"),
        sink.block("kmeans-sweep", _sweep_figure(sweep),
                   f"k-means on {sweep.n_components} PCA components for each K: inertia (left) "
                   "and external scores (right)"),
        table(["K", "inertia", "iterations", "fit (s)"] + [SCORE_LABELS[s] for s in SCORES]
              + ["accuracy"],
              [[r["k"], f"{r['inertia']:.4g}", r["n_iter"], _f(r["fit_s"], 2)]
               + [_f(r[s]) for s in SCORES + ["accuracy"]] for r in sweep.rows],
              f"k-means sweep (k-means++, n_init={inits.n_init}, seed {study.seed})"),
        text("What the scores measure (all compare the clusters with the true labels): "
             "<b>homogeneity</b> is 1 when every cluster contains members of a single class "
             "(it is 1 minus the conditional entropy of the classes given the clusters, "
             "normalised) — it is not \"the ratio of correct clusters\" as the seed says; "
             "<b>completeness</b> is 1 when all members of a class fall in the same cluster; the "
             "<b>V-measure</b> is their harmonic mean. The <b>Rand index</b> is the share of "
             "pairs of images on which clusters and classes agree (same group in both, or "
             "different in both); most pairs are of different classes and end in different "
             "clusters, so even a poor partition scores high. The <b>adjusted Rand index</b> "
             "subtracts what random labels would get (0 for chance, 1 for a perfect match, "
             "negative below chance), and the <b>adjusted mutual information</b> does the same "
             "for mutual information. <b>Cluster accuracy</b> matches each cluster to one class "
             "(Hungarian algorithm) and counts the images so matched."),
        text(kmeans_k_answer(sweep)),
    ]

    # inits + K=10 evaluation ---------------------------------------------------------
    r0 = inits.rows[0]
    sil_note = (f"silhouette exact on all {r0['silhouette_n']:,} points" if r0["silhouette_exact"]
                else f"silhouette estimated on {len(inits.rows) and _repeats(study)} seeded "
                     f"stratified samples of {r0['silhouette_n']:,} points: mean ± standard "
                     "deviation, the spread being the sampling error")
    blocks += [
        heading(f"2.4 k-means initialisations and the partition at K = {inits.n_clusters}"),
        table(["init", "n_init", "iterations", "fit (s)", "inertia", "silhouette"]
              + [SCORE_LABELS[s] for s in SCORES] + ["accuracy"],
              [[r["init"], r["n_init"], r["n_iter"], _f(r["fit_s"], 2), f"{r['inertia']:.5g}",
                _silhouette(r)] + [_f(r[s]) for s in SCORES + ["accuracy"]]
               for r in inits.rows],
              f"K = {inits.n_clusters} on {inits.n_components} PCA components ({sil_note}); "
              "fixed = one real training image of each class as the starting centroids"),
        sink.block("kmeans-contingency", _contingency_figure(
            inits.contingency, [f"init = {r['init']}" for r in inits.rows], names,
            [[str(c) for c in cols] for cols in inits.column_clusters]),
            "Share of each class in each cluster, clusters reordered to their matched class "
            "(a perfect partition is the identity)"),
        text(_inits_answer(inits, names, seed_comparable=study.mnist_like)),
    ]

    # PCA-2 ---------------------------------------------------------------------------
    s2 = k2.scores
    blocks += [
        heading(f"2.5 k-means with K = {inits.n_clusters} on 2 PCA components"),
        sink.block("kmeans-2d", _scatter_figure(
            [(k2.points, k2.point_clusters), (k2.points, k2.point_classes)],
            ["k-means clusters (x: centroids)", "true classes"], k2.centers),
            f"{len(k2.points):,} training images on the first two principal components"),
        sink.block("kmeans-2d-contingency", _contingency_figure(
            [k2.contingency], ["PCA-2 k-means"], names,
            [[str(i) for i in range(k2.contingency.shape[1])]]),
            "Class share per cluster, matched order"),
        text(pca2_answer(k2.explained_variance, s2, r0, inits.n_components)),
    ]

    # GMM -------------------------------------------------------------------------------
    blocks += [heading("2.6 EM clustering: Gaussian mixtures"), _gmm_table(gmm),
               sink.block("gmm-scatter", _scatter_figure(
                   [(gmm.points, c) for c in gmm.point_clusters],
                   [f"{r['covariance']} (ARI {r['ari']:.2f})" for r in gmm.rows]),
                   "Mixture components of each covariance type, drawn on the first two PCA "
                   "components"),
               sink.block("gmm-bic", _bic_figure(bic),
                          f"BIC and AIC against K for the covariance type with the lowest BIC "
                          f"at K = {gmm.n_clusters} ({bic.covariance_type}), fitted on a seeded "
                          "stratified "
                          f"sample of {bic.n_samples:,} points"),
               text(_gmm_answer(gmm, bic, inits, pca, emb, study.mnist_like))]

    # Birch + embedding ---------------------------------------------------------------
    b = birch.row
    blocks += [
        heading("Birch (announced by the seed, never run there)"),
        text(f"Birch builds a tree of {birch.n_subclusters:,} subclusters of radius at most "
             f"{birch.threshold:.3g} in one pass over the data, then merges them into "
             f"{inits.n_clusters} clusters (agglomerative clustering). It took "
             f"{b['fit_s']:.2f} s: ARI {_f(b['ari'])}, homogeneity {_f(b['homogeneity'])}, "
             f"accuracy {_f(b['accuracy'])}, silhouette {_silhouette(b)}."),
    ]
    if emb is not None:
        blocks += [
            heading("Beyond the seed: clustering in a learned embedding"),
            sink.block("embedding-scatter", _scatter_figure(
                [(emb.points, emb.point_clusters), (emb.points, emb.point_classes)],
                [f"{emb.cluster} clusters in the {emb.method} space", "true classes"]),
                f"First two of the {emb.dim} UMAP dimensions"),
            text(_embedding_text(emb, inits.n_clusters, r0, study.mnist_like,
                                 study.config.unsupervised.embedding_epochs)),
        ]
    blocks += [heading("Clustering leaderboard"), _leaderboard(inits, k2, gmm, birch, emb, pca)]
    return blocks


# A change of a score smaller than this is no change (a few images in a thousand).
SCORE_NOISE = 0.01
# An adjusted Rand index under this is read as no agreement with the classes: chance scores 0,
# and a partition this close to it puts few pairs of a class together beyond chance.
CHANCE_ARI = 0.05


def pca_answer(pca: PcaResult, seed_comparable: bool) -> str:
    """Seed 2.2: the variance curve and the choice of n_components, from the run's numbers."""
    cumulative = np.cumsum(pca.explained_variance_ratio)
    marks = ", ".join(f"{float(k):.0%} with n = {v}" for k, v in pca.marks.items())
    n99 = int(np.searchsorted(cumulative, 0.99 - 1e-12) + 1)
    if pca.constant_pixels and pca.black_pixels == pca.constant_pixels:
        tail = (f"{pca.constant_pixels} of the {pca.n_features} pixels are black in every "
                "training image, so the last components carry no variance at all")
    elif pca.constant_pixels:
        tail = (f"{pca.constant_pixels} of the {pca.n_features} pixels have the same value in "
                "every training image, so the last components carry no variance at all")
    else:
        tail = (f"no pixel is constant over the training images, yet the last "
                f"{pca.n_features - min(n99, pca.n_features)} components together carry under "
                "1 % of the variance")
    text_ = (f"PCA rotates the pixel space onto orthogonal directions ordered by the variance "
             f"they carry; keeping the first n and projecting back gives the best rank-n "
             f"approximation in squared error, and that error is exactly the variance left out "
             f"(the right-hand column above is computed from the eigenvalues). Measured: the "
             f"curve reaches {marks}. The first components carry the coarse shape (compare the "
             f"reconstructions above), the last ones the finest details: {tail}. ")
    if seed_comparable and pca.n_features > 200:
        n90 = pca.marks.get("0.9", int(np.searchsorted(cumulative, 0.9 - 1e-12) + 1))
        holds = abs(n90 - 200) <= 20
        text_ += (f"The seed said the first 200 components explain 90 % of MNIST's variance; "
                  f"on these MNIST digits {n90} do, and 200 explain {cumulative[199]:.1%}: "
                  + ("the seed's figure holds. " if holds else "the seed's figure does not "
                     "hold. "))
    text_ += (f"The clustering steps below use <b>n = {pca.n_chosen}</b> (the classifiers of "
              "part 3 choose their own PCA size), the smallest n reaching the "
              f"configured target of {pca.variance_target:.0%} (<code>variance_target</code>): "
              f"{pca.n_features / pca.n_chosen:.1f} times fewer dimensions, so every distance "
              f"computation is that much cheaper, at the cost of "
              f"{1 - cumulative[pca.n_chosen - 1]:.1%} of the variance (the finest details). "
              f"The PCA fit took {pca.fit_s:.2f} s (one eigendecomposition of the "
              f"{pca.n_features}x{pca.n_features} covariance serves every n).")
    return text_


def _moves(first: float, last: float, up: str = "rises", down: str = "falls",
           flat: str = "barely moves", noise: float = SCORE_NOISE) -> str:
    return up if last > first + noise else down if last < first - noise else flat


def course(values: list[float], noise: float = SCORE_NOISE) -> tuple[str, list[int]]:
    """How a curve moves over its whole length, not only between its ends: "rises", "falls",
    "barely moves", or its runs ("rises then falls", "falls, rises, then falls"...) with the
    index of each turn. A turn is a point the curve then leaves by more than ``noise`` the
    other way; smaller wiggles are not turns."""
    turns: list[int] = []
    first = direction = 0  # the first run's direction; the current one's (0: none yet)
    extreme = 0  # where the current run has got furthest
    for i, value in enumerate(values[1:], 1):
        if direction == 0:
            if value > values[0] + noise or value < values[0] - noise:
                first = direction = 1 if value > values[0] else -1
                extreme = i
        elif (value - values[extreme]) * direction >= 0:
            extreme = i
        elif value < values[extreme] - noise if direction > 0 else value > values[extreme] + noise:
            turns.append(extreme)
            direction, extreme = -direction, i
    if not first:
        return "barely moves", []
    runs = ["rises" if (first if k % 2 == 0 else -first) > 0 else "falls"
            for k in range(len(turns) + 1)]
    if len(runs) <= 2:
        return " then ".join(runs), turns
    return ", ".join(runs[:-1]) + ", then " + runs[-1], turns


def kmeans_k_answer(sweep: KMeansSweep) -> str:
    """Seed 2.1 (K): how homogeneity and completeness move with K, from the sweep."""
    first, last = sweep.rows[0], sweep.rows[-1]
    best_acc = max(sweep.rows, key=lambda r: r["accuracy"])
    # a turn is a move back by more than twice the scores' noise, as every verdict here
    h, h_at = course([r["homogeneity"] for r in sweep.rows], 2 * SCORE_NOISE)
    c, c_at = course([r["completeness"] for r in sweep.rows], 2 * SCORE_NOISE)

    def turn(name: str, at: list[int]) -> str:
        if not at:
            return ""
        points = [f"{_f(sweep.rows[i][name])} at K = {sweep.rows[i]['k']}" for i in at]
        return f", {_listed(points)} on the way"

    text_ = (f"Homogeneity {h} with K ({_f(first['homogeneity'])} at K = {first['k']}"
             f"{turn('homogeneity', h_at)}, {_f(last['homogeneity'])} at K = {last['k']})")
    text_ += (": smaller clusters are purer, and in the limit of one image per cluster it is "
              "exactly 1. " if h == "rises" else ". ")
    text_ += (f"Completeness {c} ({_f(first['completeness'])} at K = {first['k']}"
              f"{turn('completeness', c_at)}, {_f(last['completeness'])} at K = {last['k']})"
              + (": each class is split over more clusters. " if c == "falls" else ". "))
    rises = [(a["k"], b["k"]) for a, b in zip(sweep.rows, sweep.rows[1:])
             if b["inertia"] > a["inertia"]]
    inertia = ("the inertia only decreases with K" if not rises else
               f"the inertia, which the best partition can only lower as K grows, rises from "
               f"K = {rises[0][0]} to K = {rises[0][1]} here (Lloyd's iterations stopped in a "
               "worse local minimum)")
    return text_ + ("Neither alone can choose K; the V-measure, ARI and AMI balance both, and "
                    f"{inertia}. Cluster accuracy peaks at K = {best_acc['k']} "
                    f"({_f(best_acc['accuracy'])}).")


def pca2_answer(explained: float, s2: dict, r0: dict, n_components: int) -> str:
    """Seed 2.4: the partition on 2 PCA components against the one in n components."""
    higher = s2["silhouette"] > r0["silhouette"]
    verdict = compare_partitions(s2, r0, SCORE_NOISE)  # on accuracy, ARI and AMI together
    text_ = (f"Two components keep {explained:.1%} of the variance. The silhouette is "
             f"{_silhouette(s2)}, {'higher' if higher else 'not higher'} than in {n_components} "
             f"dimensions ({_silhouette(r0)})")
    text_ += (": k-means cuts a 2-D cloud into compact convex cells that look well separated "
              "there, which says nothing of the classes. " if higher else ". ")
    scores = _scores_pair(s2, r0).replace(" against ", " vs ")
    if max(s2["ari"], r0["ari"]) < CHANCE_ARI:
        return text_ + (f"Against the labels neither partition finds the classes ({scores}; an "
                        f"ARI under {CHANCE_ARI} is close to the 0 of a chance partition).")
    if verdict == "worse":
        return text_ + (f"Against the labels the partition is worse ({scores}): the classes "
                        "overlap in this plane (right panel); the silhouette judges the "
                        "geometry of the clusters, the external scores their agreement with the "
                        "classes.")
    if verdict == "mixed":
        return text_ + (f"Against the labels the scores point different ways ({scores}; a "
                        f"difference under {SCORE_NOISE} counts as none): neither partition "
                        "matches the classes better on all three.")
    judged = "better" if verdict == "better" else "no worse"
    return text_ + (f"Against the labels the partition is {judged} ({scores}): two components "
                    "already separate these classes as well as many do.")


def _repeats(study: StudyContext) -> str:
    return str(study.config.unsupervised.silhouette_repeats)


# A class "shares" a cluster when at least this much of it lands there.
SHARE_THRESHOLD = 0.2
# Spread of ARI between initialisations below which they "end alike".
INIT_SPREAD_ALIKE = 0.05


def shared_clusters(contingency: np.ndarray, class_names: list[str]) -> list[list[str]]:
    """Groups of classes of which each puts at least SHARE_THRESHOLD of its images in one
    common cluster (rows = classes, columns = clusters)."""
    totals = contingency.sum(axis=1, keepdims=True)
    share = contingency / np.maximum(totals, 1)
    groups = []
    for column in share.T:
        members = [class_names[i] for i in np.flatnonzero(column >= SHARE_THRESHOLD)]
        if len(members) > 1 and members not in groups:  # two clusters may hold one group
            groups.append(members)
    return groups


def _inits_answer(inits: KMeansInits, class_names: list[str],
                  seed_comparable: bool = False) -> str:
    rows = {r["init"]: r for r in inits.rows}
    parts = [f"{name}: ARI {_f(r['ari'])}, accuracy {_f(r['accuracy'])}, inertia "
             f"{r['inertia']:.5g} after {r['n_iter']} iterations"
             for name, r in rows.items()]
    spread = max(r["ari"] for r in inits.rows) - min(r["ari"] for r in inits.rows)
    text_ = (f"Measured at K = {inits.n_clusters} — " + "; ".join(parts) + ". ")
    if spread < INIT_SPREAD_ALIKE:
        text_ += (f"The initialisations end within {spread:.3f} ARI of each other: Lloyd's "
                  "iterations converge to similar local minima of the inertia from these "
                  "starts. ")
    else:
        text_ += (f"The initialisations end up to {spread:.3f} ARI apart: here the start "
                  "decides which local minimum of the inertia Lloyd's iterations reach. ")
    text_ += ("k-means++ picks each new centroid with probability proportional to its "
              "squared distance from the centroids already chosen (not \"the farthest point\"), "
              "which spreads the starts; a random start picks K images uniformly. ")
    first = inits.rows[0]
    if "fixed" in rows:
        fixed = rows["fixed"]
        others = [r for r in inits.rows if r["init"] != "fixed"]
        verdicts = {compare_partitions(fixed, r, SCORE_NOISE) for r in others}
        scores = ", ".join(f"{AGREEING_LABELS[k]} {_f(fixed[k])}" for k in AGREEING_SCORES)
        if verdicts == {"better"} or verdicts <= {"worse", "alike"}:
            text_ += ("Starting from one real image per class (fixed) uses the labels "
                      + ("and reaches the classes best on every score, " if verdicts == {"better"}
                         else "yet does not reach the classes better than the others, ")
                      + f"with {scores}. ")
        else:  # the scores disagree: say where, start by start
            against = "; ".join(f"against {r['init']} {_against(fixed, r, SCORE_NOISE)}"
                                for r in others)
            text_ += (f"Starting from one real image per class (fixed) uses the labels ({scores}); "
                      f"it is {against} (a difference under {SCORE_NOISE} counts as none). ")
    groups = shared_clusters(inits.contingency[0], class_names)
    text_ += (f"With the labels, {first['accuracy']:.0%} of the images land in the cluster "
              f"matched to their class ({first['init']})")
    text_ += ("; classes sharing a cluster: " + ", ".join(esc("/".join(g)) for g in groups)
              + " (see the heatmaps). " if groups else "; no two classes share a cluster. ")
    gap = first["rand"] - first["ari"]
    counts = inits.contingency[0].sum(axis=1)
    apart = 1 - float(np.sum((counts / max(counts.sum(), 1)) ** 2))  # pairs of two classes
    text_ += (f"The Rand index ({_f(first['rand'])}) is "
              + ("much higher than" if gap > 0.2 else "close to")
              + f" the adjusted Rand index ({_f(first['ari'])}): Rand counts the pairs kept "
              f"apart as agreements ({apart:.0%} of the pairs here are of two different "
              "classes), and ARI corrects for chance.")
    if seed_comparable:
        text_ += (" The seed's MNIST table gave an adjusted Rand equal to its Rand index for "
                  "one init and to the homogeneity for the other: a copying error.")
    return text_


def _gmm_table(gmm: GmmResult) -> Block:
    return table(["covariance", "parameters", "converged", "iterations", "fit (s)", "BIC", "AIC",
                  "adjusted Rand", "homogeneity", "accuracy"],
                 [[r["covariance"], r["n_parameters"], "yes" if r["converged"] else "no",
                   r["n_iter"], _f(r["fit_s"], 2), f"{r['bic']:,.0f}", f"{r['aic']:,.0f}",
                   _f(r["ari"]), _f(r["homogeneity"]), _f(r["accuracy"])] for r in gmm.rows],
                 f"GaussianMixture, K = {gmm.n_clusters}, on the {gmm.space} space "
                 f"({gmm.n_dims} dimensions)")


def _gmm_answer(gmm: GmmResult, bic: BicCurve, inits: KMeansInits, pca: PcaResult,
                emb: EmbeddingResult | None = None, seed_comparable: bool = False) -> str:
    km = inits.rows[0]
    best = max(gmm.rows, key=lambda r: r["ari"])
    lowest = min(gmm.rows, key=lambda r: r["bic"])
    d_raw = pca.n_features
    k = gmm.n_clusters
    full_raw = k * (d_raw + d_raw * (d_raw + 1) // 2) + k - 1
    answer = (f"EM fits a mixture of Gaussians by maximum likelihood; k-means is the limit "
              f"of a spherical mixture with equal, vanishing variances and hard assignments. "
              f"Measured: the best covariance type against the labels is {best['covariance']} "
              f"(ARI {_f(best['ari'])}, accuracy {_f(best['accuracy'])}) against k-means' ARI "
              f"{_f(km['ari'])} and accuracy {_f(km['accuracy'])}; the lowest BIC is "
              f"{lowest['covariance']}'s. ")
    answer += (f"On the BIC curve ({bic.covariance_type}), the minimum is at K = {bic.best_k}"
               + (", the number of classes; " if bic.best_k == k else
                  f", not at the {k} classes: ")
               + "a likelihood criterion balances fit against parameters and has no reason to "
               "land on the number of classes, since a class need not be one Gaussian blob. ")
    answer += ("The seed blamed EM's poor scores on the data being \"discrete\"; that is not "
               "the reason: pixel intensities are a fine continuous approximation"
               + _embedding_evidence(emb, best) + ". The reasons are the model: classes are "
               f"curved, multi-modal sets in pixel space, and in {d_raw} raw dimensions a full "
               f"covariance mixture has {full_raw:,} parameters")
    if pca.constant_pixels:
        answer += (f" while the {pca.constant_pixels} constant pixels have zero variance (only "
                   "reg_covar keeps the covariances invertible)")
    answer += (" (the seed's three fits took 1,049 s on MNIST's raw pixels). " if seed_comparable
               else ". ")
    slowest = max(r["fit_s"] for r in gmm.rows)
    if gmm.space == "pca":
        full_params = next((f"{r['n_parameters']:,}" for r in gmm.rows
                            if r["covariance"] == "full"), "n/a")
        answer += (f"That is why the default space is the {pca.n_chosen}-component PCA "
                   f"({pca.variance_target:.0%} of the variance): the 'full' model there has "
                   f"{full_params} "
                   f"parameters and the slowest fit above took {slowest:.1f} s. The raw-pixel "
                   "configuration stays available (<code>gmm_space = \"raw\"</code>).")
    else:
        answer += (f"This run fitted the raw pixels (<code>gmm_space = \"raw\"</code>); the "
                   f"slowest fit took {slowest:.1f} s.")
    return answer


# An embedding "clusters far better" than the mixtures when its accuracy is this much higher.
CLEARLY_BETTER = 0.05


AGREEING_SCORES = ("accuracy", "ari", "ami")  # a verdict needs all three to say it
AGREEING_LABELS = {"accuracy": "accuracy", "ari": "ARI", "ami": "AMI"}


def compare_partitions(a: dict, b: dict, margin: float) -> str:
    """"better", "worse" or "mixed": ``a`` against ``b`` on accuracy, ARI and AMI together
    (better: each higher by more than ``margin``; worse: none higher by more than it)."""
    ahead = [a[k] > b[k] + margin for k in AGREEING_SCORES]
    behind = [a[k] < b[k] - margin for k in AGREEING_SCORES]
    return "better" if all(ahead) else "worse" if not any(ahead) and any(behind) else \
        "alike" if not any(ahead) else "mixed"


def _listed(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _against(a: dict, b: dict, margin: float) -> str:
    """Where partition ``a`` is ahead of ``b`` and where behind, beyond ``margin``."""
    ahead = [AGREEING_LABELS[k] for k in AGREEING_SCORES if a[k] > b[k] + margin]
    behind = [AGREEING_LABELS[k] for k in AGREEING_SCORES if a[k] < b[k] - margin]
    parts = ([f"ahead on {_listed(ahead)}"] if ahead else []) + (
        [f"behind on {_listed(behind)}"] if behind else [])
    return ", ".join(parts) or "alike on every score"


def _scores_pair(a: dict, b: dict) -> str:
    return ", ".join(f"{AGREEING_LABELS[k]} {_f(a[k])} against {_f(b[k])}"
                     for k in AGREEING_SCORES)


def _embedding_evidence(emb: EmbeddingResult | None, best_gmm: dict) -> str:
    if emb is None:
        return ""
    verdict = compare_partitions(emb.row, best_gmm, CLEARLY_BETTER)
    pair = _scores_pair(emb.row, best_gmm)
    if verdict == "better":
        return (f", and the same images cluster far better after the nonlinear embedding "
                f"below ({pair} for the best mixture)")
    if verdict == "mixed":
        ahead = [AGREEING_LABELS[k] for k in AGREEING_SCORES
                 if emb.row[k] > best_gmm[k] + CLEARLY_BETTER]
        rest = [AGREEING_LABELS[k] for k in AGREEING_SCORES if AGREEING_LABELS[k] not in ahead]
        return (f" (the nonlinear embedding below is ahead by more than {CLEARLY_BETTER} on "
                f"{' and '.join(ahead)}, not on {' and '.join(rest)}: {pair} for the best "
                "mixture)")
    return (f" (though the nonlinear embedding below does not cluster them clearly better "
            f"either: {pair} for the best mixture)")


def _embedding_text(emb: EmbeddingResult, k: int, kmeans_row: dict,
                    seed_comparable: bool = False, epochs: int = 0) -> str:
    e = emb.row
    verdict = compare_partitions(e, kmeans_row, SCORE_NOISE)
    finds = ("Neither it nor k-means on PCA finds the classes (an ARI under "
             f"{CHANCE_ARI} is close to chance's 0)" if max(e["ari"], kmeans_row["ari"]) < CHANCE_ARI
             else "It finds the classes better than k-means on PCA" if verdict == "better"
             else f"Against k-means on PCA it is {_against(e, kmeans_row, SCORE_NOISE)}"
             if verdict == "mixed" else "It finds the classes no better than k-means on PCA")
    prep = ("each image is first deskewed (sheared upright by its second moments and centred on "
            "its centre of mass, the classic MNIST preprocessing, so that slanted and upright "
            "writings of a digit become neighbours); then " if emb.deskewed else "")
    seed = ("; the seed reported homogeneity 0.485 for k-means on MNIST" if seed_comparable
            else "")
    layout = (f", {epochs} layout epochs where umap-learn would give 500 up to 10,000 images "
              f"and 200 above" if epochs else "")
    return (f"Here {prep}{emb.method} (n_neighbors from the config, min_dist 0{layout}) maps the "
            f"{emb.input_dim} first PCA components to {emb.dim} dimensions that keep each "
            f"image's nearest neighbours together, and a {emb.cluster.upper()} with {k} "
            f"components (best of several starts) clusters that space. {finds}: accuracy "
            f"<b>{_f(e['accuracy'])}</b>, ARI {_f(e['ari'])}, AMI {_f(e['ami'])}, homogeneity "
            f"{_f(e['homogeneity'])} (k-means on PCA: accuracy {_f(kmeans_row['accuracy'])}, "
            f"ARI {_f(kmeans_row['ari'])}, AMI {_f(kmeans_row['ami'])}, homogeneity "
            f"{_f(kmeans_row['homogeneity'])}{seed}). The embedding took "
            f"{emb.embed_s:.1f} s.")


def _leaderboard(inits, k2, gmm, birch, emb, pca) -> Block:
    entries = []
    for r in inits.rows:
        entries.append((f"k-means ({r['init']})", f"PCA-{inits.n_components}", inits.n_clusters,
                        r))
    entries.append(("k-means (k-means++)", "PCA-2", k2.contingency.shape[1],
                    {**k2.scores, "fit_s": float("nan"), "peak_mb": float("nan")}))
    for r in gmm.rows:
        space = f"PCA-{gmm.n_dims}" if gmm.space == "pca" else "raw pixels"
        entries.append((f"GMM ({r['covariance']})", space, inits.n_clusters, r))
    entries.append(("Birch", f"PCA-{pca.n_chosen}", inits.n_clusters, birch.row))
    if emb is not None:
        source = f"{'deskewed ' if emb.deskewed else ''}PCA-{emb.input_dim}"
        entries.append((f"UMAP + {emb.cluster.upper()}", f"UMAP-{emb.dim} of {source}",
                        inits.n_clusters, emb.row))
    entries.sort(key=lambda e: -e[3]["accuracy"])
    rows = [[name, space, k, _f(r["accuracy"]), _f(r["ari"]), _f(r["ami"]),
             _f(r["homogeneity"]), _silhouette(r) if "silhouette" in r else "n/a",
             _f(r["fit_s"], 2), _f(r["peak_mb"], 0)] for name, space, k, r in entries]
    return table(["method", "space", "K", "accuracy", "ARI", "AMI", "homogeneity", "silhouette",
                  "fit (s)", "peak RSS (MiB)"], rows,
                 "Every clustering of this study, best accuracy first (silhouette is measured "
                 "in the space each method clustered, so it compares methods of one space only)")
