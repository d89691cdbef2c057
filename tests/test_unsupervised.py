import numpy as np
import pytest
from sklearn import metrics

from mnistlab import build_config, load_dataset
from mnistlab.core.errors import ConfigError
from mnistlab.engine.step import call_step, call_sweep
from mnistlab.sections import unsupervised as u
from mnistlab.sections.clustering_metrics import (
    cluster_accuracy,
    matched_contingency,
    partition_scores,
    silhouette_estimate,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def pca(digits):
    return call_step(u.fit_pca, digits, u.Params())


def test_hungarian_accuracy_on_a_hand_made_contingency():
    # classes 0,1,2; cluster 7 holds class 0 (3 of 4), cluster 5 class 1, cluster 9 class 2.
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    y_pred = np.array([7, 7, 7, 5, 5, 5, 5, 9, 9, 7])
    table, columns, accuracy = matched_contingency(y_true, y_pred, 3)
    assert accuracy == pytest.approx(8 / 10)
    assert columns.tolist() == [7, 5, 9]
    assert table.tolist() == [[3, 1, 0], [0, 3, 0], [1, 0, 2]] and table.dtype.kind == "i"  # counts
    # columns in the order of the classes they are matched to, whatever the clusters' own order
    table, columns, _ = matched_contingency(np.array([0, 0, 1, 1, 2, 2]),
                                            np.array([10, 10, 30, 30, 20, 20]), 3)
    assert columns.tolist() == [10, 30, 20] and np.array_equal(table, 2 * np.eye(3))
    # A permutation of the labels is a perfect partition.
    assert cluster_accuracy(y_true, (y_true + 1) % 3) == 1.0


def test_cluster_accuracy_matches_each_cluster_to_a_class_of_its_own():
    """Two clusters mostly of class 0: one-to-one, only one of them counts as class 0 (4 of 6
    right); a many-to-one rule would count both (5 of 6)."""
    y_true = np.array([0, 0, 0, 0, 0, 1])
    y_pred = np.array([0, 0, 0, 1, 1, 1])
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 6)


def test_scores_equal_scikit_learns_on_real_labels(digits, pca):
    from sklearn.cluster import KMeans

    x, y = u.training_pixels(digits, 0, 0)
    labels = KMeans(10, n_init=1, random_state=0).fit_predict(u.project(x, pca, pca.n_chosen))
    scores = partition_scores(y, labels)
    assert scores["homogeneity"] == pytest.approx(metrics.homogeneity_score(y, labels))
    assert scores["completeness"] == pytest.approx(metrics.completeness_score(y, labels))
    assert scores["v_measure"] == pytest.approx(metrics.v_measure_score(y, labels))
    assert scores["ari"] == pytest.approx(metrics.adjusted_rand_score(y, labels))
    assert scores["ami"] == pytest.approx(metrics.adjusted_mutual_info_score(y, labels))
    assert scores["rand"] == pytest.approx(metrics.rand_score(y, labels))
    assert 0.5 < scores["accuracy"] < 1.0


def test_silhouette_is_exact_on_small_data_and_sampled_with_an_error_bar(digits, pca):
    x, y = u.training_pixels(digits, 0, 0)
    z = u.project(x, pca, 10)
    exact = silhouette_estimate(z, y, sample=5000, repeats=3, seed=0)
    assert exact["silhouette_exact"] and exact["silhouette"] == pytest.approx(
        metrics.silhouette_score(z, y))
    sampled = silhouette_estimate(z, y, sample=600, repeats=4, seed=0)
    assert not sampled["silhouette_exact"] and sampled["silhouette_n"] == 600
    assert sampled["silhouette_sd"] > 0
    assert abs(sampled["silhouette"] - exact["silhouette"]) < 4 * sampled["silhouette_sd"] + 0.02


def test_reconstruction_error_decreases_with_n_and_vanishes_at_all_pixels(pca):
    assert pca.gallery_components[-1] == 64  # 8x8 digits: the gallery stops at the pixel count
    assert all(a >= b - 1e-9 for a, b in zip(pca.dataset_mse, pca.dataset_mse[1:]))
    assert pca.gallery_mse[0] > pca.gallery_mse[-1]
    assert pca.gallery_mse[-1] == pytest.approx(0, abs=1e-6)


def test_n_components_is_the_smallest_reaching_the_target(pca):
    cumulative = np.cumsum(pca.explained_variance_ratio)
    n = pca.n_chosen
    assert cumulative[n - 1] >= 0.9 > cumulative[n - 2]
    assert pca.marks["0.9"] == n and pca.marks["0.8"] < n < pca.marks["0.99"]


def test_bic_curve_uses_the_lowest_bic_type_and_every_k(digits, pca):
    params = u.Params(gmm_covariance_types=["spherical", "diag"], bic_k=[4, 6, 8],
                      n_clusters=10)
    gmm = call_step(u.gaussian_mixtures, digits, params, pca=pca)
    assert [r["covariance"] for r in gmm.rows] == ["spherical", "diag"]
    curve = call_sweep(u.bic_point, u.bic_curve, digits, params, over="k", values=params.bic_k,
                       pca=pca, gmm=gmm)
    assert curve.covariance_type == min(gmm.rows, key=lambda r: r["bic"])["covariance"]
    assert curve.ks == [4, 6, 8] and curve.best_k in curve.ks


def test_fixed_init_uses_one_real_image_per_class(digits):
    y = digits.y_train
    chosen = u.fixed_init_indices(y, 10, seed=0)
    assert sorted(y[chosen].tolist()) == list(range(10))


@pytest.mark.parametrize("override, message", [
    ({"kmeans_k": [0, 5]}, "unsupervised.kmeans_k: Value error, give at least one value, every "
                           "value >= 1"),
    ({"inits": ["k-means++", "furthest"]}, "unsupervised.inits.1: Input should be 'k-means++', "
                                           "'random' or 'fixed'"),
    ({"gmm_covariance_types": ["round"]}, "unsupervised.gmm_covariance_types.0"),
    ({"n_clusters": -1}, "unsupervised.n_clusters: Input should be greater than or equal to 0"),
])
def test_bad_parameters_are_rejected_by_name(override, message):
    with pytest.raises(ConfigError) as info:
        build_config("full", {"unsupervised": override})
    assert message in str(info.value)


def test_gallery_larger_than_the_pixel_count_is_rejected(digits):
    with pytest.raises(ConfigError, match="gallery_components: 784 is larger than the 64 pixels"):
        u.plan(digits, u.Params(gallery_components=[10, 784]), seed=0)


@pytest.mark.parametrize("override, message", [
    ({"kmeans_k": [2000, 3000]}, "unsupervised.kmeans_k: every K is above the 1,437 points"),
    ({"bic_k": [400], "bic_sample": 300}, "unsupervised.bic_k: every K is above the 300 points"),
])
def test_a_sweep_with_no_possible_point_is_rejected_at_plan_time(digits, override, message):
    with pytest.raises(ConfigError, match=message):
        u.plan(digits, u.Params(**override), seed=0)
    u.plan(digits, u.Params(**{k: [*v, 5] if k.endswith("_k") else v
                               for k, v in override.items()}), seed=0)  # one K that fits


def test_deskew_makes_a_slanted_stroke_upright_and_centred():
    from mnistlab.data.preprocess import deskew

    image = np.zeros((28, 28), np.float32)
    for r in range(4, 24):  # a stroke leaning right by half a pixel per row, off centre
        image[r, int(round(8 + 0.5 * (r - 14)))] = 255
    straight = deskew(np.stack([image, np.zeros_like(image)]))
    rows, cols = np.mgrid[0:28, 0:28]

    def moments(x):
        m = x.sum()
        cr, cc = (x * rows).sum() / m, (x * cols).sum() / m
        return cr, cc, (x * (rows - cr) * (cols - cc)).sum() / m

    assert moments(image)[2] > 10  # slanted before
    cr, cc, cov = moments(straight[0])
    assert abs(cov) < 0.5 and abs(cr - 13.5) < 0.5 and abs(cc - 13.5) < 0.5
    assert straight[0].sum() == pytest.approx(image.sum(), rel=0.05)  # ink kept
    assert not straight[1].any()  # a blank image stays blank
    with pytest.raises(ValueError, match="height, width"):
        deskew(image)


def test_embedding_clusters_real_digits_well():
    mnist = load_dataset("mnist-5k")
    p = u.Params(max_train=2000, embedding_n_init=3, silhouette_repeats=1, plot_points=500,
                 n_clusters=10)
    result = call_step(u.embedding_clusters, mnist, p)
    assert result.deskewed and result.input_dim == 50
    assert result.row["accuracy"] > 0.9  # 0.96 measured; 0.78 without deskewing
    assert result.contingency.sum() == 2000
    assert result.points.shape == (500, 2)



def test_the_embedding_runs_the_layout_epochs_asked_for_and_umaps_own_by_default():
    """0 leaves umap-learn's rule (500 epochs up to 10,000 images): bit for bit as asking for
    500; the quick profile's 200 give another layout, and the full profile's step is keyed as
    before the field existed (its stored embedding is reused)."""
    digits = load_dataset("digits")
    p = u.Params(max_train=600, embedding_n_init=1, silhouette_repeats=1, plot_points=100,
                 n_clusters=10, embedding_dim=2)
    default, five_hundred, two_hundred = (
        call_step(u.embedding_clusters, digits, p.model_copy(update={"embedding_epochs": n}))
        for n in (0, 500, 200))
    assert np.array_equal(default.points, five_hundred.points)
    assert not np.array_equal(default.points, two_hundred.points)
    assert two_hundred.row["accuracy"] > 0.6

    def embedding_arguments(profile):
        steps = u.plan(digits, build_config(profile).unsupervised, 0)
        return next(s for s in steps if s.name == "embedding").arguments

    assert "embedding_epochs" not in embedding_arguments("full")
    assert embedding_arguments("quick")["embedding_epochs"] == u.QUICK["embedding_epochs"]

_LAYOUT_WITH_OR_WITHOUT_PYNNDESCENT = """
import importlib, sys, warnings
import numpy as np
from sklearn.datasets import load_digits
from mnistlab.sections.unsupervised import (_UNCACHED_UMAP_KERNELS, _exact_neighbors,
                                            cache_umap_kernels, umap_class)
warnings.simplefilter("ignore")
UMAP = umap_class(approximate_neighbours=sys.argv[1] == "search")
searched = "pynndescent" in sys.modules
cache_umap_kernels()  # as the embedding does
z = load_digits().data[:300].astype(np.float32)
layout = UMAP(n_neighbors=10, random_state=0, n_epochs=50,
              precomputed_knn=_exact_neighbors(z, 10)).fit_transform(z)
print(searched, layout.astype(np.float64).sum(), layout[:3].tolist())
print(*(sum(getattr(importlib.import_module(m), n).stats.cache_hits.values())
        for m, n in _UNCACHED_UMAP_KERNELS))
import umap.umap_
umap_class(approximate_neighbours=True)  # a later search gets the real pynndescent
import pynndescent
import pynndescent.distances
print(pynndescent.NNDescent.__module__, umap.umap_.NNDescent is pynndescent.NNDescent,
      umap.umap_.pynn_named_distances is pynndescent.distances.named_distances)
"""


def _layout(mode: str) -> list[str]:
    """The script above in a new process, the embedding's way: (pynndescent imported, layout),
    cache hits of the three kernels, then the real pynndescent."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", _LAYOUT_WITH_OR_WITHOUT_PYNNDESCENT, mode],
                          check=True, capture_output=True, text=True).stdout.splitlines()


@pytest.fixture(scope="module")
def exact_layout() -> list[str]:
    """One process's embedding from exact neighbours (each costs seconds of imports)."""
    return _layout("exact")


def test_umaps_uncached_kernels_compile_once_per_machine_not_once_per_process(exact_layout):
    """The embedding's process compiled them afresh in every study (4 s of a quick study's
    embedding); compiled once (by the fixture's process, or an earlier test), a new process
    loads all three, and lays the points out as the first did."""
    again = _layout("exact")
    assert [int(h) for h in again[1].split()] == [1, 1, 1]
    assert again[0] == exact_layout[0]


def test_a_umap_given_exact_neighbours_is_computed_without_importing_pynndescent(exact_layout):
    """Its import compiles pynndescent's kernels: 19 s of a fresh install's first quick study,
    for a neighbour search that exact neighbours make unused. The layout is the same."""
    without, searched = exact_layout, _layout("search")
    assert without[0].startswith("False ") and searched[0].startswith("True ")
    assert without[0].split(" ", 1)[1] == searched[0].split(" ", 1)[1]  # the same layout
    assert without[2] == searched[2] == "pynndescent.pynndescent_ True True"


_GRAPH_KERNELS_SERIAL_AND_PARALLEL = """
import numpy as np
import umap.umap_ as umap_
from sklearn.datasets import load_digits
from mnistlab.sections.unsupervised import _PARALLEL_UMAP_KERNELS, _exact_neighbors
from mnistlab.sections.unsupervised import _serial_graph_kernels
parallel = {name: getattr(umap_, name) for name in _PARALLEL_UMAP_KERNELS}
_serial_graph_kernels()
serial = {name: getattr(umap_, name) for name in _PARALLEL_UMAP_KERNELS}
z = load_digits().data.astype(np.float32)
indices, distances = _exact_neighbors(z, 15)
distances = distances.astype(np.float32)
outputs = []
for kernels in (parallel, serial):
    sigmas, rhos = kernels["smooth_knn_dist"](distances, 15.0)
    graph = kernels["compute_membership_strengths"](indices, distances, sigmas, rhos)
    outputs.append((sigmas, rhos, *graph))
print([kernel.targetoptions.get("parallel", False) for kernel in serial.values()],
      [bool(np.array_equal(a, b)) for a, b in zip(*outputs)])
"""


def test_umaps_graph_kernels_run_serially_with_the_values_of_its_parallel_ones():
    """Compiling their parfors was 16-17 of a cold quick embedding's 26-29 s of compilation,
    for kernels the embedding runs on one thread anyway; the serial copies must compute what
    umap-learn's own do, bit for bit (sigmas, rhos, and the graph's rows, columns, weights and
    distances)."""
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _GRAPH_KERNELS_SERIAL_AND_PARALLEL],
                         check=True, capture_output=True, text=True,
                         # one thread, as in the embedding's process: on more, the
                         # parallel kernel's np.mean may sum in another order
                         env={**os.environ, "NUMBA_NUM_THREADS": "1"}).stdout
    assert out.split("\n")[0] == "[False, False] [True, True, True, True, True, True]"


def test_silhouette_edge_cases_say_exactly_what_was_measured(digits, pca):
    from mnistlab.data.prepare import stratified_subset

    x, y = u.training_pixels(digits, 0, 0)
    z = u.project(x, pca, 10)
    one = silhouette_estimate(z, np.zeros(len(z), int), sample=100, repeats=3, seed=0)
    assert np.isnan(one.pop("silhouette"))
    assert one == {"silhouette_sd": 0.0, "silhouette_n": len(z), "silhouette_exact": True}
    two = (y >= 5).astype(int)  # two clusters are enough for a silhouette
    assert silhouette_estimate(z, two, sample=len(z), repeats=3, seed=0) == {
        "silhouette": pytest.approx(metrics.silhouette_score(z, two)), "silhouette_sd": 0.0,
        "silhouette_n": len(z), "silhouette_exact": True}
    seed = 4
    sampled = silhouette_estimate(z, y, sample=600, repeats=3, seed=seed)
    values = [metrics.silhouette_score(*stratified_subset(z, y, 600, seed + r))
              for r in range(3)]
    assert sampled == {"silhouette": pytest.approx(np.mean(values)),
                       "silhouette_sd": pytest.approx(np.std(values, ddof=1)),
                       "silhouette_n": 600, "silhouette_exact": False}
    assert silhouette_estimate(z, y, sample=len(z), repeats=3, seed=0)["silhouette_exact"]
    once = silhouette_estimate(z, y, sample=300, repeats=1, seed=seed)
    assert np.isnan(once["silhouette_sd"]) and once["silhouette_n"] == 300
