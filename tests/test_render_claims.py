"""Each claim the report makes is computed from the run's numbers: numbers that make it true
give the sentence, numbers that make it false give another."""

from mnistlab.render.classic import tree_depth_answer
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


def test_a_shrinking_gap_is_not_called_overfitting():
    text = tree_depth_answer(_tree([0.9, 0.95, 0.96], [0.85, 0.80, 0.93], [0.70, 0.80, 0.93],
                                   best=1))
    assert "shrinks" in text and "overfit" not in text and "widens" not in text
    assert "does not memorise" in text and "rises to 0.930" in text


def test_a_flat_validation_curve_is_called_flat():
    text = tree_depth_answer(_tree([0.8, 0.9, 0.95], [0.80, 0.803, 0.801],
                                   [0.79, 0.80, 0.80]))
    assert "stays within 0.005 of it up to depth 3" in text and "declines" not in text


def _inits(ari, accuracy, contingency, rand=0.9):
    import numpy as np

    from mnistlab.sections.unsupervised import KMeansInits

    rows = [{"init": init, "ari": a, "accuracy": acc, "rand": rand, "inertia": 1.0, "n_iter": 5}
            for init, a, acc in zip(("k-means++", "random", "fixed"), ari, accuracy)]
    table = np.asarray(contingency)
    return KMeansInits(3, 10, 1, rows, np.stack([table] * len(rows)),
                       np.tile(np.arange(3), (len(rows), 1)), np.arange(3))


def test_shared_clusters_are_read_from_the_contingency_table():
    from mnistlab.render.unsupervised import _inits_answer

    names = ["Pullover", "Coat", "Sandal"]
    # Pullover and Coat both put >= 20 % of their images in cluster 0; Sandal is alone.
    text = _inits_answer(_inits([0.40, 0.41, 0.42], [0.5, 0.5, 0.5],
                                [[60, 40, 0], [50, 50, 0], [0, 5, 95]]), names)
    assert "classes sharing a cluster: Pullover/Coat" in text and "4/9" not in text
    assert "within 0.020 ARI" in text and "50% of the images" in text
    text = _inits_answer(_inits([0.2, 0.5, 0.9], [0.4, 0.6, 0.95],
                                [[90, 5, 5], [5, 90, 5], [5, 5, 90]], rand=0.3), names)
    assert "no two classes share a cluster" in text
    assert "up to 0.700 ARI apart" in text and "reaches the classes best" in text
    assert "much higher than" not in text and "close to" in text
