"""Scores of a partition against the true labels, and sampled silhouettes.

scikit-learn computes each score; what it lacks is the cluster accuracy after Hungarian
matching (one cluster per class, the assignment that maximises agreement), written here.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from ..data.prepare import stratified_subset


def matched_contingency(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int):
    """Contingency (classes x clusters) with columns reordered to the Hungarian matching.

    Returns the reordered matrix, the cluster id of each column, and the accuracy: the share
    of samples whose cluster is matched to their class (each cluster matched to at most one
    class; unmatched clusters count as errors).
    """
    clusters = np.unique(y_pred)
    table = np.zeros((n_classes, len(clusters)), dtype=np.int64)
    cluster_index = np.searchsorted(clusters, y_pred)
    np.add.at(table, (y_true, cluster_index), 1)
    from scipy.optimize import linear_sum_assignment  # imported here: a report needs none

    rows, cols = linear_sum_assignment(table, maximize=True)
    accuracy = float(table[rows, cols].sum() / len(y_true))
    order = list(cols[np.argsort(rows)])
    order += [c for c in range(len(clusters)) if c not in set(order)]
    return table[:, order], clusters[order], accuracy


def cluster_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of samples correctly grouped under the best one-to-one cluster->class matching."""
    n_classes = int(max(y_true.max(), 0)) + 1
    return matched_contingency(y_true, y_pred, n_classes)[2]


class PartitionScores(TypedDict):
    """External scores of a partition against the labels (all in 0..1 but ARI/AMI, >= -1)."""

    homogeneity: float
    completeness: float
    v_measure: float
    ari: float
    ami: float
    rand: float
    accuracy: float  # best one-to-one matching of clusters to classes (Hungarian)


class Silhouette(TypedDict):
    silhouette: float
    silhouette_sd: float  # spread over the repeated samples (0 when exact)
    silhouette_n: int
    silhouette_exact: bool


def partition_scores(y_true: np.ndarray, y_pred: np.ndarray) -> PartitionScores:
    """Every external score the report uses, from scikit-learn (plus Hungarian accuracy)."""
    from sklearn import metrics

    h, c, v = metrics.homogeneity_completeness_v_measure(y_true, y_pred)
    return {
        "homogeneity": float(h),
        "completeness": float(c),
        "v_measure": float(v),
        "ari": float(metrics.adjusted_rand_score(y_true, y_pred)),
        "ami": float(metrics.adjusted_mutual_info_score(y_true, y_pred)),
        "rand": float(metrics.rand_score(y_true, y_pred)),
        "accuracy": cluster_accuracy(y_true, y_pred),
    }


def silhouette_estimate(x: np.ndarray, labels: np.ndarray, sample: int, repeats: int,
                        seed: int) -> Silhouette:
    """Silhouette: exact up to ``sample`` points, else the mean over ``repeats`` seeded samples
    stratified by cluster, with their standard deviation as the sampling error."""
    from sklearn import metrics

    if len(np.unique(labels)) < 2:
        return {"silhouette": float("nan"), "silhouette_sd": 0.0, "silhouette_n": len(labels),
                "silhouette_exact": True}
    if len(labels) <= sample:
        return {"silhouette": float(metrics.silhouette_score(x, labels)), "silhouette_sd": 0.0,
                "silhouette_n": len(labels), "silhouette_exact": True}
    values = []
    for r in range(repeats):
        xs, ls = stratified_subset(x, labels, sample, seed + r)
        values.append(metrics.silhouette_score(xs, ls))
    return {"silhouette": float(np.mean(values)),
            "silhouette_sd": float(np.std(values, ddof=1)) if repeats > 1 else float("nan"),
            "silhouette_n": sample, "silhouette_exact": False}
