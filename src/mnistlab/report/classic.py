"""Report part 3 from the classic section's stored results."""

from __future__ import annotations

import numpy as np

from ..sections.classic import (
    CURVE_MODELS,
    MODELS,
    BestModel,
    CRow,
    CSweep,
    CurveRow,
    LearningCurve,
    ModelResult,
    Representation,
    SvcKernels,
    SvcPca,
    SweepRow,
    TreeDepth,
    TreePca,
)
from ..study.results import StudyContext
from .blocks import Block, FigureSink, esc, every, heading, maybe, new_figure, nouns, table, text, the
from .figures import confusion_figure, error_gallery, legend
from .noise import SPEED_MARGIN, gain_noise

NAMES = {name: info.label for name, info in MODELS.items()}


def _f(v: float, d: int = 3) -> str:
    return f"{v:.{d}f}"


def _leaderboard(models: list[ModelResult]) -> Block:
    rows = []
    for m in sorted(models, key=lambda m: -m.row["val_acc"]):
        r = m.row
        rows.append([NAMES.get(m.name, m.name), r["representation"], _f(r["train_acc"]),
                     _f(r["val_acc"]), _f(r["test_acc"]), _f(r["train_acc"] - r["test_acc"]),
                     _f(r["fit_s"], 2), _f(r["predict_s_per_10k"], 2), _f(r["size_mb"], 2),
                     _f(r["peak_mb"], 0), m.fitted_by])
    n_fit = models[0].row["n_fit"]
    n_score = models[0].row["train_score_n"]
    bins = {m.params.get("max_bins") for m in models if m.name == "hist-gb"} - {None, 255}
    coarser = (f"; gradient boosting bins each input into {bins.pop()} levels (scikit-learn's "
               "default: 255)" if bins else "")
    return table(["model", "input", "train acc", "validation acc", "test acc", "gap (train - test)",
                  "fit (s)", "predict (s / 10k images)", "size (MB, pickled)", "peak RSS (MiB)",
                  "fitted by"],
                 rows, f"Every model fitted on {n_fit:,} training images, sorted by validation "
                       f"accuracy (train accuracy measured on {n_score:,} of them){coarser}")


def _curve_figure(curve: LearningCurve):
    fig = new_figure(7, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for i, name in enumerate(CURVE_MODELS):
        rows = sorted((r for r in curve.rows if r["model"] == name), key=lambda r: r["size"])
        if not rows:
            continue
        color = f"C{i}"
        sizes = [r["size"] for r in rows]
        ax.plot(sizes, [r["test_acc"] for r in rows], "o-", color=color,
                label=f"{NAMES[name]} (test)")
        ax.plot(sizes, [r["train_acc"] for r in rows], ":", color=color, alpha=0.7,
                label=f"{NAMES[name]} (train)")
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel("accuracy")
    legend(ax, fontsize=7)
    return fig


def _depth_figure(tree: TreeDepth):
    fig = new_figure(7, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(tree.depths, tree.train_acc, "o-", ms=3, label="train", color="tab:red")
    ax.plot(tree.depths, tree.val_acc, "s-", ms=3, label="validation", color="tab:green")
    ax.plot(tree.depths, tree.test_acc, "^-", ms=3, label="test", color="tab:blue")
    ax.axvline(tree.best_depth, color="k", lw=0.8, ls="--", label="chosen on validation")
    ax.set_xlabel("max_depth")
    ax.set_ylabel("accuracy")
    legend(ax, fontsize=8)
    return fig


def _accuracy_vs_components(rows: list[dict], show_fit_time: bool):
    """Train and test accuracy against the number of PCA components (fit time as bars)."""
    fig = new_figure(7, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    ns = [r["n_components"] for r in rows]
    ax.plot(ns, [r["train_acc"] for r in rows], "o-", label="train", color="tab:red")
    ax.plot(ns, [r["test_acc"] for r in rows], "s-", label="test", color="tab:blue")
    ax.set_xlabel("PCA components")
    ax.set_ylabel("accuracy")
    ax.set_xscale("log")
    if show_fit_time:
        ax2 = ax.twinx()
        ax2.bar(ns, [r["fit_s"] for r in rows], width=np.array(ns) * 0.15, alpha=0.25,
                color="grey")
        ax2.set_ylabel("fit time (s), bars")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _c_figure(c: CSweep, names: list[str]):
    n = len(c.rows)
    fig = new_figure(3.6 * n, 3.8)
    pts = c.points
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.05 * (hi - lo)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200)
    for i, r in enumerate(c.rows):
        ax = fig.add_subplot(1, n, i + 1)
        ax.scatter(pts[:, 0], pts[:, 1], c=np.where(c.labels == 1, "tab:orange", "tab:blue"),
                   s=6, alpha=0.6)
        sv = pts[np.asarray(r["support"], dtype=int)]
        ax.scatter(sv[:, 0], sv[:, 1], s=40, facecolors="none", edgecolors="k", lw=0.6)
        w0, w1 = r["coef"]
        b = r["intercept"]
        if abs(w1) > 1e-12:
            for offset, style in ((0, "-"), (1, "--"), (-1, "--")):
                ax.plot(xs, (offset - b - w0 * xs) / w1, "k" + style, lw=1)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_title(f"C = {r['C']:g}: {r['n_support']} support vectors\n"
                     f"margin width {2 / max(np.hypot(w0, w1), 1e-12):.3g}, "
                     f"test acc {r['test_acc']:.4f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def render(results: dict, sink: FigureSink, study: StudyContext) -> list[Block]:
    models = every(results, ModelResult)
    best = the(results, BestModel)
    curve = the(results, LearningCurve)
    tree = the(results, TreeDepth)
    svc_pca = the(results, SvcPca)
    kernels = the(results, SvcKernels)
    c = the(results, CSweep)
    tree_pca = the(results, TreePca)
    rep = maybe(results, Representation)
    names = study.class_names
    by_name = {m.name: m.row for m in models}
    blocks: list[Block] = [text(
        "Protocol: a stratified validation split is held out of the training set; every model "
        "is fitted on the rest, every choice (a tree depth, the best model) is made on the "
        "validation split, and the test set is only scored. Pixels are scaled to 0..1 as "
        "float32; SVC, k-NN and gradient boosting read PCA components fitted on the training "
        "part only." + (_representation_text(rep) if rep else ""))]

    # 3.1 ---------------------------------------------------------------------------
    blocks += [heading("3.1 Generative vs discriminative: naive Bayes against logistic "
                       "regression and SVM"),
               sink.block("classic-learning-curve", _curve_figure(curve),
                          "Accuracy against the training-set size (solid: test, dotted: train)"),
               text(generative_answer(curve, n_test=int(best.confusion.sum())))]

    # 3.2-3.3 -----------------------------------------------------------------------
    blocks += [heading("3.2-3.3 Every model: train and test accuracy"), _leaderboard(models),
               text(train_test_answer(models))]

    # decision tree depth -------------------------------------------------------------
    blocks += [heading("Decision tree: max_depth"),
               sink.block("classic-tree-depth", _depth_figure(tree),
                          "Decision-tree accuracy against max_depth"),
               text(tree_depth_answer(
                   tree, seed_comparable=study.digits,
                   whole_tree_train_acc=by_name["decision-tree"]["train_acc"]
                   if tree.from_leaderboard and "decision-tree" in by_name else None,
                   n_val=validation_size(tree.n_fit, study.config.classic.validation_fraction),
                   n_test=int(best.confusion.sum())))]

    # SVC ------------------------------------------------------------------------------
    blocks += [heading("SVC (RBF kernel) on PCA-reduced data"),
               sink.block("classic-svc-pca", _accuracy_vs_components(svc_pca.rows, True),
                          f"RBF SVC trained on {svc_pca.n_train:,} images (stratified sample) "
                          "for each number of PCA components"),
               table(["PCA components", "train acc", "test acc", "support vectors", "fit (s)"],
                     [[r["n_components"], _f(r["train_acc"]), _f(r["test_acc"]),
                       r["n_support"], _f(r["fit_s"], 2)] for r in svc_pca.rows]),
               text(svc_pca_answer(svc_pca.rows, int(best.confusion.sum())))]
    blocks += [heading("SVC kernels"),
               table(["kernel", "C", "train acc", "test acc", "support vectors", "fit (s)",
                      "predict (s / 10k)"],
                     [[r["kernel"], f"{r['C']:g}", _f(r["train_acc"]), _f(r["test_acc"]),
                       r["n_support"], _f(r["fit_s"], 2), _f(r["predict_s_per_10k"], 2)]
                      for r in kernels.rows],
                     f"On {kernels.n_train:,} training images (stratified sample), "
                     f"{kernels.n_components} PCA components"),
               text(kernel_answer(kernels, int(best.confusion.sum())))]
    blocks += [heading(f"Regularisation C: classes {esc(names[c.classes[0]])} vs "
                       f"{esc(names[c.classes[1]])} on 2 PCA components"),
               sink.block("classic-c-sweep", _c_figure(c, names),
                          f"Linear SVM on {len(c.labels):,} training images projected on their "
                          "first two principal components: decision boundary (solid), margins "
                          "(dashed), support vectors circled"),
               text(_c_answer(c))]

    # 3.4 -------------------------------------------------------------------------------
    raw_tree_acc = tree.test_acc[tree.depths.index(tree.best_depth)]
    blocks += [heading("3.4 Does PCA influence the classification?"),
               sink.block("classic-tree-pca", _accuracy_vs_components(tree_pca.rows, False),
                          f"Decision tree (max_depth {tree_pca.max_depth}, chosen above) on the "
                          "first n principal components"),
               text(pca_influence_answer(tree_pca.rows, raw_tree_acc, svc_pca.rows,
                                         int(best.confusion.sum())))]

    # best model -----------------------------------------------------------------------
    row = by_name[best.name]
    blocks += [heading(f"Best classic model: {NAMES.get(best.name, best.name)}"),
               text(f"Chosen by {best.chosen_by} ({row['val_acc']:.4f}); its test accuracy is "
                    f"<b>{row['test_acc']:.4f}</b>."),
               sink.block("classic-confusion", confusion_figure(
                   best.confusion, names, f"{NAMES.get(best.name, best.name)}, test set"),
                   "Confusion matrix, each row normalised by its class count"),
               text(_confusion_answer(best, names))]
    if len(best.error_images):
        blocks.append(sink.block("classic-errors", error_gallery(
            best.error_images, best.error_true, best.error_pred, best.error_confidence, names),
            f"The {len(best.error_images)} test images it got wrong most confidently"))
    return blocks


def _representation_text(rep) -> str:
    if not rep.val_acc:
        return f" Their pixels are transformed by <code>{rep.transform}</code> (set in the config)."
    scores = ", ".join(f"{k} {v:.4f}" for k, v in rep.val_acc.items())
    how = ("are used as they are (<b>linear</b>)" if rep.transform == "linear"
           else f"are transformed by <b>{rep.transform}</b>")
    tie = len(set(rep.val_acc.values())) == 1
    return (f" Before that PCA the pixels {how}, chosen on the validation split: an RBF SVC "
            f"fitted on {rep.n_train:,} training images scores {scores} there"
            + (f" (a tie: the first tried, {rep.transform}, is kept)." if tie else ".")
            + (" The square root spreads the faint end of the grey scale and compresses the "
               "bright end (a grey level of 16 of 255 becomes 0.25 instead of 0.06), so faint "
               "pixels weigh more in the PCA's distances." if rep.transform == "sqrt"
               else ""))


def _curve(curve: LearningCurve, name: str) -> list[CurveRow]:
    return sorted((r for r in curve.rows if r["model"] == name), key=lambda r: r["size"])


def generative_answer(curve: LearningCurve, n_test: int | None = None) -> str:
    """Seed 3.1, and Ng & Jordan's claim checked on the learning curves of this run."""
    text_ = ("Naive Bayes is <b>generative</b>: it models how each class produces images, "
             "p(x | y) (here each pixel an independent Gaussian given the class) and the class "
             "prior p(y), and classifies with Bayes' rule. Logistic regression and the SVM are "
             "<b>discriminative</b>: they model p(y | x) or the decision boundary directly "
             "and never describe the images. Theory (Ng & Jordan, 2002): the generative model "
             "makes a strong, wrong assumption (pixels are far from independent given the "
             "class) but each of its estimates (a mean and a variance per pixel and class) converges "
             "fast, so it should approach its (worse) best accuracy with fewer examples: a "
             "number that grows with the logarithm of the number of pixels, against linearly "
             "for logistic regression. It does not have fewer parameters: a Gaussian naive "
             "Bayes on d pixels and C classes has 2dC + C, logistic regression dC + C. The "
             "discriminative models need more data and end higher. ")
    nb, lr = _curve(curve, "gaussian-nb"), _curve(curve, "logistic")
    if not nb or not lr:
        return text_
    return text_ + "Measured: " + nb_vs_logistic(
        [r["size"] for r in nb], [r["test_acc"] for r in nb], [r["test_acc"] for r in lr],
        n_test)


def nb_vs_logistic(sizes: list[int], nb: list[float], lr: list[float],
                   n_test: int | None = None) -> str:
    """Whether naive Bayes leads with few images, where logistic regression overtakes it, and
    which gains more with data: each from the measured test accuracies. Which gains more is
    said only beyond the noise ``n_test`` test images leave on the two gains (else
    ACCURACY_NOISE, where the test set's size is not known)."""
    ahead = [i for i, (a, b) in enumerate(zip(nb, lr)) if a > b + ACCURACY_NOISE]
    text_ = (f"with {sizes[0]:,} training images naive Bayes scores {nb[0]:.3f} and logistic "
             f"regression {lr[0]:.3f}; with {sizes[-1]:,}, {nb[-1]:.3f} and {lr[-1]:.3f}. ")
    if 0 in ahead:
        after = next((i for i in range(len(sizes)) if lr[i] >= nb[i]), None)
        text_ += ("Naive Bayes leads with the fewest images, as the theory says, and logistic "
                  + (f"regression overtakes it by {sizes[after]:,} images. " if after is not None
                     else "regression never catches up at these sizes. "))
    elif ahead:
        text_ += (f"Naive Bayes is not ahead with the fewest images, only at "
                  f"{', '.join(f'{sizes[i]:,}' for i in ahead)}. ")
    else:
        text_ += ("Naive Bayes is behind at every size, even the smallest: its advantage with "
                  "few examples does not show here, where its independence assumption costs "
                  "more than its fast convergence saves. ")
    gain_nb, gain_lr = nb[-1] - nb[0], lr[-1] - lr[0]
    noise = accuracy_noise(n_test, nb[0], nb[-1], lr[0], lr[-1])
    within = (f" (two standard errors of the difference on {n_test:,} test images: "
              f"{noise:.3f})" if n_test else "")
    return text_ + (f"From the smallest to the largest set naive Bayes gains {gain_nb:+.3f} and "
                    f"logistic regression {gain_lr:+.3f}"
                    + (f": the discriminative model keeps improving with data, the generative "
                       f"one less, by {gain_lr - gain_nb:.3f}{within}." if gain_lr > gain_nb + noise
                       else f": here naive Bayes gains more, by {gain_nb - gain_lr:.3f}{within}."
                       if gain_nb > gain_lr + noise else
                       f": a difference of {abs(gain_lr - gain_nb):.3f}, within the noise"
                       f"{within or f' ({noise:.3f})'}: both improve alike."))


def fits_its_training_set_by_construction(model: ModelResult) -> bool:
    """k-NN with distance weights: each training image is its own nearest neighbour, at
    distance 0, so its training accuracy is 1 whatever it learned."""
    return model.name == "knn" and (model.params or {}).get("weights") == "distance"


def train_test_answer(models: list[ModelResult]) -> str:
    """Seed 3.2-3.3: why both accuracies, and which model's gap is largest, from the rows
    (a training accuracy that is 1 by construction is not read as overfitting)."""
    exact = [m for m in models if fits_its_training_set_by_construction(m)]
    gaps = sorted((m for m in models if m not in exact),
                  key=lambda m: m.row["train_acc"] - m.row["test_acc"])
    note = "".join(f" {NAMES.get(m.name, m.name)} scores {m.row['train_acc']:.3f} on its "
                   "training images by construction (with distance weights each training "
                   "image is its own nearest neighbour), which says nothing of overfitting."
                   for m in exact)
    if not gaps:
        return note.strip()
    big, small = gaps[-1], gaps[0]
    return ("The training accuracy alone cannot tell a model that learned from one that "
            "memorised; the test accuracy alone cannot tell whether a poor model is too "
            "simple or too complex. Together they do: a low training accuracy is underfitting "
            "(the model cannot even fit the data it sees), a training accuracy far above the "
            f"test accuracy is overfitting. Measured: {NAMES.get(big.name, big.name)} has the "
            f"largest gap ({big.row['train_acc']:.3f} train vs {big.row['test_acc']:.3f} test), "
            f"{NAMES.get(small.name, small.name)} the smallest ({small.row['train_acc']:.3f} vs "
            f"{small.row['test_acc']:.3f}). " + _validation_against_test(models) + note)


def _validation_against_test(models: list[ModelResult]) -> str:
    """How the validation column, which chooses, compares with the test column: the rank its
    choice gets on test and the largest difference (not a verdict: on a test set whose class
    mix differs from the training set's, the two need not agree)."""
    def name(m):
        return NAMES.get(m.name, m.name)

    chosen = max(models, key=lambda m: m.row["val_acc"])  # the first of a tie, as the table
    rank = 1 + sum(m.row["test_acc"] > chosen.row["test_acc"] for m in models)
    far = max(models, key=lambda m: abs(m.row["val_acc"] - m.row["test_acc"]))
    where = ("is also first on the test column" if rank == 1 else
             f"ranks {rank} of {len(models)} on the test column")
    return (f"The validation column is what choices are based on: the model it puts first, "
            f"{name(chosen)}, {where}, and the two columns differ by at most "
            f"{abs(far.row['val_acc'] - far.row['test_acc']):.3f} ({name(far)}: "
            f"{far.row['val_acc']:.3f} validation, {far.row['test_acc']:.3f} test). The test set "
            "is only scored, never used to choose.")


def kernel_answer(k: SvcKernels, n_test: int = 0) -> str:
    """Seed 3.2-3.3 on SVM kernels: what was measured, at the C each kernel was given. The
    comparison is of these settings, not of the kernels at their best C, and it is on the
    test column: the sentence says so instead of naming a best kernel."""
    rows = {r["kernel"]: r for r in k.rows}
    top = max(k.rows, key=lambda r: r["test_acc"])
    fastest = min(k.rows, key=lambda r: r["fit_s"])
    settings = ", ".join(f"{r['kernel']} {r['test_acc']:.3f} (C = {r['C']:g})" for r in
                         sorted(k.rows, key=lambda r: -r["test_acc"]))
    same_c = len({r["C"] for r in k.rows}) == 1
    # the settings within twice the test set's noise of the top one share its place
    tied = [r["kernel"] for r in sorted(k.rows, key=lambda r: -r["test_acc"])
            if r is top or n_test and top["test_acc"] - r["test_acc"]
            <= gain_noise([top["test_acc"], r["test_acc"]], n_test)]
    leader = (f"{top['kernel']} scores highest" if len(tied) == 1 else
              f"{', '.join(tied[:-1])} and {tied[-1]} score highest, within twice the noise of "
              f"the {n_test:,} test images of each other")
    text_ = (f"Test accuracy per kernel: {settings}; fastest to fit: {fastest['kernel']} "
             f"({fastest['fit_s']:.2f} s). "
             + (f"At the same C, {leader} here. " if same_c else
                f"{leader}, but the kernels ran with different C, each at one value, not each "
                "at its best: this ranks these settings, not the kernels. "))
    if "sigmoid" in rows:
        text_ += (f"The sigmoid kernel scores {rows['sigmoid']['test_acc']:.3f}. The seed's "
                  "reason (\"the sigmoid kernel is adapted to binary classification\") is not "
                  "it: every SVC here is binary, one-vs-one, whatever the kernel. tanh(a x.y + "
                  "r) is not a positive semi-definite kernel for most a, r, so the optimisation "
                  "is no longer the convex SVM problem, and its scale must be tuned to the "
                  "data. ")
    text_ += ("The number of support vectors is the cost of prediction: each test image is "
              "compared with every one of them.")
    return text_


def _c_answer(c: CSweep) -> str:
    first, last = c.rows[0], c.rows[-1]
    text_ = (f"C weighs the margin violations against the margin width. Measured: C = "
             f"{first['C']:g} keeps a wide margin ({first['n_support']} support vectors, test "
             f"accuracy {first['test_acc']:.4f}); C = {last['C']:g} narrows it to "
             f"{last['n_support']} support vectors (test accuracy {last['test_acc']:.4f}). "
             "Small C: more bias (training points inside the margin or misclassified are "
             "tolerated), less variance (the boundary depends on many points). Large C: the "
             "boundary is pulled by the few points nearest to it, which lowers bias and raises "
             "variance. With a linear kernel the boundary stays a straight line whatever C is; "
             "what changes is which points decide it. ")
    return text_ + c_accuracy_answer(c.rows, c.n_test)


# A line that fits this share of the training points leaves few inside the margin: "almost
# separable"; below it the two classes overlap and the C sweep's flat accuracy has another cause.
ALMOST_SEPARABLE = 0.95


def c_accuracy_answer(rows: list[CRow], n_test: int) -> str:
    """How test accuracy moves with C, and which points libsvm left unconverged."""
    accs = [r["test_acc"] for r in rows]
    path = " → ".join(f"{a:.4f}" for a in accs)
    capped = [r for r in rows if r.get("hit_max_iter")]
    converged = [r["test_acc"] for r in rows if not r.get("hit_max_iter")] or accs
    spread = max(converged) - min(converged)
    best_train = max(r["train_acc"] for r in rows)
    if spread < ACCURACY_NOISE:
        why = (f"because the two classes are {'almost ' if best_train < 1 else ''}linearly "
               f"separable even in 2-D (training accuracy up to {best_train:.4f})"
               if best_train >= ALMOST_SEPARABLE else
               f"and no C separates the two classes in 2-D (training accuracy at most "
               f"{best_train:.4f})")
        text_ = (f"Test accuracy on the {n_test:,} test images of these two classes goes {path}"
                 + (" (converged fits)" if capped else "") + f": it barely moves, {why}. ")
    else:
        text_ = (f"Test accuracy on the {n_test:,} test images of these two classes goes {path}: "
                 f"C matters here (a spread of {spread:.4f} among the converged fits). ")
    for r in capped:
        # the cap explains the lowest accuracy only when no converged fit scores as low
        lowest = len(rows) > 1 and r["test_acc"] == min(accs) and all(
            r["test_acc"] < o["test_acc"] for o in rows if not o.get("hit_max_iter"))
        overlap = (f"on classes that overlap (training accuracy {r['train_acc']:.4f})"
                   if r["train_acc"] < 1 else "even on separable classes")
        text_ += (f"At C = {r['C']:g} libsvm stopped at its iteration cap ({r['n_iter']:,} "
                  f"iterations) before the exact optimum: a nearly hard margin {overlap} is an "
                  "ill-conditioned problem for its solver"
                  + (", which is why its accuracy is the lowest. " if lowest else ". "))
    return text_.rstrip()


def svc_pca_answer(rows: list[SweepRow], n_test: int = 0) -> str:
    """The RBF SVC against the number of PCA components: peak, fit time, train-test gap; a
    gap widens when it grows by more than twice the binomial noise of its ``n_test`` test
    images (ACCURACY_NOISE when the size is unknown)."""
    best = max(rows, key=lambda r: r["test_acc"])
    first, last = rows[0], rows[-1]
    tied = [r["n_components"] for r in rows if r is not best
            and best["test_acc"] - r["test_acc"]
            <= accuracy_noise(n_test, best["test_acc"], r["test_acc"])]
    fit = ("grows" if last["fit_s"] > first["fit_s"] * SPEED_MARGIN else
           "falls" if last["fit_s"] * SPEED_MARGIN < first["fit_s"] else "stays about the same")
    gap0, gap1 = first["train_acc"] - first["test_acc"], last["train_acc"] - last["test_acc"]
    cost = (f", with {first['n_support']:,} then {last['n_support']:,} support vectors: the "
            "fit's cost is the number of support vectors times the cost of one kernel "
            "evaluation, which grows with the dimension")
    text_ = (f"Test accuracy peaks at {best['n_components']} components ({best['test_acc']:.3f}"
             + (f"; {', '.join(map(str, tied))} within twice the noise of it" if tied else "")
             + "). "
             f"The fit time {fit} with the dimension ({first['fit_s']:.2f} s at "
             f"{first['n_components']}, {last['fit_s']:.2f} s at {last['n_components']})"
             + (": each kernel evaluation is a distance in that space. " if fit == "grows" else
                f"{cost}, so the falling time measures something else: one timing of each fit, "
                "on a machine the run shares. "
                if fit == "falls" and last["n_support"] > first["n_support"] else f"{cost}. ")
             + "The seed's conclusion (\"the higher the "
             "number of components, the more overfitting\") reads the train-test gap, which "
             f"here goes from {gap0:.3f} to {gap1:.3f}")
    gaps = [r["train_acc"] - r["test_acc"] for r in rows]
    widest = max(range(len(rows)), key=gaps.__getitem__)
    if gap1 > gap0 + accuracy_noise(n_test, first["test_acc"], last["test_acc"]):
        return text_ + (": it widens, so extra components add detail that the RBF kernel fits "
                        "on the training images more than it helps on new ones.")
    narrower = first if gap0 >= gap1 else last
    in_between = accuracy_noise(n_test, rows[widest]["test_acc"], narrower["test_acc"])
    if gaps[widest] > max(gap0, gap1) + in_between:
        # wider in between than at either end
        return text_ + (f", but is widest at {rows[widest]['n_components']} components "
                        f"({gaps[widest]:.3f}): more components do not widen it steadily, and "
                        "the seed's rule does not hold as stated.")
    return text_ + (": it does not widen beyond the noise of the test set at any size swept, so "
                    "on this data more components do not overfit more.")


def pca_influence_answer(rows: list[SweepRow], raw_tree_acc: float,
                         svc_rows: list[SweepRow], n_test: int = 0) -> str:
    """Seed 3.4: how the tree's accuracy moves with the number of PCA components, each
    difference read against twice the binomial noise of ``n_test`` test images (a stated
    ACCURACY_NOISE when the size is unknown)."""
    top = max(rows, key=lambda r: r["test_acc"])
    low = min(rows, key=lambda r: r["test_acc"])
    if top["test_acc"] - low["test_acc"] > accuracy_noise(n_test, top["test_acc"], low["test_acc"]):
        text_ = (f"Yes: the tree scores from {low['test_acc']:.3f} ({low['n_components']} "
                 f"{nouns(low['n_components'], 'component')}) to {top['test_acc']:.3f} "
                 f"({top['n_components']}), ")
    else:
        text_ = (f"Not measurably: the tree scores between {low['test_acc']:.3f} and "
                 f"{top['test_acc']:.3f} whatever the number of components, within twice the "
                 "noise of the test set, ")
    margin = accuracy_noise(n_test, top["test_acc"], raw_tree_acc)
    if top["test_acc"] > raw_tree_acc + margin:
        text_ += (f"above {raw_tree_acc:.3f} on the raw pixels: on this data the tree finds "
                  "better splits on the principal axes than on single pixels. ")
    elif top["test_acc"] < raw_tree_acc - margin:
        text_ += (f"below {raw_tree_acc:.3f} on the raw pixels: on this data the tree finds "
                  "better splits on single pixels than on the principal axes. ")
    else:
        text_ += (f"its best within twice the noise of its {raw_tree_acc:.3f} on the raw pixels "
                  f"({margin:.3f}). ")
    first, last = svc_rows[0], svc_rows[-1]
    trend = ("rising" if last["fit_s"] > first["fit_s"] * SPEED_MARGIN else
             "falling" if last["fit_s"] * SPEED_MARGIN < first["fit_s"] else "flat")
    return text_ + (f"For SVC the table above shows its fit time {trend} with the dimension "
                    f"({first['fit_s']:.2f} s at {first['n_components']} components, "
                    f"{last['fit_s']:.2f} s at {last['n_components']}).")


def _confusion_answer(best: BestModel, names: list[str]) -> str:
    conf = best.confusion.astype(float)
    off = conf.copy()
    np.fill_diagonal(off, 0)
    i, j = np.unravel_index(off.argmax(), off.shape)
    present = conf.sum(axis=1) > 0  # a class with no test image has no recall
    recall = np.where(present, np.diag(conf) / np.maximum(conf.sum(axis=1), 1), np.inf)
    worst = int(recall.argmin())
    absent = [esc(names[k]) for k in np.flatnonzero(~present)]
    return (f"The most frequent confusion is true {esc(names[i])} predicted as "
            f"{esc(names[j])} ({int(off[i, j])} images); the class recognised least often is "
            f"{esc(names[worst])} (recall {recall[worst]:.3f})"
            + (f"; the test set has no image of {', '.join(absent)}, so "
               f"{'its recall is' if len(absent) == 1 else 'their recalls are'} not measured."
               if absent else "."))


# A change of accuracy smaller than this is "flat" where the number of images it was measured
# on is not known (a few images of a thousand).
ACCURACY_NOISE = 0.005


def accuracy_noise(n_images: int, *accuracies: float) -> float:
    """Twice the binomial noise of a difference of these accuracies on ``n_images`` images
    (report.noise.gain_noise), or ACCURACY_NOISE when the number is not known (0)."""
    return gain_noise(list(accuracies), n_images) if n_images else ACCURACY_NOISE


def validation_size(n_fit: int, validation_fraction: float) -> int:
    """The validation images of the classic section's split that left ``n_fit`` to fit on
    (scikit-learn's train_test_split rounds the held-out share up)."""
    return round(n_fit * validation_fraction / (1 - validation_fraction))


def tree_depth_answer(tree: TreeDepth, seed_comparable: bool = False,
                      whole_tree_train_acc: float | None = None, n_val: int = 0,
                      n_test: int = 0) -> str:
    """Seed 3.2-3.3 on tree depth, every claim computed from the sweep's numbers.

    ``whole_tree_train_acc``: the training accuracy of the grown tree itself (the
    leaderboard's), which is what "memorises" is about when it grew deeper than the sweep.
    A validation accuracy moves, and a train-test gap widens, when the change exceeds twice
    the binomial noise of its ``n_val`` validation or ``n_test`` test images (ACCURACY_NOISE
    where the sizes are not known)."""
    i_best = tree.depths.index(tree.best_depth)
    # Cuts at or beyond the grown tree's depth are that whole tree: report the first of them.
    last = next((i for i, d in enumerate(tree.depths) if d >= tree.leaf_depth_max),
                len(tree.depths) - 1)
    d_last = tree.depths[last]
    train_last = tree.train_acc[last]
    stopped = (f" (the tree stopped growing at depth {tree.leaf_depth_max}: deeper limits up to "
               f"{tree.depths[-1]} change nothing)" if tree.leaf_depth_max < tree.depths[-1]
               else "")
    if tree.leaf_depth_max <= tree.depths[-1]:  # the sweep reached the whole tree
        memorised = (": deep enough, the tree memorises the training set" if train_last >= 0.999
                     else ": the tree does not memorise the training set")
    elif whole_tree_train_acc is not None:
        memorised = (f"; the whole tree, {tree.leaf_depth_max} levels deep, scores "
                     f"{whole_tree_train_acc:.3f} on its training images: "
                     + ("it memorises them" if whole_tree_train_acc >= 0.999 else
                        "it does not memorise them"))
    else:
        memorised = (f", the deepest cut swept; the tree itself grew to depth "
                     f"{tree.leaf_depth_max}, which the sweep does not reach")
    val_best, val_last = tree.val_acc[i_best], tree.val_acc[last]
    val_noise = accuracy_noise(n_val, val_best, val_last)
    test_noise = accuracy_noise(n_test, tree.test_acc[i_best], tree.test_acc[last])
    of_val = f" (twice the noise of {n_val:,} validation images)" if n_val else ""
    if last == i_best:
        after = "at the deepest depth tried"
    elif val_last < val_best - val_noise:
        after = f"and then declines to {val_last:.3f} at depth {d_last}"
    elif val_last > val_best + val_noise:  # a peak chosen among ties, then a rise
        after = f"and then rises to {val_last:.3f} at depth {d_last}"
    else:
        after = (f"and is still within {val_noise:.3g}{of_val} of it at depth {d_last} "
                 f"({val_last:.3f})")
    gap_best = tree.train_acc[i_best] - tree.test_acc[i_best]
    gap_last = train_last - tree.test_acc[last]
    if gap_last > gap_best + test_noise:
        gap = (f"the train-test gap widens from {gap_best:.3f} at the chosen depth to "
               f"{gap_last:.3f} at depth {d_last}: deeper trees overfit")
    elif gap_last < gap_best - test_noise:
        gap = (f"the train-test gap shrinks from {gap_best:.3f} at the chosen depth to "
               f"{gap_last:.3f} at depth {d_last}")
    else:
        gap = (f"the train-test gap stays near {gap_best:.3f} from the chosen depth to depth "
               f"{d_last}")
    grown = (f"The leaderboard's decision tree, grown on {tree.n_fit:,} images to depth "
             f"{tree.leaf_depth_max} ({tree.fit_s:.1f} s), was evaluated cut at every depth: a "
             "tree limited to depth d is that tree's top d levels (up to tie-breaking), so the "
             f"sweep grows no tree instead of {len(tree.depths)}."
             if tree.from_leaderboard else
             f"One tree was grown on {tree.n_fit:,} images to depth {tree.leaf_depth_max} "
             f"({tree.fit_s:.1f} s) and evaluated cut at every depth: a tree limited to depth d "
             "is that tree's top d levels (up to tie-breaking), so one fit replaces "
             f"{len(tree.depths)}.")
    return (f"{grown} Training accuracy reaches {train_last:.3f} at depth "
            f"{d_last}{stopped}{memorised}. Validation accuracy peaks at depth "
            f"<b>{tree.best_depth}</b> ({val_best:.3f}) {after}; {gap}. The depth is chosen on "
            f"the validation split; its test accuracy is {tree.test_acc[i_best]:.3f}. "
            + ("The seed chose depth 10 \"because there are 10 digits\": depth" if seed_comparable
               else "Depth")
            + " counts successive yes/no questions on pixels; it has no relation to the "
            "number of classes (a depth-4 tree already has 16 leaves).")
