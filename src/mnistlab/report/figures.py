"""Figures more than one section draws."""

from __future__ import annotations

import numpy as np

from .blocks import new_figure


def legend(ax, **kwargs):
    """The axes' legend where it hides the least data. loc="best" is passed although it is
    matplotlib's default: left to the default, matplotlib warns on the user's terminal whenever
    that search takes over a second of wall time, which a busy machine makes a few-millisecond
    search do."""
    return ax.legend(loc="best", **kwargs)


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
            # in_layout=False: inside the axes, so the layout need not measure each one (the
            # same picture; four 10 x 10 confusions 1.69 -> 1.47 s)
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=fontsize,
                    color="white" if v > 0.6 else "black", in_layout=False)
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
    extra = [f" ({c:.2f})" for c in confidence] if confidence is not None else [""] * len(images)
    return image_grid(list(images),
                      [f"true {names[t]}\npred {names[p]}{e}" for t, p, e in zip(true, pred, extra)],
                      cols=min(len(images), 10), title_lines=2, fontsize=6.5, tile_inches=1.25,
                      colors=["tab:green" if t == p else "tab:red" for t, p in zip(true, pred)])


def image_grid(images, titles, *, cols: int, colors=None, title_lines: int = 1,
               fontsize: float = 7, row_labels=None, tile_inches: float = 1.2,
               cmap: str = "gray", vmin: float = 0, vmax: float = 255):
    """Equal-sized images in rows of ``cols``, a title above each (in ``colors``), a label
    left of each row: tiled into one picture on one axes. Matplotlib laid out and drew one
    axes per image, ticks and all, and most of a gallery's drawing went there (a 4 x 10 grid
    of predictions: 1.5 -> 0.4 s); no library tiles labelled images. A ``None`` image leaves
    its tile empty (rows of unequal length)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shapes = [np.shape(im) for im in images if im is not None]
    if not shapes:
        raise ValueError("image_grid: no image to show")
    h, w = shapes[0][:2]
    pixel = tile_inches * 0.88 / w  # inches per image pixel; the rest is the gap
    gap = max(1, round(0.12 * tile_inches / pixel))
    band = round(title_lines * fontsize * 1.3 / 72 / pixel) + 1 if titles is not None else gap
    rows = int(np.ceil(len(images) / cols))
    cell_w, cell_h = w + gap, h + band
    canvas = np.full((rows * cell_h, cols * cell_w), np.nan, dtype=np.float32)
    for i, im in enumerate(images):
        if im is not None:
            top, left = (i // cols) * cell_h + band, (i % cols) * cell_w
            canvas[top:top + h, left:left + w] = im
    margin = 0.28 if row_labels is not None else 0.0  # inches left of the tiles
    width, height = canvas.shape[1] * pixel + margin, canvas.shape[0] * pixel
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((margin / width, 0, 1 - margin / width, 1))
    ax.imshow(np.ma.masked_invalid(canvas), cmap=cmap, vmin=vmin, vmax=vmax,
              interpolation="nearest", aspect="auto")
    ax.set_xlim(-0.5, canvas.shape[1] - 0.5)
    ax.set_ylim(canvas.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    for i, title in enumerate(titles or []):
        if images[i] is not None:
            ax.text((i % cols) * cell_w + w / 2 - 0.5, (i // cols) * cell_h + band - 1.5, title,
                    ha="center", va="bottom", fontsize=fontsize, linespacing=1.1,
                    color=colors[i] if colors is not None else "black")
    for r, label in enumerate(row_labels or []):
        ax.text(-1.5, r * cell_h + band + h / 2, label, ha="right", va="center", rotation=90,
                fontsize=8, clip_on=False)
    return fig
