"""Each claim the report makes is computed from the run's numbers: numbers that make it true
give the sentence, numbers that make it false give another."""

import numpy as np
import pytest

from mnistlab.report.classic import tree_depth_answer
from mnistlab.sections.classic import TreeDepth


def _tree(train, val, test, depths=None, leaf_depth_max=None, best=None):
    depths = depths or list(range(1, len(train) + 1))
    best = best or depths[max(range(len(val)), key=val.__getitem__)]
    return TreeDepth(depths, train, val, test, leaf_depth_max or depths[-1], best, 1.0, 1000)


def test_a_deep_tree_that_memorises_and_overfits_is_said_to():
    text = tree_depth_answer(_tree([0.5, 0.8, 0.95, 1.0], [0.5, 0.75, 0.78, 0.76],
                                   [0.5, 0.74, 0.77, 0.75]))
    assert "memorises the training set" in text and "not memorise" not in text
    assert "declines to 0.760 at depth 4" in text
    assert "gap widens from 0.180 at the chosen depth to 0.250" in text and "overfit" in text


def test_a_tree_that_stopped_growing_is_reported_at_its_own_depth():
    text = tree_depth_answer(_tree([0.5, 0.9, 1.0, 1.0, 1.0], [0.5, 0.8, 0.85, 0.85, 0.85],
                                   [0.5, 0.8, 0.84, 0.84, 0.84], depths=[1, 5, 20, 25, 30],
                                   leaf_depth_max=20))
    assert "reaches 1.000 at depth 20 (the tree stopped growing at depth 20" in text
    assert "at depth 25" not in text and "at depth 30" not in text
    text = tree_depth_answer(_tree([0.5, 0.9, 0.99, 1.0, 1.0], [0.5, 0.8, 0.85, 0.85, 0.85],
                                   [0.5, 0.8, 0.84, 0.84, 0.84], depths=[1, 5, 12, 15, 30],
                                   leaf_depth_max=13))
    assert "reaches 1.000 at depth 15 (the tree stopped growing at depth 13" in text
    # mnist-5k, quick: grown to depth 17, swept up to 20: "reaches 1.000 at depth 20" alone
    text = tree_depth_answer(_tree([0.5, 0.9, 1.0], [0.5, 0.8, 0.8], [0.5, 0.74, 0.74],
                                   depths=[1, 10, 20], leaf_depth_max=17))
    assert ("reaches 1.000 at depth 20 (the tree stopped growing at depth 17: deeper limits up "
            "to 20 change nothing)") in text


def test_a_shrinking_gap_is_not_called_overfitting():
    text = tree_depth_answer(_tree([0.9, 0.95, 0.96], [0.85, 0.80, 0.93], [0.70, 0.80, 0.93],
                                   best=1))
    assert "shrinks" in text and "overfit" not in text and "widens" not in text
    assert "does not memorise" in text and "rises to 0.930" in text


def test_a_flat_validation_curve_is_called_flat():
    text = tree_depth_answer(_tree([0.8, 0.9, 0.95], [0.80, 0.803, 0.801],
                                   [0.79, 0.80, 0.80]))
    assert "is still within 0.005 of it at depth 3 (0.801)" in text and "declines" not in text


def test_a_fall_of_the_validation_curve_is_read_against_the_validation_set_size():
    """On scikit-learn's digits the validation split holds 144 images: 0.833 at depth 8, then
    0.819 (two images fewer) was read as a decline by a fixed 0.005 threshold."""
    from mnistlab.report.classic import validation_size

    tree = _tree([0.9, 0.97, 1.0], [0.80, 0.833, 0.819], [0.82, 0.858, 0.847], depths=[5, 8, 13],
                 leaf_depth_max=13, best=8)
    assert validation_size(1293, 0.1) == 144 and validation_size(48_000, 0.2) == 12_000
    small = tree_depth_answer(tree, n_val=144, n_test=360)
    assert ("peaks at depth <b>8</b> (0.833) and is still within 0.0893 (twice the noise of 144 "
            "validation images) of it at depth 13 (0.819)") in small
    assert "declines" not in small
    # the same numbers measured on 6,000 validation and 10,000 test images are a decline, and
    # the gap (0.112 -> 0.153) widens beyond the test set's noise
    large = tree_depth_answer(tree, n_val=6000, n_test=10_000)
    assert "and then declines to 0.819 at depth 13" in large
    assert "the train-test gap widens from 0.112 at the chosen depth to 0.153" in large
    assert "gap stays near 0.112" in small and "overfit" not in small


def _inits(ari, accuracy, contingency, rand=0.9):
    import numpy as np

    from mnistlab.sections.unsupervised import KMeansInits

    rows = [{"init": init, "ari": a, "ami": a, "accuracy": acc, "rand": rand, "inertia": 1.0,
             "n_iter": 5} for init, a, acc in zip(("k-means++", "random", "fixed"), ari, accuracy)]
    table = np.asarray(contingency)
    return KMeansInits(3, 10, 1, rows, np.stack([table] * len(rows)),
                       np.tile(np.arange(3), (len(rows), 1)), np.arange(3))


def test_shared_clusters_are_read_from_the_contingency_table():
    from mnistlab.report.unsupervised import _inits_answer

    names = ["Pullover", "Coat", "Sandal"]
    # Pullover and Coat both put >= 20 % of their images in cluster 0; Sandal is alone.
    text = _inits_answer(_inits([0.40, 0.41, 0.42], [0.5, 0.5, 0.5],
                                [[60, 40, 0], [50, 50, 0], [0, 5, 95]]), names)
    assert "classes sharing a cluster: Pullover/Coat (see" in text and "4/9" not in text
    # two clusters hold the same group: named once; the share of pairs of two classes measured
    assert "(67% of the pairs here are of two different classes)" in text
    two = _inits_answer(_inits([0.0, 0.0, 0.0], [0.52, 0.52, 0.52], [[450, 450], [300, 300]]),
                        ["0", "1"])
    assert "(48% of the pairs here are of two different classes)" in two
    assert "most pairs" not in two
    assert "within 0.020 ARI" in text and "50% of the images" in text
    text = _inits_answer(_inits([0.2, 0.5, 0.9], [0.4, 0.6, 0.95],
                                [[90, 5, 5], [5, 90, 5], [5, 5, 90]], rand=0.3), names)
    assert "no two classes share a cluster" in text
    assert "up to 0.700 ARI apart" in text and "reaches the classes best on every score" in text
    assert "much higher than" not in text and "close to" in text


def test_the_seed_comparisons_of_the_kmeans_answer_appear_only_on_mnist_like_digits():
    from mnistlab.report.unsupervised import _inits_answer

    inits = _inits([0.4, 0.41, 0.42], [0.5, 0.5, 0.5], [[60, 40, 0], [50, 50, 0], [0, 5, 95]])
    assert "seed" not in _inits_answer(inits, ["a", "b", "c"])
    assert "The seed's MNIST table" in _inits_answer(inits, ["a", "b", "c"], seed_comparable=True)


# ------------------------------------------------------------------ PCA

def _pca(ratio, constant=0, black=0, n_features=None, marks=None):
    import numpy as np

    from mnistlab.sections.unsupervised import PcaResult

    ratio = np.asarray(ratio, dtype=float)
    n = n_features or len(ratio)
    cumulative = np.cumsum(ratio)
    marks = marks or {f"{m:g}": int(np.searchsorted(cumulative, m - 1e-12) + 1)
                      for m in (0.8, 0.9)}
    return PcaResult(1000, n, ratio, np.zeros(n), np.eye(n), marks, marks["0.9"], 0.9, 0,
                     np.zeros((1, n)), [1], np.zeros((1, 1, n)), [0.1], [0.1], 0.5, constant,
                     black)


def test_pca_answer_counts_the_constant_pixels_it_speaks_of():
    from mnistlab.report.unsupervised import pca_answer

    ratio = [0.5, 0.3, 0.15, 0.04, 0.01, 0, 0, 0]
    text = pca_answer(_pca(ratio, constant=3, black=3), seed_comparable=False)
    assert "3 of the 8 pixels are black in every training image" in text
    text = pca_answer(_pca(ratio, constant=2, black=0), seed_comparable=False)
    assert "2 of the 8 pixels have the same value in every training image" in text
    text = pca_answer(_pca([0.4, 0.3, 0.2, 0.095, 0.005]), seed_comparable=False)
    assert "no pixel is constant" in text and "black" not in text
    assert "seed" not in text


def test_pca_answer_checks_the_seeds_200_components_on_mnist_only():
    import numpy as np

    from mnistlab.report.unsupervised import pca_answer

    far = np.full(784, 1 / 784)  # flat spectrum: 90 % needs 706 components
    text = pca_answer(_pca(far, n_features=784), seed_comparable=True)
    assert "on these MNIST digits 706 do" in text and "does not hold" in text
    near = np.concatenate([np.full(200, 0.9 / 200), np.full(584, 0.1 / 584)])
    assert "the seed's figure holds" in pca_answer(_pca(near, n_features=784), True)
    assert "seed" not in pca_answer(_pca(far, n_features=784), seed_comparable=False)


def test_homogeneity_is_said_to_rise_only_when_it_does():
    from mnistlab.report.unsupervised import kmeans_k_answer
    from mnistlab.sections.unsupervised import KMeansSweep

    def sweep(h, c, inertia=(10.0, 5.0)):
        return KMeansSweep(5, [{"k": k, "homogeneity": hh, "completeness": cc, "accuracy": 0.5,
                                "inertia": i} for k, hh, cc, i in zip((2, 50), h, c, inertia)])

    text = kmeans_k_answer(sweep([0.2, 0.8], [0.7, 0.4]))
    assert "Homogeneity rises with K" in text and "Completeness falls" in text
    assert "the inertia only decreases with K" in text
    text = kmeans_k_answer(sweep([0.2, 0.8], [0.7, 0.4], inertia=(5.0, 6.0)))
    assert "rises from K = 2 to K = 50 here" in text and "only decreases" not in text
    text = kmeans_k_answer(sweep([0.5, 0.502], [0.5, 0.5]))
    assert "Homogeneity barely moves" in text and "purer" not in text
    assert "Completeness barely moves" in text and "split over more" not in text


def test_the_2d_partition_is_compared_as_measured():
    from mnistlab.report.unsupervised import pca2_answer

    row = {"silhouette": 0.1, "silhouette_exact": True, "ari": 0.4, "accuracy": 0.6, "ami": 0.5}
    text = pca2_answer(0.2, {**row, "silhouette": 0.35, "ari": 0.2, "accuracy": 0.4, "ami": 0.3},
                       row, 50)
    assert "higher than in 50" in text and "worse" in text and "overlap" in text
    text = pca2_answer(0.2, {**row, "silhouette": 0.05}, row, 50)
    assert "not higher" in text and "no worse" in text and "overlap" not in text
    # ARI higher, accuracy and AMI lower (a run on unbalanced garments): no "no worse"
    text = pca2_answer(0.2, {**row, "ari": 0.413, "accuracy": 0.583, "ami": 0.473}, row, 50)
    assert ("the scores point different ways (accuracy 0.583 vs 0.600, ARI 0.413 vs 0.400, "
            "AMI 0.473 vs 0.500; a difference under 0.01 counts as none)") in text
    assert "no worse" not in text and "as well as many do" not in text
    chance = {**row, "ari": -0.003, "ami": 0.007, "accuracy": 0.517}
    text = pca2_answer(0.47, {**chance, "ami": 0.008}, chance, 53)
    assert "neither partition finds the classes" in text and "separate" not in text


# ------------------------------------------------------------------ mixtures and embedding

def _gmm_parts(emb_acc=None, constant=5, emb_ari=None):
    import numpy as np

    from mnistlab.sections.unsupervised import BicCurve, EmbeddingResult, GmmResult

    rows = [{"covariance": c, "ari": a, "ami": a, "accuracy": acc, "bic": b, "fit_s": 2.0,
             "n_parameters": 100} for c, a, acc, b in (("full", 0.4, 0.6, 10.0),
                                                     ("diag", 0.3, 0.5, 20.0))]
    gmm = GmmResult("pca", 20, 10, rows, np.zeros((2, 3)), np.zeros((3, 2)))
    bic = BicCurve("full", 1000, [5, 10, 15], [3, 2, 1], [3, 2, 1], 15)
    inits = _inits([0.3, 0.3, 0.3], [0.5, 0.5, 0.5], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    pca = _pca([0.5, 0.3, 0.2], constant=constant, black=constant, n_features=784)
    emb = None
    if emb_acc is not None:
        ari = emb_acc - 0.2 if emb_ari is None else emb_ari  # tracks accuracy unless given
        emb = EmbeddingResult("UMAP", False, 50, 10, "gmm",
                              {"accuracy": emb_acc, "ari": ari, "ami": ari}, 1.0,
                              np.zeros((3, 2)), np.zeros(3), np.zeros(3), np.zeros((3, 3)))
    return gmm, bic, inits, pca, emb


def test_the_embedding_is_called_better_than_the_mixtures_only_when_it_is():
    from mnistlab.report.unsupervised import _gmm_answer

    text = _gmm_answer(*_gmm_parts(emb_acc=0.95))
    assert "cluster far better after the nonlinear embedding" in text
    text = _gmm_answer(*_gmm_parts(emb_acc=0.59))
    assert "does not cluster them clearly better" in text and "far better" not in text
    # accuracy a little higher, ARI and AMI far higher: the text names the scores far ahead
    # (it once said "better on some scores, not on all" over three higher numbers)
    text = _gmm_answer(*_gmm_parts(emb_acc=0.62, emb_ari=0.6))
    assert ("ahead by more than 0.05 on ARI and AMI, not on accuracy: accuracy 0.620 against "
            "0.600, ARI 0.600") in text
    assert "does not cluster them clearly better" not in text
    text = _gmm_answer(*_gmm_parts(emb_acc=None, constant=0))
    assert "embedding" not in text and "constant pixels" not in text
    assert "not at the 10 classes" in text and "1,049" not in text
    assert "1,049 s on MNIST" in _gmm_answer(*_gmm_parts(emb_acc=0.9), seed_comparable=True)


def test_the_embedding_text_cites_the_seed_on_mnist_only():
    from mnistlab.report.unsupervised import _embedding_text

    *_, emb = _gmm_parts(emb_acc=0.7)
    emb.row.update(ari=0.5, homogeneity=0.6)
    kmeans = {"accuracy": 0.69, "ari": 0.5, "ami": 0.5, "homogeneity": 0.5}
    text = _embedding_text(emb, 10, kmeans)
    assert "no better than" in text and "0.485" not in text and "deskewed" not in text
    kmeans.update(accuracy=0.5, ari=0.3, ami=0.3)
    text = _embedding_text(emb, 10, kmeans, seed_comparable=True)
    assert "better than k-means" in text and "no better" not in text and "0.485" in text
    # two garment classes: accuracy 0.613 against 0.517 where one class is 60 % of the images,
    # ARI 0.046 against -0.003, was "finds the classes better"
    emb.row.update(accuracy=0.613, ari=0.046, ami=0.022)
    text = _embedding_text(emb, 2, {"accuracy": 0.517, "ari": -0.003, "ami": 0.007,
                                    "homogeneity": 0.008})
    assert "Neither it nor k-means on PCA finds the classes (an ARI under 0.05" in text
    assert "better" not in text
    emb.row.update(accuracy=0.6, ari=0.5, ami=0.5)  # behind on accuracy, ahead on ARI and AMI
    text = _embedding_text(emb, 10, {"accuracy": 0.7, "ari": 0.4, "ami": 0.4, "homogeneity": 0.5})
    assert "Against k-means on PCA it is ahead on ARI and AMI, behind on accuracy" in text
    assert "epochs" not in text  # umap-learn's default: nothing to say
    assert "200 layout epochs where umap-learn would give 500" in _embedding_text(
        emb, 10, kmeans, epochs=200)


# ------------------------------------------------------------------ classic

def test_naive_bayes_is_said_to_learn_from_few_examples_only_when_it_does():
    from mnistlab.report.classic import nb_vs_logistic

    text = nb_vs_logistic([100, 1000, 10000], [0.70, 0.75, 0.76], [0.60, 0.80, 0.90])
    assert "leads with the fewest images" in text and "overtakes it by 1,000 images" in text
    assert "keeps improving" in text
    text = nb_vs_logistic([100, 1000, 10000], [0.454, 0.55, 0.56], [0.706, 0.85, 0.9])
    assert "behind at every size, even the smallest" in text and "leads" not in text
    text = nb_vs_logistic([100, 1000], [0.80, 0.90], [0.60, 0.65])
    assert "never catches up" in text and "naive Bayes gains more" in text


def _c_rows(accs, capped=(), train=0.99):
    return [{"C": c, "test_acc": a, "train_acc": train, "hit_max_iter": i in capped,
             "n_iter": 1_000_000 if i in capped else 50}
            for i, (c, a) in enumerate(zip((1e-4, 1, 100, 1e5), accs))]


def test_the_c_sweep_says_barely_moves_only_when_accuracy_barely_moves():
    from mnistlab.report.classic import c_accuracy_answer

    text = c_accuracy_answer(_c_rows([0.995, 0.996, 0.996, 0.996]), 200)
    assert "barely moves" in text and "almost linearly separable" in text
    assert "200 test images" in text and "iteration cap" not in text
    text = c_accuracy_answer(_c_rows([0.9165, 0.945, 0.945, 0.809], capped={3}), 2000)
    assert "barely" not in text and "C matters here (a spread of 0.0285" in text
    assert "At C = 100000 libsvm stopped at its iteration cap" in text
    assert "which is why its accuracy is the lowest" in text
    assert "on classes that overlap (training accuracy 0.9900)" in text
    text = c_accuracy_answer(_c_rows([0.99, 0.991, 0.991, 0.995], capped={3}, train=1.0), 100)
    assert "barely moves" in text and "are linearly separable" in text
    assert "which is why" not in text
    # the training images are all right: "overlapping points" would be false (mnist-5k, 0 vs 1)
    assert "even on separable classes" in text and "overlap" not in text
    # random labels: a flat accuracy at 0.54 with training accuracy 0.51 is no separability
    text = c_accuracy_answer(_c_rows([0.5405, 0.5405, 0.5405, 0.3784], capped={3}, train=0.5144),
                             111)
    assert "barely moves, and no C separates the two classes in 2-D (training accuracy at most "\
           "0.5144)" in text and "separable" not in text
    # two garment classes: the capped fit at 0.500, and so the converged C = 0.0001 one
    text = c_accuracy_answer(_c_rows([0.5, 0.6833, 0.5, 0.6167], capped={2, 3}, train=0.6), 60)
    assert "At C = 100 libsvm stopped" in text and "which is why" not in text


def _sweep_rows(fit, train, test, ns=(10, 50, 100), support=(900, 700, 500)):
    return [{"n_components": n, "fit_s": f, "train_acc": tr, "test_acc": te, "n_support": sv}
            for n, f, tr, te, sv in zip(ns, fit, train, test, support)]


def test_svc_fit_time_and_gap_are_described_as_measured():
    from mnistlab.report.classic import svc_pca_answer

    text = svc_pca_answer(_sweep_rows([1, 2, 4], [0.9, 0.97, 1.0], [0.88, 0.9, 0.89]))
    assert "fit time grows" in text and "widens" in text and "peaks at 50 components" in text
    text = svc_pca_answer(_sweep_rows([4, 2, 1], [0.9, 0.92, 0.93], [0.88, 0.9, 0.91]))
    assert "fit time falls" in text and "does not widen" in text
    assert "with 900 then 500 support vectors" in text and "something else" not in text
    # garments, quick profile: 0.21 s then 0.14 s while the support vectors grew 215 -> 332
    text = svc_pca_answer(_sweep_rows([0.21, 0.17, 0.14], [0.99, 1.0, 1.0], [0.97, 0.974, 0.974],
                                      support=(215, 280, 332)))
    assert "fit time falls" in text and "so the falling time measures something else" in text
    text = svc_pca_answer(_sweep_rows([1.0, 1.1, 1.2], [0.9, 0.92, 0.93], [0.88, 0.9, 0.91]))
    assert "fit time stays about the same" in text  # 1.2x: within one timing's noise


def test_the_svc_sweeps_peak_and_gap_are_read_against_the_test_set_size():
    from mnistlab.report.classic import svc_pca_answer

    # scikit-learn's digits, 360 test images: 0.989 at 20 and 30 components was "peaks at 20"
    digits = _sweep_rows([0.54, 0.52, 0.59, 0.35, 0.62], [0.998, 1, 1, 1, 1],
                         [0.964, 0.989, 0.989, 0.986, 0.986], ns=(10, 20, 30, 40, 50),
                         support=(442, 530, 588, 605, 617))
    text = svc_pca_answer(digits, n_test=360)
    assert "peaks at 20 components (0.989; 30, 40, 50 within twice the noise of it)" in text
    assert "does not widen beyond the noise of the test set" in text
    # a gap growing by 0.02 is within the noise of 360 test images, beyond that of 10,000
    rows = _sweep_rows([1, 1, 1], [0.95, 0.98, 0.98], [0.90, 0.92, 0.91])
    assert "does not widen beyond the noise" in svc_pca_answer(rows, n_test=360)
    assert "it widens" in svc_pca_answer(rows, n_test=10_000)
    assert "peaks at 50 components (0.920)." in svc_pca_answer(rows, n_test=10_000)


def test_pca_influence_is_measured_against_the_raw_pixels():
    from mnistlab.report.classic import pca_influence_answer

    svc = _sweep_rows([1, 2, 4], [1, 1, 1], [1, 1, 1])
    text = pca_influence_answer(_sweep_rows([1, 1, 1], [1, 1, 1], [0.3, 0.85, 0.8]), 0.8, svc)
    assert text.startswith("Yes: the tree scores from 0.300 (10 components) to 0.850 (50)")
    assert "above 0.800" in text and "fit time rising" in text
    text = pca_influence_answer(_sweep_rows([1, 1, 1], [1, 1, 1], [0.70, 0.702, 0.701]), 0.8,
                                _sweep_rows([4, 2, 1], [1, 1, 1], [1, 1, 1]))
    assert text.startswith("Not measurably") and "below 0.800" in text
    assert "fit time falling" in text
    # random labels, 500 test images: 0.138 against 0.102 was "above", with a reason
    rows = _sweep_rows([1, 1, 1], [1, 1, 1], [0.082, 0.138, 0.1])
    text = pca_influence_answer(rows, 0.102, svc, n_test=500)
    assert text.startswith("Yes: the tree scores from 0.082 (10 components) to 0.138 (50)")
    assert "its best within twice the noise of its 0.102 on the raw pixels (0.041)" in text
    assert "above 0.102" not in text and "summarise" not in text


def test_the_tree_depth_answer_quotes_the_seed_on_digits_only():
    tree = _tree([0.5, 0.8, 0.95, 1.0], [0.5, 0.75, 0.78, 0.76], [0.5, 0.74, 0.77, 0.75])
    assert "digits" not in tree_depth_answer(tree) and "Depth counts" in tree_depth_answer(tree)
    assert "10 digits" in tree_depth_answer(tree, seed_comparable=True)


# ------------------------------------------------------------------ deep

def _run(name, val_loss, val_acc=None, params=1000, epoch_s=1.0, test_acc=0.9, smoothing=0.0,
         n_test=10_000):
    import numpy as np

    from mnistlab.sections.deep import TrainResult

    n = len(val_loss)
    val_acc = val_acc or [0.8 + 0.01 * i for i in range(n)]
    history = {"train_loss": [0.5] * n, "train_acc": [0.9] * n, "val_loss": list(val_loss),
               "val_acc": val_acc, "seconds": [epoch_s] * n}
    z = np.zeros(1)
    return TrainResult(
        name=name, spec={"label_smoothing": smoothing, "schedule": "constant"}, n_train=100,
        history=history, val_loss_criterion=list(val_loss), test_loss=0.3, test_acc=test_acc,
        train_s=epoch_s * n, epochs_run=n, infer_s_per_10k=0.1, n_params=params, peak_mb=100.0,
        baseline_mb=50.0, threads=2, isolated=True, train_pid=1, weights_file="w",
        weights_sha256="0" * 64, confusion=np.diag([n_test // 2, n_test - n_test // 2]),
        test_pred=z, example_images=z, example_pred=z, example_true=z, error_images=z,
        error_pred=z, error_true=z, error_confidence=z)


def _arch(**layers):
    from mnistlab.sections.deep import Architectures

    return Architectures({}, {}, {name: [{"layer": f"{i} ({t})", "output_shape": [None, w]}
                                         for i, (t, w) in enumerate(spec)]
                                  for name, spec in layers.items()},
                         {name: 1000 for name in layers})


def test_overfitting_is_a_rise_beyond_the_losss_own_noise():
    from mnistlab.report.deep import overfit_verdict, overfitting_answer

    rising = [0.5, 0.3, 0.25, 0.24, 0.26, 0.29, 0.33, 0.38]
    assert overfit_verdict(rising)[3] and overfit_verdict(rising)[0] == 4
    wobble = [0.5, 0.2, 0.1, 0.090, 0.095, 0.088, 0.093, 0.092]  # the mlp-2 case: +0.004
    turn, rise, noise, overfits = overfit_verdict(wobble)
    assert turn == 6 and not overfits and rise < 2 * noise
    assert not overfit_verdict([0.5, 0.4, 0.3, 0.2])[3]
    arch = _arch(a=[("Linear", 10), ("Dropout", 10), ("Linear", 2)], b=[("Linear", 2)])
    text = overfitting_answer([_run("a", rising), _run("b", wobble)], arch)
    assert "a: validation loss lowest at epoch 4 of 8, then up to 0.140 higher (at the end)" in text
    assert "beyond its epoch-to-epoch noise" in text and "Here a overfits" in text
    assert "b: validation loss lowest at epoch 6 of 8, then at most 0.005 higher (at epoch 7)" in text
    assert "no sign of overfitting yet" in text
    text = overfitting_answer([_run("a", wobble), _run("b", [0.5, 0.4, 0.3])], arch)
    # b ran 3 epochs: "within 8 epochs" said more than was measured
    assert ("None of them overfits within the epochs each was trained for (3 to 8; a with "
            "dropout, the others without)") in text
    assert "None of them overfits within 8 epochs" in overfitting_answer(
        [_run("a", wobble), _run("b", wobble)], arch)
    assert "b: validation loss still falling at the last epoch (3)" in text
    assert "(none uses dropout)" in overfitting_answer([_run("b", wobble)],
                                                       _arch(b=[("Linear", 2)]))


def test_cnn_and_mlp_are_compared_as_measured():
    from mnistlab.report.deep import cnn_vs_mlp

    def compare(c_params, c_s, c_acc, m_params=600_000, m_s=2, m_acc=0.95, n_test=10_000):
        return cnn_vs_mlp(_run("cnn-seed", [0.1], params=c_params, epoch_s=c_s, test_acc=c_acc,
                               n_test=n_test),
                          _run("mlp-2", [0.1], params=m_params, epoch_s=m_s, test_acc=m_acc))

    text = compare(50_000, 8, 0.99)
    assert "fewer parameters, more computation" in text and "per error avoided" in text
    text = compare(700_000, 8, 0.90)
    assert "The CNN has the more parameters here" in text and "fewer" not in text
    assert "the MLP is both faster per epoch and more accurate" in text and "holds" in text
    text = compare(50_000, 1, 0.99)
    assert "CNN is both faster per epoch and more accurate" in text and "does not hold" in text
    text = compare(50_000, 1, 0.90)  # CNN faster, MLP more accurate
    assert "neither is simply" in text and "holds" not in text
    # the 8x8 digits: 0.022 vs 0.024 s per epoch and 0.9361 vs 0.9639 on 360 test images were
    # read as "the CNN is faster per epoch and the MLP more accurate"
    text = compare(38_602, 0.022, 0.9361, m_params=301_066, m_s=0.024, m_acc=0.9639,
                   n_test=360)
    assert "0.022 s per epoch against 0.024 s" in text
    assert ("the two take about as long per epoch (within 1.25x) and the two as accurate within "
            "twice the noise of 360 test images (0.0324)") in text
    assert "do not tell which" in text
    text = compare(50_000, 2.1, 0.99)  # as fast, CNN more accurate
    assert "about as long per epoch" in text and "the CNN more accurate" in text
    assert "does not hold" in text
    # the 8x8 digits again, under load: the CNN faster and as accurate; "the seed's "more
    # efficient" does not hold" left the reader to guess which network the seed meant
    text = compare(38_602, 0.32, 0.9361, m_params=301_066, m_s=0.97, m_acc=0.9639, n_test=360)
    assert ("the CNN is faster per epoch and the two as accurate within twice the noise"
            in text)
    assert "the seed's verdict that its MLP is \"more efficient\" than its CNN does not hold" in text


def test_the_overfit_demo_quotes_the_seed_on_mnist_only():
    from mnistlab.report.deep import _demo_answer
    from mnistlab.sections.deep import OverfitResult

    demos = [OverfitResult("mlp-1", 10, 30, 1.0, 0.3, 3.0, [1.0]),
             OverfitResult("cnn-seed", 10, 150, 0.9, 0.2, 3.0, [0.9])]
    arch = _arch(**{"mlp-1": [("Linear", 2)], "cnn-seed": [("Linear", 2)]})
    text = _demo_answer(demos, arch, [_run("mlp-1", [0.1], test_acc=0.95)], False)
    assert "mlp-1 (1,000 parameters) memorises them all after 30 epochs" in text
    assert "cnn-seed (1,000 parameters) reaches 90% training accuracy" in text
    assert "against 0.950 when trained on all the images" in text and "The seed" not in text
    assert "0.26 for its MLP" in _demo_answer(demos, arch, [], True)


def test_loss_curves_compare_like_with_like():
    from mnistlab.report.deep import _curves_caption

    assert "label smoothing" not in _curves_caption([_run("mlp-1", [0.2, 0.1])])
    caption = _curves_caption([_run("cnn-fast", [0.2, 0.1], smoothing=0.1)])
    assert "(cnn-fast (0.1)): both loss curves include it" in caption
    assert "shifted" not in caption
    shifted = _run("cnn-fast", [0.2, 0.1])
    shifted.spec["augment_shift"] = 2
    caption = _curves_caption([_run("mlp-1", [0.2, 0.1]), shifted])
    assert ("randomly shifted images (cnn-fast (up to 2 px)): their training curves are "
            "measured on the shifted images") in caption


def test_the_tree_depth_answer_says_whose_tree_it_cut():
    import dataclasses

    own = _tree([0.5, 0.9, 1.0], [0.5, 0.8, 0.78], [0.5, 0.8, 0.77])
    shared = dataclasses.replace(own, from_leaderboard=True, leaf_depth_max=41)
    assert "One tree was grown on 1,000 images to depth 3" in tree_depth_answer(own)
    text = tree_depth_answer(shared)
    assert "The leaderboard's decision tree, grown on 1,000 images to depth 41" in text
    assert "grows no tree instead of 3" in text and "One tree was grown" not in text


def test_the_leaderboard_says_when_gradient_boosting_bins_its_inputs_coarser(quick_run,
                                                                              full_digits_run):
    import html

    quick = html.unescape((quick_run / "report.html").read_text())
    assert "gradient boosting bins each input into 63 levels (scikit-learn's default: 255)" \
        in quick
    assert "bins each input into" not in (full_digits_run / "report.html").read_text()


def _summary_of(counts_per_class):
    """The explore section's summary of a dataset with these training counts per class."""
    from mnistlab import load_dataset
    from mnistlab.data.datasets import Dataset
    from mnistlab.sections.explore import summarize

    digits = load_dataset("digits")
    keep = np.concatenate([np.flatnonzero(digits.y_train == c)[:n]
                           for c, n in enumerate(counts_per_class)])
    data = Dataset("digits", digits.x_train[keep], digits.y_train[keep], digits.x_test,
                   digits.y_test, digits.class_names)
    return summarize(data)


def test_the_balance_answer_follows_the_class_counts():
    from mnistlab.report.explore import _balance_answer

    balanced = _balance_answer(_summary_of([100] * 10))
    assert "<b>perfectly balanced</b>: every class has 100 images" in balanced
    close = _balance_answer(_summary_of([100] * 9 + [80]))
    assert "<b>close to balanced</b>" in close and "1.25 times its smallest" in close
    assert "is mild" in close
    # a p-value of 0.99998 was printed "p = 1", as if the test had proven equal frequencies
    nearly = _balance_answer(_summary_of([100] * 9 + [99]))
    assert "does not reject exactly equal class frequencies in the training set (p > 0.99)" \
        in nearly and "p = 1)" not in nearly
    skewed = _balance_answer(_summary_of([120] * 9 + [12]))
    assert "<b>imbalanced</b>" in skewed and "10 times its smallest (9, 12" in skewed
    assert "mild" not in skewed and "perfectly" not in skewed
    assert "rejects exactly equal class frequencies" in skewed
    # the test set (scikit-learn's, about 36 images a class) against these training sets
    assert "a difference the test cannot tell from chance" in balanced
    assert ("the test set mixes the classes otherwise (9 is 1.10 % of the training images and "
            "10.00 % of the test images)") in skewed and "cannot tell" not in skewed


def test_memorising_is_judged_on_the_whole_tree_not_the_deepest_cut_swept():
    """The sweep stopped at depth 25, the leaderboard's tree grew to 43 and fits its training
    images: the report said 'does not memorise' from the cut at 25."""
    deeper = _tree([0.6, 0.9, 0.995], [0.6, 0.8, 0.79], [0.6, 0.79, 0.78], depths=[1, 10, 25],
                   leaf_depth_max=43)
    text = tree_depth_answer(deeper, whole_tree_train_acc=1.0)
    assert "reaches 0.995 at depth 25; the whole tree, 43 levels deep, scores 1.000" in text
    assert "it memorises them" in text and "not memorise" not in text
    text = tree_depth_answer(deeper)
    assert "the tree itself grew to depth 43, which the sweep does not reach" in text
    assert "memoris" not in text


def test_the_holdout_sentence_counts_the_test_images_it_scored():
    """scikit-learn's 360 test digits, asked for 1,000: the sentence said 1,000."""
    from mnistlab import build_config, load_dataset
    from mnistlab.engine.step import call_step
    from mnistlab.report.explore import holdout_answer
    from mnistlab.sections.explore import holdout_demo

    h = call_step(holdout_demo, load_dataset("digits"), build_config("full").explore,
                  n_fit=1000, n_eval=1000)
    assert (h.n_fit, h.n_eval, h.n_test) == (1000, 1000, 360)
    text = holdout_answer(h)
    assert "on 1,000 of the images it was fitted on" in text and "on 360 test images" in text


def _kernels(*rows):
    from mnistlab.sections.classic import SvcKernels

    return SvcKernels(1000, 50, [{"kernel": k, "C": c, "fit_s": s, "predict_s_per_10k": 1.0,
                                  "train_acc": 0.99, "test_acc": a, "n_support": 300}
                                 for k, c, s, a in rows])


def test_kernels_run_at_different_c_are_not_ranked_as_kernels():
    from mnistlab.report.classic import kernel_answer

    text = kernel_answer(_kernels(("linear", 1.0, 2.0, 0.85), ("rbf", 10.0, 3.0, 0.875),
                                  ("sigmoid", 1.0, 1.5, 0.73)))
    assert "Best kernel" not in text and "rbf 0.875 (C = 10), linear 0.850 (C = 1)" in text
    assert "different C" in text and "ranks these settings, not the kernels" in text
    same = kernel_answer(_kernels(("linear", 1.0, 2.0, 0.85), ("rbf", 1.0, 3.0, 0.86)))
    assert "At the same C, rbf scores highest here" in same
    # random labels on 500 test images: 0.114 against 0.108 is no ranking
    chance = kernel_answer(_kernels(("poly", 1.0, 1.0, 0.114), ("sigmoid", 1.0, 1.0, 0.108),
                                    ("rbf", 10.0, 1.0, 0.09), ("linear", 1.0, 1.0, 0.088)), 500)
    assert ("poly, sigmoid, rbf and linear score highest, within twice the noise of the 500 "
            "test images of each other") in chance
    apart = kernel_answer(_kernels(("linear", 1.0, 2.0, 0.85), ("rbf", 10.0, 3.0, 0.95)), 10_000)
    assert "rbf scores highest, but" in apart


def test_a_loss_that_rose_then_fell_back_at_the_last_epoch_still_rose():
    """It rose by more than twice its noise two epochs before the end; the last epoch alone
    said 'no sign of overfitting'."""
    from mnistlab.report.deep import overfit_verdict, overfitting_answer

    back = [0.6, 0.4, 0.3, 0.2, 0.24, 0.33, 0.30, 0.27]
    turn, rise, noise, overfits = overfit_verdict(back)
    assert turn == 4 and rise == pytest.approx(0.13) and overfits
    assert back[-1] - back[3] <= 2 * noise < rise  # the last epoch alone is within the noise
    text = overfitting_answer([_run("a", back)], _arch(a=[("Linear", 2)]))
    assert "then up to 0.130 higher (at epoch 6)" in text and "Here a overfits" in text


def test_a_curve_that_rises_then_falls_is_not_read_from_its_ends():
    """Completeness first rose, then fell: the ends alone said 'falls'."""
    from mnistlab.report.unsupervised import course, kmeans_k_answer
    from mnistlab.sections.unsupervised import KMeansSweep

    assert course([0.5, 0.7, 0.45]) == ("rises then falls", [1])
    assert course([0.5, 0.3, 0.52]) == ("falls then rises", [1])
    assert course([0.5, 0.505, 0.49]) == ("barely moves", [])
    assert course([0.1, 0.3, 0.295, 0.6]) == ("rises", [])  # a dip within the noise
    # scikit-learn's 8x8 digits: completeness fell, rose by 0.12, fell again (said "falls")
    digits = [1.0, 0.832, 0.615, 0.652, 0.684, 0.726, 0.736, 0.734, 0.710, 0.722, 0.672,
              0.555, 0.496, 0.457]
    assert course(digits, 0.02) == ("falls, rises, then falls", [2, 6])
    assert course(digits, 0.01)[1] == [2, 6, 8, 9]  # 0.710 -> 0.722 -> 0.672: beyond 0.01
    rows = [{"k": k, "homogeneity": h, "completeness": c, "accuracy": 0.5, "inertia": i}
            for k, h, c, i in zip((2, 10, 50), (0.2, 0.5, 0.8), (0.5, 0.7, 0.4), (9, 6, 3))]
    text = kmeans_k_answer(KMeansSweep(5, rows))
    assert "Completeness rises then falls (0.500 at K = 2, 0.700 at K = 10 on the way" in text
    assert "split over more clusters" not in text
    rows = [{"k": k, "homogeneity": 0.1 * k, "completeness": c, "accuracy": 0.5, "inertia": 9 - k}
            for k, c in zip((1, 2, 3, 4, 5), (1.0, 0.6, 0.75, 0.7, 0.4))]
    text = kmeans_k_answer(KMeansSweep(5, rows))
    assert ("Completeness falls, rises, then falls (1.000 at K = 1, 0.600 at K = 2 and 0.750 at "
            "K = 3 on the way, 0.400 at K = 5)") in text


def test_a_gap_widest_in_the_middle_is_not_called_steady():
    from mnistlab.report.classic import svc_pca_answer

    text = svc_pca_answer(_sweep_rows([1, 2, 4], [0.9, 1.0, 0.93], [0.88, 0.9, 0.91]))
    assert "widest at 50 components (0.100)" in text and "does not widen at any" not in text


def test_the_fixed_start_is_called_best_only_when_every_score_says_so():
    from mnistlab.report.unsupervised import _inits_answer

    names = ["a", "b", "c"]
    table = [[90, 5, 5], [5, 90, 5], [5, 5, 90]]
    mixed = _inits_answer(_inits([0.5, 0.5, 0.3], [0.5, 0.5, 0.8], table), names)
    # ahead of one start, behind the other (Fashion-MNIST: the lowest accuracy of the three
    # was "better on some scores than the other starts")
    assert ("(accuracy 0.800, ARI 0.300, AMI 0.300); it is against k-means++ ahead on "
            "accuracy, behind on ARI and AMI; against random ahead on accuracy, behind on ARI "
            "and AMI") in mixed
    split = _inits_answer(_inits([0.5, 0.3, 0.4], [0.6, 0.45, 0.45], table), names)
    assert ("against k-means++ behind on accuracy, ARI and AMI; against random ahead on "
            "ARI and AMI") in split
    assert "reaches the classes best" not in mixed
    alike = _inits_answer(_inits([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], table), names)
    assert "yet does not reach the classes better than the others" in alike


def test_which_model_gains_more_is_said_beyond_the_test_sets_noise_only():
    """A 0.016 difference between the two gains was 'much less' (a fixed 0.005 threshold); on
    10,000 test images two standard errors of that difference are about 0.017."""
    from mnistlab.report.classic import nb_vs_logistic
    from mnistlab.report.noise import gain_noise

    sizes, nb, lr = [100, 50000], [0.55, 0.566], [0.84, 0.872]
    assert gain_noise([0.55, 0.566, 0.84, 0.872], 10_000) == pytest.approx(0.0172, abs=5e-4)
    text = nb_vs_logistic(sizes, nb, lr, n_test=10_000)
    assert "a difference of 0.016, within the noise (two standard errors" in text
    assert "both improve alike" in text and "much" not in text and "less" not in text
    text = nb_vs_logistic(sizes, nb, lr, n_test=1_000_000)
    assert "the generative one less, by 0.016 (two standard errors" in text


def _classic_model(name, train, val, test):
    from mnistlab.sections.classic import ModelResult

    row = {"model": name, "train_acc": train, "val_acc": val, "test_acc": test}
    return ModelResult(name, name, "pixels", row, np.zeros(0, np.int16), np.zeros(0, np.float32),
                       "", "", {}, {})


def test_the_validation_column_is_compared_with_the_test_column_not_said_to_track_it():
    from mnistlab.report.classic import train_test_answer

    agreeing = [_classic_model("svc-rbf", 1.0, 0.986, 0.985),
                _classic_model("logistic", 0.99, 0.97, 0.968)]
    said = train_test_answer(agreeing)
    assert ("the model it puts first, SVC (RBF kernel), is also first on the test column, and "
            "the two columns differ by at most 0.002 (logistic regression: 0.970 validation, "
            "0.968 test)") in said
    # a test set whose class mix differs: the choice ranks second there, and a model moves
    drifting = [_classic_model("svc-rbf", 1.0, 0.986, 0.950),
                _classic_model("logistic", 0.99, 0.97, 0.968),
                _classic_model("bernoulli-nb", 0.87, 0.851, 0.810)]
    said = train_test_answer(drifting)
    assert "SVC (RBF kernel), ranks 2 of 3 on the test column" in said
    assert "differ by at most 0.041 (Bernoulli naive Bayes: 0.851 validation, 0.810 test)" in said
    assert "tracks" not in said


def test_the_pixel_transform_sentence_says_linear_plainly_and_names_a_tie():
    from mnistlab.report.classic import _representation_text
    from mnistlab.sections.classic import Representation

    tie = _representation_text(Representation("linear", {"linear": 0.9792, "sqrt": 0.9792}, 1293))
    assert "the pixels are used as they are (<b>linear</b>), chosen on the validation split" in tie
    assert "(a tie: the first tried, linear, is kept)." in tie and "square root" not in tie
    sqrt = _representation_text(Representation("sqrt", {"linear": 0.9467, "sqrt": 0.9567}, 2000))
    assert "are transformed by <b>sqrt</b>" in sqrt and "tie" not in sqrt
    assert "The square root spreads the faint end" in sqrt


def test_the_label_check_mentions_a_gallery_only_when_it_flags_labels(full_digits_run,
                                                                      quick_run):
    import re

    for run in (full_digits_run, quick_run):
        html = (run / "report.html").read_text()
        found = re.search(r"It flags <b>([\d,]+)</b> training labels? .*?and <b>([\d,]+)</b> "
                          r"test labels?: .*?rather than the label's([^<]*)", html)
        assert found, run
        flagged = int(found.group(1).replace(",", "")) + int(found.group(2).replace(",", ""))
        said = found.group(3)
        assert said.startswith(": the gallery shows" if flagged else "; here its estimate is 0")


def test_the_training_table_counts_the_images_each_network_was_fitted_on(full_digits_run):
    """It gave 1,437 for every network, the training set before its validation split: mlp-1
    holds out 20 % and is fitted on 1,149, cnn-seed 10 % and 1,293."""
    import html
    import re

    from mnistlab.study.results import load_study

    runs = {k.split(":", 1)[1]: v for k, v in load_study(full_digits_run).results["deep"].items()
            if k.startswith("train:")}
    page = html.unescape((full_digits_run / "report.html").read_text())
    assert "trained on (images)" in page
    for name, run in runs.items():
        held_out = -(-run.n_train * run.spec["validation_fraction"] // 1)  # ceil
        assert run.n_fit == run.n_train - held_out
        table = page[page.index("trained on (images)"):]
        row = re.search(rf"<td>{name}</td>(.*?)</tr>", table, re.S).group(1)
        assert f"{run.n_fit:,} of {run.n_train:,}" in row, (name, row)
    assert {runs["mlp-1"].n_fit, runs["cnn-seed"].n_fit} == {1149, 1293}
    assert f"an epoch of {runs['mlp-1'].n_fit:,} images" in page


def _label_check(oof_accuracy, n_train=2000):
    from mnistlab.sections.quality import LabelIssues, NeighbourIssues, _empty_table

    empty = _empty_table((28, 28))
    checks = LabelIssues(**empty, checker="svc+mlp", features="a PCA", folds=5,
                         oof_accuracy=oof_accuracy, test_accuracy=oof_accuracy, n_leaked=0,
                         accuracy_without_leaked=oof_accuracy, accuracy_on_leaked=float("nan"),
                         n_removed=10, accuracy_cleaned=oof_accuracy,
                         accuracy_random_removed=oof_accuracy, cleaned_delta_se=0.01,
                         random_delta_se=0.01, bootstrap=200)
    neighbours = NeighbourIssues(**empty, n_train=n_train, n_test=500, n_components=50,
                                 explained_variance=0.8, nearest_rms_median=40.0,
                                 near_threshold=10.0, near_factor=0.25, outlier_neighbours=5,
                                 outlier_iqr=3.0)
    return checks, neighbours


def test_a_label_checker_no_better_than_guessing_flags_nothing_about_the_labels():
    from mnistlab.report.quality import _label_blocks

    names = [str(k) for k in range(10)]
    found = {"label-issue": {"train": 1835, "test": 438}}
    # random labels: the checker is right 8 % of the time out of fold, 10 classes
    said = " ".join(b.html for b in _label_blocks(*_label_check(0.0825), found, names, None)
                    if b.kind == "text")
    assert ("here it does no better than guessing one of the 10 classes (0.1000, within twice "
            "the noise of 2,000 images), so its flags say nothing about the labels") in said
    assert "gallery" not in said
    said = " ".join(b.html for b in _label_blocks(*_label_check(0.9), found, names, None)
                    if b.kind == "text")
    assert "the gallery shows the strongest ones" in said and "guessing" not in said


def test_a_class_with_no_test_image_has_no_ratio_and_no_recall():
    """A test set without class 3 gave 'the test set's ratio is inf' and 'the class recognised
    least often is 3 (recall 0.000)'."""
    from mnistlab import load_dataset
    from mnistlab.data.datasets import Dataset
    from mnistlab.report.classic import _confusion_answer
    from mnistlab.report.explore import _balance_answer
    from mnistlab.sections.classic import BestModel
    from mnistlab.sections.explore import summarize

    digits = load_dataset("digits")
    keep = digits.y_test != 3
    data = Dataset("digits", digits.x_train, digits.y_train, digits.x_test[keep],
                   digits.y_test[keep], digits.class_names)
    said = _balance_answer(summarize(data))
    assert "the test set has no image of 3" in said and "inf" not in said
    confusion = np.diag([50, 40, 30, 0]) + np.array([[0, 2, 0, 0], [0, 0, 5, 0], [1, 0, 0, 0],
                                                     [0, 0, 0, 0]])
    best = BestModel("svc-rbf", "validation", confusion, *([np.zeros(0)] * 4))
    said = _confusion_answer(best, ["a", "b", "c", "d"])
    assert "the class recognised least often is b (recall 0.889)" in said
    assert "the test set has no image of d, so its recall is not measured" in said


def test_the_mixtures_criteria_are_whole_numbers_in_one_format():
    """scikit-learn's digits printed BIC 23624 beside 20872.3 and AIC 491.432 (six significant
    digits of numbers in the thousands): one format for every row."""
    from mnistlab.report.unsupervised import _gmm_table
    from mnistlab.sections.unsupervised import GmmResult

    rows = [{"covariance": c, "n_parameters": p, "converged": True, "n_iter": 10, "fit_s": 0.02,
             "bic": bic, "aic": aic, "ari": 0.6, "homogeneity": 0.7, "accuracy": 0.7}
            for c, p, bic, aic in (("spherical", 229, 23624.04, 22417.12),
                                   ("full", 2529, 13820.1, 491.432))]
    block = _gmm_table(GmmResult("pca", 21, 10, rows, np.zeros((2, 3)), np.zeros((3, 2))))
    criteria = [r[5:7] for r in block.rows]
    assert criteria == [["23,624", "22,417"], ["13,820", "491"]]
