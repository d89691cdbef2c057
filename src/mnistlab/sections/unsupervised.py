"""Part 2 of the seed: PCA, then k-means, EM (Gaussian mixtures) and Birch, plus clustering in a
learned (UMAP) embedding.

One PCA fit serves everything: the full spectrum comes from the covariance matrix's
eigendecomposition (784 x 784, under a second) and each reduction slices its components.
Clustering runs on the data reduced to the smallest n reaching ``variance_target`` of the
variance; pixels are scaled to 0..1 float32 first.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.errors import ConfigError
from ..data.datasets import Dataset
from ..data.prepare import flat_pixels, stratified_subset
from ..data.prepare import project as project_rows
from ..data.preprocess import deskew
from ..engine.measure import Measured
from ..engine.step import Step, SweepPoint, bind, gathered_rows, sweep
from .clustering_metrics import (
    PartitionScores,
    Silhouette,
    matched_contingency,
    partition_scores,
    silhouette_estimate,
)

NAME = "unsupervised"
TITLE = "2. Unsupervised learning: PCA and clustering"

CovarianceType = Literal["spherical", "tied", "diag", "full"]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_train: int = Field(0, ge=0, description="training images used (0 = all)")
    gallery_components: list[int] = Field(
        [], description="n_components of the reconstruction gallery; empty = 1..10, 20, 50, "
                        "100, 200, 500 and all pixels (values above the pixel count are rejected)")
    variance_marks: list[float] = Field([0.8, 0.9, 0.95, 0.99],
                                        description="explained-variance levels marked on the curve")
    variance_target: float = Field(0.90, gt=0, le=1, description="explained variance the "
                                   "reduced space keeps: it sets n_components for clustering")
    kmeans_k: list[int] = Field([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 50, 100, 150],
                                description="K of the k-means sweep")
    kmeans_n_init: int = Field(1, ge=1, description="k-means restarts per fit")
    n_clusters: int = Field(0, ge=0, description="K of the detailed evaluations; 0 = the "
                            "number of classes")
    inits: list[Literal["k-means++", "random", "fixed"]] = Field(
        ["k-means++", "random", "fixed"],
        description="k-means initialisations compared; fixed = one real training image per class")
    silhouette_sample: int = Field(10_000, ge=100, description="silhouette is exact up to this "
                                   "many points, else estimated on stratified samples this size")
    silhouette_repeats: int = Field(3, ge=1, description="samples the silhouette estimate "
                                    "averages (their spread is the sampling error)")
    gmm_space: Literal["pca", "raw"] = Field("pca", description="pca: the reduced space; raw: "
                                             "the seed's 784 raw pixels (much slower)")
    gmm_covariance_types: list[CovarianceType] = Field(["spherical", "tied", "diag", "full"],
                                                       description="GaussianMixture covariances")
    gmm_max_iter: int = Field(100, ge=1, description="EM iterations at most")
    bic_k: list[int] = Field(list(range(5, 21)), description="K of the BIC curve")
    bic_sample: int = Field(5_000, ge=100, description="points the BIC curve is fitted on "
                            "(a seeded stratified sample; 16 full-covariance fits on all the "
                            "data would dominate the section's time)")
    birch_threshold: float = Field(0.5, gt=0, description="Birch subcluster radius, as a "
                                   "fraction of the data's RMS distance to its mean")
    embedding: bool = Field(True, description="cluster in a UMAP embedding too")
    embedding_dim: int = Field(10, ge=2, description="UMAP output dimensions")
    embedding_neighbors: int = Field(15, ge=2, description="UMAP n_neighbors")
    embedding_input_dim: int = Field(50, ge=2, description="PCA components fed to UMAP")
    embedding_epochs: int = Field(0, ge=0, description="UMAP's layout optimisation epochs "
                                  "(0 = umap-learn's default: 500 up to 10,000 images, else "
                                  "200)")
    embedding_deskew: bool | Literal["auto"] = Field(
        "auto", description="straighten each image by its moments before the embedding "
        "(slanted and upright writings of a digit become neighbours); auto: for the named "
        "digit datasets only")
    embedding_n_init: int = Field(10, ge=1, description="restarts of the clustering in the "
                                  "embedding; the best by its own objective is kept")
    embedding_cluster: Literal["gmm", "kmeans"] = Field("gmm", description="clustering in the "
                                                        "embedding")
    plot_points: int = Field(6_000, ge=100, description="points drawn in scatter plots")

    @field_validator("kmeans_k", "bic_k")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if not values or min(values) < 1:
            raise ValueError("give at least one value, every value >= 1")
        return sorted(set(values))

    @field_validator("gallery_components")
    @classmethod
    def _positive_or_empty(cls, values: list[int]) -> list[int]:
        if values and min(values) < 1:
            raise ValueError("every value must be >= 1")
        return sorted(set(values))

    @field_validator("inits")
    @classmethod
    def _some_init(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("give at least one initialisation")
        return list(dict.fromkeys(values))


QUICK = {"max_train": 3000, "kmeans_k": [1, 2, 5, 10, 20, 50], "bic_k": [5, 8, 10, 12, 15],
         "silhouette_repeats": 2, "bic_sample": 3000, "plot_points": 3000,
         # The epochs umap-learn gives 10,000 images or more (the full profile's 60,000): its
         # 500 for 3,000 images were 7.8 of the embedding's 8-9 s (py-spy). mnist-5k, seeds
         # 0-4: accuracy 0.9484 -> 0.9473 on average (per seed -0.004 to +0.001; seed-to-seed
         # sd 0.005), ARI 0.890 -> 0.888; the embedding (PCA, neighbours, layout) 8.1-8.8 ->
         # 3.5-3.8 s.
         "embedding_epochs": 200}


def gallery_for(gallery_components: list[int], n_features: int) -> list[int]:
    """The gallery's n values for images of ``n_features`` pixels."""
    if not gallery_components:
        auto = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 50, 100, 200, 500]
        return [n for n in auto if n < n_features] + [n_features]
    too_big = [n for n in gallery_components if n > n_features]
    if too_big:
        raise ConfigError(f"unsupervised.gallery_components: {too_big[0]} is larger than "
                          f"the {n_features} pixels of an image")
    return list(gallery_components)


# ------------------------------------------------------------------ results

class KMeansRow(PartitionScores):
    k: int
    inertia: float
    n_iter: int
    fit_s: float
    peak_mb: float


class InitRow(PartitionScores, Silhouette):
    init: str
    n_init: int
    n_iter: int
    inertia: float
    fit_s: float
    peak_mb: float


class ClusteringScores(PartitionScores, Silhouette):
    pass


class FittedClusteringScores(ClusteringScores):
    fit_s: float
    peak_mb: float


class GmmRow(PartitionScores):
    covariance: str
    bic: float
    aic: float
    converged: bool
    n_iter: int
    fit_s: float
    peak_mb: float
    n_parameters: int


@dataclass
class PcaResult:
    n_train: int
    n_features: int
    explained_variance_ratio: np.ndarray  # all components, descending
    mean: np.ndarray  # (n_features,) float32, pixels on 0..1
    components: np.ndarray  # (n_features, n_features) float32, rows = components
    marks: dict[str, int]  # "0.9" -> smallest n reaching it
    n_chosen: int
    variance_target: float
    gallery_index: int
    gallery_image: np.ndarray  # (H, W) uint8
    gallery_components: list[int]
    gallery_reconstructions: np.ndarray  # (len(gallery_components), H, W) float32
    gallery_mse: list[float]  # of that image, per n
    dataset_mse: list[float]  # average over the training set, per n (from the eigenvalues)
    fit_s: float
    constant_pixels: int  # pixels of the same value in every training image used
    black_pixels: int  # of which: always 0 (black)


@dataclass
class KMeansSweep:
    n_components: int
    rows: list[KMeansRow]


@dataclass
class KMeansInits:
    n_clusters: int
    n_components: int
    n_init: int
    rows: list[InitRow]
    contingency: np.ndarray  # (n_inits, n_classes, K) columns in matched order
    column_clusters: np.ndarray  # (n_inits, K)
    fixed_indices: np.ndarray  # training images used as the fixed init


@dataclass
class KMeans2D:
    scores: ClusteringScores
    contingency: np.ndarray
    points: np.ndarray  # (plot_points, 2)
    point_clusters: np.ndarray
    point_classes: np.ndarray
    centers: np.ndarray  # (K, 2)
    explained_variance: float


@dataclass
class GmmResult:
    space: str
    n_dims: int
    n_clusters: int
    rows: list[GmmRow]
    point_clusters: np.ndarray  # (n_types, plot_points)
    points: np.ndarray  # (plot_points, 2): first two PCA components


@dataclass
class BicCurve:
    covariance_type: str
    n_samples: int
    ks: list[int]
    bic: list[float]
    aic: list[float]
    best_k: int


@dataclass
class BirchResult:
    threshold: float
    n_subclusters: int
    row: FittedClusteringScores


@dataclass
class EmbeddingResult:
    method: str
    deskewed: bool
    input_dim: int
    dim: int
    cluster: str
    row: FittedClusteringScores
    embed_s: float
    points: np.ndarray  # (plot_points, 2): first two embedding dimensions
    point_clusters: np.ndarray
    point_classes: np.ndarray
    contingency: np.ndarray


# ------------------------------------------------------------------ computations

def training_pixels(data: Dataset, max_train: int, seed: int):
    """Flattened training pixels scaled to 0..1 float32, and labels (a stratified subset)."""
    x, y = stratified_subset(data.x_train, data.y_train, max_train or None, seed)
    return flat_pixels(x), y


def fit_pca(
    data: Dataset,
    *,
    gallery_components: list[int],
    max_train: int,
    variance_marks: list[float],
    variance_target: float,
    seed: int,
) -> PcaResult:
    from sklearn.decomposition import PCA

    x, _ = training_pixels(data, max_train, seed)
    n_features = x.shape[1]
    gallery_ns = gallery_for(gallery_components, n_features)
    started = time.perf_counter()
    # covariance_eigh: one 784x784 eigendecomposition gives every component (n_samples >> 784).
    pca = PCA(svd_solver="covariance_eigh").fit(x)
    fit_s = time.perf_counter() - started
    ratio = pca.explained_variance_ratio_.astype(np.float64)
    cumulative = np.cumsum(ratio)

    def smallest_n(level: float) -> int:
        return int(min(np.searchsorted(cumulative, level - 1e-12) + 1, len(cumulative)))

    components = pca.components_.astype(np.float32)
    mean = pca.mean_.astype(np.float32)
    index = int(np.random.default_rng(seed).integers(len(x)))
    image = x[index]
    centred = image - mean
    recon, mse = [], []
    for n in gallery_ns:
        v = components[:n]
        r = mean + (centred @ v.T) @ v
        recon.append(r.reshape(data.image_shape))
        mse.append(float(np.mean((r - image) ** 2)))
    # Average squared error per pixel of an n-component reconstruction = the variance left out.
    total_var = float(np.sum(pca.explained_variance_)) * (len(x) - 1) / len(x)
    # PCA has at most n_samples components: n beyond them loses nothing more.
    dataset_mse = [max(float((1 - cumulative[min(n, len(cumulative)) - 1]) * total_var
                             / n_features), 0.0)
                   for n in gallery_ns]
    x_full, _ = stratified_subset(data.x_train, data.y_train, max_train or None, seed)
    flat = x_full.reshape(len(x_full), -1)
    constant = flat.min(axis=0) == flat.max(axis=0)
    return PcaResult(
        n_train=len(x), n_features=n_features, explained_variance_ratio=ratio, mean=mean,
        components=components, marks={f"{m:g}": smallest_n(m) for m in variance_marks},
        n_chosen=smallest_n(variance_target), variance_target=variance_target,
        gallery_index=index, gallery_image=x_full[index],
        gallery_components=gallery_ns,
        gallery_reconstructions=np.stack(recon).astype(np.float32), gallery_mse=mse,
        dataset_mse=dataset_mse, fit_s=fit_s, constant_pixels=int(constant.sum()),
        black_pixels=int((constant & (flat[0] == 0)).sum()))


def project(x: np.ndarray, pca: PcaResult, n: int) -> np.ndarray:
    """Coordinates of ``x`` on the first ``n`` principal components (float32)."""
    return project_rows(x, pca.mean, pca.components, n)


def _plot_subset(n: int, size: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed + 1).choice(n, size=min(size, n), replace=False))


def kmeans_point(
    data: Dataset,
    pca: PcaResult,
    *,
    k: int,
    kmeans_n_init: int,
    max_train: int,
    seed: int,
) -> SweepPoint:
    """One K of the k-means sweep, in the reduced space."""
    from sklearn.cluster import KMeans

    x, y = training_pixels(data, max_train, seed)
    z = project(x, pca, pca.n_chosen)
    if k > len(z):
        return SweepPoint(None)
    with Measured() as cost:
        model = KMeans(n_clusters=k, n_init=kmeans_n_init, random_state=seed).fit(z)
    return SweepPoint({"k": k, "inertia": float(model.inertia_), "n_iter": int(model.n_iter_),
                       "fit_s": cost.wall_s, "peak_mb": cost.peak_mb,
                       **partition_scores(y, model.labels_)})


def kmeans_sweep(data: Dataset, pca: PcaResult, points: dict[str, SweepPoint]) -> KMeansSweep:
    return KMeansSweep(pca.n_chosen, gathered_rows(points))


def fixed_init_indices(y: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """One random training image per class (cycling through classes if K > classes)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    chosen = []
    for i in range(n_clusters):
        members = np.flatnonzero(y == classes[i % len(classes)])
        chosen.append(rng.choice(np.setdiff1d(members, chosen)))
    return np.asarray(chosen)


def kmeans_inits(
    data: Dataset,
    pca: PcaResult,
    *,
    inits: list[Literal["k-means++", "random", "fixed"]],
    kmeans_n_init: int,
    max_train: int,
    n_clusters: int,
    silhouette_repeats: int,
    silhouette_sample: int,
    seed: int,
) -> KMeansInits:
    from sklearn.cluster import KMeans

    x, y = training_pixels(data, max_train, seed)
    z = project(x, pca, pca.n_chosen)
    fixed = fixed_init_indices(y, n_clusters, seed)
    rows, tables, columns = [], [], []
    for init in inits:
        start = z[fixed] if init == "fixed" else init
        n_init = 1 if init == "fixed" else kmeans_n_init
        with Measured() as cost:
            model = KMeans(n_clusters=n_clusters, init=start, n_init=n_init,
                           random_state=seed).fit(z)
        table, cols, _ = matched_contingency(y, model.labels_, data.n_classes)
        tables.append(_pad_columns(table, n_clusters))
        columns.append(np.pad(cols, (0, n_clusters - len(cols)), constant_values=-1))
        rows.append({"init": init, "n_init": n_init, "n_iter": int(model.n_iter_),
                     "inertia": float(model.inertia_), "fit_s": cost.wall_s,
                     "peak_mb": cost.peak_mb, **partition_scores(y, model.labels_),
                     **silhouette_estimate(z, model.labels_, silhouette_sample,
                                           silhouette_repeats, seed)})
    return KMeansInits(n_clusters, pca.n_chosen, kmeans_n_init, rows, np.stack(tables),
                       np.stack(columns), fixed)


def _pad_columns(table: np.ndarray, k: int) -> np.ndarray:
    return np.pad(table, ((0, 0), (0, max(0, k - table.shape[1]))))


def kmeans_2d(
    data: Dataset,
    pca: PcaResult,
    *,
    kmeans_n_init: int,
    max_train: int,
    n_clusters: int,
    plot_points: int,
    silhouette_repeats: int,
    silhouette_sample: int,
    seed: int,
) -> KMeans2D:
    from sklearn.cluster import KMeans

    x, y = training_pixels(data, max_train, seed)
    z = project(x, pca, 2)
    model = KMeans(n_clusters=n_clusters, n_init=kmeans_n_init, random_state=seed).fit(z)
    table, _, _ = matched_contingency(y, model.labels_, data.n_classes)
    scores = {**partition_scores(y, model.labels_),
              **silhouette_estimate(z, model.labels_, silhouette_sample,
                                    silhouette_repeats, seed)}
    keep = _plot_subset(len(z), plot_points, seed)
    return KMeans2D(scores, _pad_columns(table, n_clusters), z[keep], model.labels_[keep],
                    y[keep], model.cluster_centers_.astype(np.float32),
                    float(pca.explained_variance_ratio[:2].sum()))


def _gmm_space(
    data: Dataset,
    pca: PcaResult,
    *,
    gmm_space: Literal["pca", "raw"],
    max_train: int,
    seed: int,
):
    x, y = training_pixels(data, max_train, seed)
    z = x if gmm_space == "raw" else project(x, pca, pca.n_chosen)
    return z, y, project(x, pca, 2)


def gaussian_mixtures(
    data: Dataset,
    pca: PcaResult,
    *,
    gmm_covariance_types: list[CovarianceType],
    gmm_max_iter: int,
    gmm_space: Literal["pca", "raw"],
    max_train: int,
    n_clusters: int,
    plot_points: int,
    seed: int,
) -> GmmResult:
    from sklearn.mixture import GaussianMixture

    z, y, z2 = _gmm_space(data, pca, gmm_space=gmm_space, max_train=max_train, seed=seed)
    keep = _plot_subset(len(z), plot_points, seed)
    rows, point_clusters = [], []
    for cov in gmm_covariance_types:
        with Measured() as cost:
            model = GaussianMixture(n_components=n_clusters, covariance_type=cov,
                                    max_iter=gmm_max_iter, random_state=seed).fit(z)
        labels = model.predict(z)
        rows.append({"covariance": cov, "bic": float(model.bic(z)), "aic": float(model.aic(z)),
                     "converged": bool(model.converged_), "n_iter": int(model.n_iter_),
                     "fit_s": cost.wall_s, "peak_mb": cost.peak_mb,
                     "n_parameters": int(model._n_parameters()),
                     **partition_scores(y, labels)})
        point_clusters.append(labels[keep])
    return GmmResult(gmm_space, z.shape[1], n_clusters, rows, np.stack(point_clusters), z2[keep])


def bic_point(
    data: Dataset,
    pca: PcaResult,
    gmm: GmmResult,
    *,
    k: int,
    bic_sample: int,
    gmm_max_iter: int,
    gmm_space: Literal["pca", "raw"],
    max_train: int,
    seed: int,
) -> SweepPoint:
    """One K of the BIC curve: a mixture of the covariance type with the lowest BIC at K =
    n_clusters, on the curve's sample."""
    from sklearn.mixture import GaussianMixture

    best = min(gmm.rows, key=lambda r: r["bic"])["covariance"]
    z, y, _ = _gmm_space(data, pca, gmm_space=gmm_space, max_train=max_train, seed=seed)
    z, _ = stratified_subset(z, y, bic_sample, seed)
    facts = {"covariance_type": best, "n_samples": len(z)}
    if k > len(z):
        return SweepPoint(None, facts)
    model = GaussianMixture(n_components=k, covariance_type=best, max_iter=gmm_max_iter,
                            random_state=seed).fit(z)
    return SweepPoint({"k": k, "bic": float(model.bic(z)), "aic": float(model.aic(z))}, facts)


def bic_curve(data: Dataset, points: dict[str, SweepPoint]) -> BicCurve:
    facts = next(iter(points.values())).facts
    rows = gathered_rows(points)
    bic = [r["bic"] for r in rows]
    return BicCurve(facts["covariance_type"], facts["n_samples"], [r["k"] for r in rows], bic,
                    [r["aic"] for r in rows], rows[int(np.argmin(bic))]["k"])


def birch(
    data: Dataset,
    pca: PcaResult,
    *,
    birch_threshold: float,
    max_train: int,
    n_clusters: int,
    silhouette_repeats: int,
    silhouette_sample: int,
    seed: int,
) -> BirchResult:
    from sklearn.cluster import Birch

    x, y = training_pixels(data, max_train, seed)
    z = project(x, pca, pca.n_chosen)
    rms = float(np.sqrt(np.mean(np.sum(z**2, axis=1))))  # PCA coordinates are centred
    threshold = birch_threshold * rms
    with Measured() as cost:
        model = Birch(n_clusters=n_clusters, threshold=threshold).fit(z)
    labels = model.labels_
    row = {"fit_s": cost.wall_s, "peak_mb": cost.peak_mb, **partition_scores(y, labels),
           **silhouette_estimate(z, labels, silhouette_sample, silhouette_repeats, seed)}
    return BirchResult(threshold, len(model.subcluster_centers_), row)


# Up to this many points the embedding gives UMAP the exact neighbours; above, umap-learn's
# approximate search (pynndescent), whose cost grows as n log n instead of n squared. Fashion-
# MNIST's 60,000 training images, one core: exact 28 s; pynndescent 44 s, 36 s of it compiling
# its nn_descent kernel, in each process (numba cannot cache it: "dynamic globals").
_EXACT_BELOW = 80_000


def _exact_neighbors(z: np.ndarray, k: int) -> tuple:
    """The exact neighbours of each point, from scikit-learn (distances by BLAS), below
    ``_EXACT_BELOW`` points; above, (None, None, None): umap-learn searches itself.

    Below 4,096 points umap-learn would find them exactly too, one pair at a time through a
    Python call (16 million calls for 4,000 points: 10 of the quick study's 21 s). On one
    thread, as the rest of the embedding: its process limits the runtimes it loads (see the
    runner); this limit holds it to one core where it computes in the study's process too.
    The neighbours themselves came out equal on one and two threads (Fashion-MNIST, 60,000)."""
    if len(z) >= _EXACT_BELOW:
        return (None, None, None)
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        search = NearestNeighbors(n_neighbors=min(k, len(z))).fit(z)
        distances, indices = search.kneighbors(z)
    return indices, distances


# umap-learn's kernels that numba compiles in every process for want of ``cache=True``
# (upstream's lmcinnes/umap#1257 proposed it): 4.2 of a 3,000-point layout's 7.5 s.
_UNCACHED_UMAP_KERNELS = (("umap.umap_", "smooth_knn_dist"),
                          ("umap.umap_", "compute_membership_strengths"),
                          ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch"))


# umap-learn's kernels of the neighbour graph, which it compiles with numba's parallel=True,
# though the embedding runs them on one thread (a fixed random_state). Compiling their parfors
# took 16.1-17.2 of the 26-29 s a cold quick embedding compiled (mnist-5k, one core, a slow
# hour); serial copies compile in 6.3-6.9 s: the cold embedding 28.1-30.5 -> 19.4-23.2 s.
# The copies share umap's cache files with the originals (numba keys them by the function's
# bytecode, not its flags); either machine code gives the same values.
_PARALLEL_UMAP_KERNELS = ("smooth_knn_dist", "compute_membership_strengths")


def _serial_graph_kernels() -> None:
    """Put serial copies of those kernels in umap-learn's module, where its graph code calls
    them. parallel=True types the variables of a prange loop by inference, whatever the
    kernel's ``locals`` declare (``smooth_knn_dist`` bisects in float64, not float32): the
    copies are compiled without those declarations, and compute the same values, bit for bit.
    A kernel a later umap-learn renames or compiles serially itself is left as it is."""
    import numba
    import umap.umap_ as umap_

    for name in _PARALLEL_UMAP_KERNELS:
        kernel = getattr(umap_, name, None)
        if getattr(kernel, "targetoptions", {}).get("parallel") is True:
            setattr(umap_, name, numba.njit(kernel.py_func))


def cache_umap_kernels() -> None:
    """Turn on numba's on-disk cache for those kernels, as ``cache=True`` would: the first
    study compiles them, the later ones load them (the same machine code, so the same
    layout). A kernel a later umap-learn renames, or one numba finds no writable folder to
    cache in, compiles as before. The graph's kernels are serial copies (above). Call it
    once umap-learn is imported (:func:`umap_class`), so that pynndescent is not."""
    import importlib

    import numba

    # numba would pick TBB's threading layer where TBB is installed (scikit-learn-intelex
    # brings it); beside a process whose oneDAL computes on TBB, the embedding then waited
    # for it (digits, quick profile: 5.2 -> 130-195 s, one numba thread either way). Its one
    # thread needs no TBB: numba's own workqueue. Read when numba first starts its threads.
    numba.config.THREADING_LAYER = "workqueue"
    _serial_graph_kernels()
    for module, name in _UNCACHED_UMAP_KERNELS:
        kernel = getattr(importlib.import_module(module), name, None)
        try:
            kernel.enable_caching()
        except (AttributeError, RuntimeError):
            pass


# What umap-learn's module takes from pynndescent when it is imported (umap/umap_.py):
# pynndescent's approximate neighbour search, and its distances for metrics umap has none of.
_PYNNDESCENT_NAMES = {"NNDescent": ("pynndescent", "NNDescent"),
                      "pynn_named_distances": ("pynndescent.distances", "named_distances"),
                      "pynn_sparse_named_distances": ("pynndescent.sparse",
                                                      "sparse_named_distances")}


class _NoSearchIndex:
    """Stands for ``pynndescent.NNDescent`` in a umap imported without it: no object is one."""


def umap_class(approximate_neighbours: bool) -> type:
    """umap-learn's ``UMAP``, imported with pynndescent only if ``approximate_neighbours``.

    umap-learn imports pynndescent with itself, and numba compiles pynndescent's kernels as it
    is imported: 19 of a fresh install's 22 s of ``import umap`` (measured on this machine),
    on the critical path of the first quick study. Given the exact neighbours (below
    ``_EXACT_BELOW`` points) a euclidean UMAP never calls pynndescent, so umap-learn is then
    imported beside stand-ins that hold nothing (the same layout, bit for bit); once a call
    needs the search, the real pynndescent takes their place in umap-learn's module. No
    library imports umap lazily, hence this by hand.
    """
    import importlib
    import sys
    import types

    if "umap.umap_" not in sys.modules and not approximate_neighbours:
        absent = [name for name in ("pynndescent", "pynndescent.distances",
                                    "pynndescent.sparse") if name not in sys.modules]
        stand_ins = {name: types.ModuleType(name) for name in absent}
        for name, (module, attribute) in _PYNNDESCENT_NAMES.items():
            if module in stand_ins:
                setattr(stand_ins[module], attribute,
                        _NoSearchIndex if name == "NNDescent" else {})
        sys.modules.update(stand_ins)
        try:
            importlib.import_module("umap.umap_")
        finally:
            for name, module in stand_ins.items():  # a later import finds the real one
                if sys.modules.get(name) is module:
                    del sys.modules[name]
    umap_ = importlib.import_module("umap.umap_")
    if approximate_neighbours and umap_.NNDescent is _NoSearchIndex:
        for name, (module, attribute) in _PYNNDESCENT_NAMES.items():
            setattr(umap_, name, getattr(importlib.import_module(module), attribute))
    return umap_.UMAP


def embedding_clusters(
    data: Dataset,
    *,
    embedding_cluster: Literal["gmm", "kmeans"],
    embedding_deskew: bool,
    embedding_dim: int,
    embedding_input_dim: int,
    embedding_n_init: int,
    embedding_neighbors: int,
    max_train: int,
    n_clusters: int,
    plot_points: int,
    silhouette_repeats: int,
    silhouette_sample: int,
    seed: int,
    embedding_epochs: int = 0,
) -> EmbeddingResult:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    images, y = stratified_subset(data.x_train, data.y_train, max_train or None, seed)
    # imported here: numba compiles as umap and pynndescent are imported
    UMAP = umap_class(approximate_neighbours=len(images) >= _EXACT_BELOW)
    cache_umap_kernels()
    with Measured() as embed_cost, warnings.catch_warnings():
        # deskew returns a new float32 array: scale it in place rather than copy it again
        x = (deskew(images) if embedding_deskew else images.astype(np.float32))
        x = x.reshape(len(x), -1)
        x /= 255.0
        n_input = min(embedding_input_dim, x.shape[1])
        z = PCA(n_input, random_state=seed).fit_transform(x)
        # umap warns that a fixed random_state means one thread: we want that (reproducible);
        # and that given neighbours leave it no index for transform(): we never call it.
        warnings.filterwarnings("ignore", message="n_jobs value")
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
        reducer = UMAP(n_components=embedding_dim, n_neighbors=embedding_neighbors,
                       min_dist=0.0, random_state=seed, n_epochs=embedding_epochs or None,
                       precomputed_knn=_exact_neighbors(z, embedding_neighbors))
        e = reducer.fit_transform(z).astype(np.float32)
    with Measured() as cost:
        # Restarts matter here: of three single-start GMMs on one MNIST test set embedding, one
        # landed in a local optimum that merges two digits (accuracy 0.83 instead of 0.97).
        if embedding_cluster == "gmm":
            labels = GaussianMixture(n_clusters, covariance_type="full", n_init=embedding_n_init,
                                     random_state=seed).fit_predict(e)
        else:
            labels = KMeans(n_clusters, n_init=embedding_n_init,
                            random_state=seed).fit_predict(e)
    table, _, _ = matched_contingency(y, labels, data.n_classes)
    row = {"fit_s": embed_cost.wall_s + cost.wall_s,
           "peak_mb": max(embed_cost.peak_mb, cost.peak_mb), **partition_scores(y, labels),
           **silhouette_estimate(e, labels, silhouette_sample, silhouette_repeats, seed)}
    keep = _plot_subset(len(e), plot_points, seed)
    return EmbeddingResult("UMAP", embedding_deskew, n_input, embedding_dim,
                           embedding_cluster, row, embed_cost.wall_s, e[keep, :2],
                           labels[keep], y[keep], _pad_columns(table, n_clusters))


def plan(data: Dataset, params: Params, seed: int, engine: str = "sklearn",
         earlier: Mapping[str, Step] | None = None) -> list[Step]:
    """The section's steps. ``engine`` leaves them as they are: k-means stays scikit-learn's
    (oneDAL's saved 0.7 s of Fashion-MNIST's 1.9 s, and its different starts moved the K sweep's
    scores beyond scikit-learn's seed-to-seed range: bench/engine.py)."""
    params = params.model_copy(update={
        "n_clusters": params.n_clusters or data.n_classes,
        "embedding_deskew": (data.digits if params.embedding_deskew == "auto"
                             else params.embedding_deskew)})
    gallery_for(params.gallery_components, int(np.prod(data.image_shape)))  # fails early
    n_train = min(params.max_train or len(data.y_train), len(data.y_train))
    for field, ks, n_points in (("kmeans_k", params.kmeans_k, n_train),
                                ("bic_k", params.bic_k, min(params.bic_sample, n_train))):
        if min(ks) > n_points:  # no point of the sweep could be computed

            raise ConfigError(f"unsupervised.{field}: every K is above the {n_points:,} "
                              f"points it would cluster")

    def step(step_name: str, fn, /, one_core: bool = False, **needs: str) -> Step:
        return bind(step_name, fn, params, seed, needs=needs, one_core=one_core)

    # The K sweep and the BIC curve: one step per K, so that workers share them.
    steps = [
        step("pca", fit_pca),
        *sweep("kmeans_sweep", kmeans_point, kmeans_sweep, params, seed, over="k",
               values=params.kmeans_k, needs={"pca": "pca"}, gather_needs={"pca": "pca"}),
        # One core each: a second BLAS or OpenMP thread made them at most 1.15x faster, or
        # slower, on Fashion-MNIST (1 -> 2 threads: k-means inits 10.3 -> 9.8 s, 2-D k-means
        # 2.7 -> 2.7 s, mixtures 42.9 -> 46.9 s, Birch 5.4 -> 4.7 s), so each leaves the other
        # core to another step.
        step("kmeans_inits", kmeans_inits, one_core=True, pca="pca"),
        step("kmeans_2d", kmeans_2d, one_core=True, pca="pca"),
        step("gmm", gaussian_mixtures, one_core=True, pca="pca"),
    ]
    if params.embedding:
        # UMAP's seeded layout runs on one thread (umap-learn's rule for reproducibility) and
        # holds the GIL: it computes in a process of its own, beside every other step.
        embedding = bind("embedding", embedding_clusters, params, seed, own_process=True)
        if not params.embedding_epochs:  # umap-learn's default: the key of a study before
            del embedding.arguments["embedding_epochs"]  # this field, kept, not recomputed
        steps.append(embedding)
    steps += [
        # A mixture of a few thousand points gains nothing from a second BLAS thread.
        *sweep("bic", bic_point, bic_curve, params, seed, over="k", values=params.bic_k,
               needs={"pca": "pca", "gmm": "gmm"}, one_core=True),
        step("birch", birch, one_core=True, pca="pca"),
    ]
    return steps
