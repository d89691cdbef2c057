"""Figures more than one section draws."""

from __future__ import annotations

import numpy as np

from .blocks import new_figure


def share_heatmap(ax, counts: np.ndarray, row_names, col_names, xlabel: str, title: str,
                  annotate_from: float, fontsize: float = 6):
    """Rows of ``counts`` as shares (each row sums to 1), annotated where a share is large
    enough to read; returns the image for a colour bar."""
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(col_names)), col_names, fontsize=7)
    ax.set_yticks(range(len(row_names)), row_names, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    for (r, c), v in np.ndenumerate(share):
        if v >= annotate_from:
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=fontsize,
                    color="white" if v > 0.6 else "black")
    return image


def confusion_figure(confusion: np.ndarray, names: list[str], title: str, fig=None, ax=None):
    """Row-normalised confusion heatmap (a new figure, or drawn on ``ax`` of ``fig``)."""
    if ax is None:
        fig = new_figure(5.6, 5)
        ax = fig.add_subplot(1, 1, 1)
    image = share_heatmap(ax, confusion, names, names, "predicted class", title,
                          annotate_from=0.005)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    return fig


def error_gallery(images, true, pred, confidence, names):
    """Images titled with their true and predicted class (green when right, red when wrong)."""
    n = len(images)
    cols = min(n, 10)
    rows = int(np.ceil(n / cols))
    fig = new_figure(1.25 * cols, 1.6 * rows)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        extra = f" ({confidence[i]:.2f})" if confidence is not None else ""
        ax.set_title(f"true {names[true[i]]}\npred {names[pred[i]]}{extra}", fontsize=6.5,
                     color="tab:green" if true[i] == pred[i] else "tab:red")
        ax.axis("off")
    return fig
