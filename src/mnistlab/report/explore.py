"""Report part 1 from the explore section's stored results."""

from __future__ import annotations

import numpy as np

from ..sections.explore import Gallery, HoldoutDemo, Summary
from ..study.results import StudyContext
from .blocks import Block, FigureSink, esc, heading, new_figure, table, text, the
from .figures import image_grid, legend
from .noise import p_value


def _pct(count: int, total: int) -> str:
    return f"{100 * count / total:.2f} %"


def _gallery_figure(g: Gallery, names: list[str]):
    return image_grid(list(g.sample_images),
                      [f"{names[label]}\n#{index}" for label, index in zip(g.sample_labels,
                                                                          g.sample_indices)],
                      cols=len(g.sample_labels), title_lines=2, fontsize=8, tile_inches=1.3)


def _balance_figure(s: Summary):
    fig = new_figure(10, 3.4)
    x = np.arange(len(s.class_names))
    for i, (split, counts, color) in enumerate((("train", s.train_counts, "tab:blue"),
                                                ("test", s.test_counts, "tab:red"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.bar(x, counts, color=color)
        ax.axhline(sum(counts) / len(counts), color="k", lw=0.8, ls="--", label="uniform")
        ax.set_xticks(x, s.class_names, rotation=45 if len(s.class_names) > 10 else 0,
                      fontsize=8)
        ax.set_title(f"{split} set ({sum(counts):,} images)")
        ax.set_xlabel("class")
        ax.set_ylabel("number of images")
        legend(ax, fontsize=8)
    return fig


def _means_figure(g: Gallery, names: list[str]):
    # each mean on its own colour scale, from its darkest to its brightest pixel
    means = [(m - m.min()) / max(float(m.max() - m.min()), 1e-12) for m in g.class_means]
    return image_grid(means, list(names), cols=min(len(names), 10), fontsize=8,
                      cmap="magma", vmin=0, vmax=1)


def render(results: dict, sink: FigureSink, study: StudyContext) -> list[Block]:
    s = the(results, Summary)
    g = the(results, Gallery)
    h = the(results, HoldoutDemo)
    n_tr, n_te = s.train_shape[0], s.test_shape[0]
    shape = "x".join(str(d) for d in s.train_shape[1:])
    blocks = [
        text(f"Dataset <b>{esc(s.name)}</b>, read from {esc(s.source)}."
             + "".join(f" {esc(n)[0].upper() + esc(n)[1:]}." for n in s.notes)),
        table(["split", "images array", "dtype", "labels", "classes", "pixel mean", "pixel std",
               "imbalance (max/min)"],
              [["train", str(tuple(s.train_shape)), s.dtype, f"({n_tr},)", len(s.class_names),
                round(s.pixel_mean["train"], 2), round(s.pixel_std["train"], 2),
                round(s.train_imbalance, 3)],
               ["test", str(tuple(s.test_shape)), s.dtype, f"({n_te},)", len(s.class_names),
                round(s.pixel_mean["test"], 2), round(s.pixel_std["test"], 2),
                "a class has no image" if 0 in s.test_counts else round(s.test_imbalance, 3)]],
              "Dataset summary (pixel statistics on the raw 0-255 scale)"),
        heading("1.1 What is the shape of the data?"),
        text(f"The training set holds {n_tr:,} images and the test set {n_te:,}, each a "
             f"{shape} grid of {s.dtype} pixels (0 = black, 255 = white), stored as arrays of "
             f"shape {tuple(s.train_shape)} and {tuple(s.test_shape)}. Labels are integer "
             f"arrays of shape ({n_tr:,},) and ({n_te:,},) over {len(s.class_names)} classes. "
             f"Classic models read each image as a vector of "
             f"{int(np.prod(s.train_shape[1:]))} pixels; a CNN keeps the 2-D grid."),
        sink.block("explore-samples", _gallery_figure(g, s.class_names),
                   f"{len(g.sample_labels)} random training images (seed {study.seed}) with "
                   "their labels and indices"),
        heading("1.2 Why split the data into a training and a test set?"),
        text("A model is fitted to minimise its error on the training images, so its accuracy on "
             "them measures memory as much as learning. Only images it never saw estimate how it "
             "will do on new data, and only if they are not used to choose the model either "
             "(hyper-parameters are tuned on a validation split carved out of the training set). "
             + holdout_answer(h)),
        heading("1.3 Are the training and test sets balanced?"),
        sink.block("explore-balance", _balance_figure(s),
                   "Images per class in the training and test sets (dashed: a uniform split)"),
        _balance_table(s),
        text(_balance_answer(s)),
        sink.block("explore-means", _means_figure(g, s.class_names),
                   "Mean training image of each class"),
    ]
    return blocks


def _balance_table(s: Summary) -> Block:
    n_tr, n_te = sum(s.train_counts), sum(s.test_counts)
    rows = [[name, tr, _pct(tr, n_tr), te, _pct(te, n_te)]
            for name, tr, te in zip(s.class_names, s.train_counts, s.test_counts)]
    return table(["class", "train count", "train %", "test count", "test %"], rows,
                 "Count and share of each class")


def holdout_answer(h: HoldoutDemo) -> str:
    """The measured half of seed 1.2: 1-NN on images it saw and on test images."""
    return (f"Measured here: a 1-nearest-neighbour classifier fitted on {h.n_fit:,} training "
            f"images scores <b>{h.train_accuracy:.3f}</b> on {h.n_eval:,} of the images it was "
            f"fitted on, but <b>{h.test_accuracy:.3f}</b> on {h.n_test:,} test images: the "
            f"{h.train_accuracy - h.test_accuracy:.3f} gap is what training accuracy hides.")


def _test_ratio(s: Summary, called: str) -> str:
    """The test set's largest/smallest class ratio, or the classes it has no image of."""
    missing = [esc(name) for name, n in zip(s.class_names, s.test_counts) if n == 0]
    if missing:
        return f"the test set has no image of {', '.join(missing)}"
    return f"the test set's {called} is {s.test_imbalance:.4g}"


def _balance_answer(s: Summary) -> str:
    tr = np.array(s.train_counts)
    names = s.class_names
    lo, hi = int(tr.argmin()), int(tr.argmax())
    pct_lo, pct_hi = 100 * tr[lo] / tr.sum(), 100 * tr[hi] / tr.sum()
    verdict = ("perfectly balanced" if s.train_imbalance == 1.0 else
               "close to balanced" if s.train_imbalance < 1.5 else "imbalanced")
    if s.train_imbalance == 1.0:
        answer = (f"The training set is <b>perfectly balanced</b>: every class has {tr[0]:,} "
                  f"images ({pct_hi:.2f} %); {_test_ratio(s, 'largest/smallest ratio')}. ")
    else:
        answer = (f"The training set is <b>{verdict}</b>: its largest class ({esc(names[hi])}, "
                  f"{tr[hi]:,} images, {pct_hi:.2f} %) is {s.train_imbalance:.4g} times its "
                  f"smallest ({esc(names[lo])}, {tr[lo]:,}, {pct_lo:.2f} %), against "
                  f"{100 / len(names):.2f} % each for a uniform split; "
                  f"{_test_ratio(s, 'ratio')}. ")
    p_uniform = s.uniform_chi2_p["train"]
    if s.train_imbalance > 1.0:
        test = (f"A chi-square test {'rejects' if p_uniform < 0.05 else 'does not reject'} "
                f"exactly equal class frequencies in the training set ({p_value(p_uniform)}). ")
        if s.train_imbalance < 1.5:
            answer += test + (f"A {s.train_imbalance:.2f} ratio is mild: accuracy stays a "
                              "meaningful score and no re-weighting is needed. ")
        else:
            answer += test + (f"With a {s.train_imbalance:.4g} ratio, accuracy weighs the large "
                              "classes more than the small ones: read each class's recall in "
                              "the confusion matrices too. ")
    answer += (f"Train and test class distributions differ by a total-variation distance of "
               f"{s.train_test_tv:.4f} (chi-square test of equal distributions: "
               f"{p_value(s.train_test_chi2_p)})")
    if s.train_test_chi2_p < 0.05:
        te = np.array(s.test_counts)
        share_tr, share_te = tr / tr.sum(), te / te.sum()
        moved = int(np.abs(share_te - share_tr).argmax())
        answer += (f": the test set mixes the classes otherwise ({esc(names[moved])} is "
                   f"{100 * share_tr[moved]:.2f} % of the training images and "
                   f"{100 * share_te[moved]:.2f} % of the test images), so the test accuracy "
                   "weighs the classes otherwise than the validation accuracy, whose images "
                   "come from the training set. ")
    else:
        answer += (", a difference the test cannot tell from chance: the test accuracy is "
                   "measured on the class mix the models were trained on. ")
    answer += ("The seed printed only the pixel standard deviations "
               f"(here {s.pixel_std['train']:.2f} train, {s.pixel_std['test']:.2f} test), which "
               "say nothing about balance.")
    return answer
