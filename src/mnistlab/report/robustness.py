"""Report part "Beyond the test set", from the robustness section's stored results."""

from __future__ import annotations

import numpy as np

from ..sections.classic import MODELS
from ..sections.robustness import Familiarity, ModelRobustness, Variants
from ..study.results import StudyContext
from .blocks import Block, FigureSink, esc, every, heading, maybe, new_figure, table, text, the
from .figures import image_grid
from .noise import within_chance

BOOTSTRAP = 1000
COLLAPSE = 0.5  # a model "collapses" under a corruption when one class takes this share


def label(m: ModelRobustness) -> str:
    """The model's name as the rest of the report writes it."""
    return MODELS[m.name].label if m.section == "classic" and m.name in MODELS else m.name


def accuracies(v: Variants, m: ModelRobustness) -> dict:
    """One model's accuracies: on the sampled test images, per corruption, their mean, and on
    the font and 8x8 digits (None where there are none)."""
    right = m.corrupted_pred == v.labels[None, :]
    per = right.mean(1) if len(v.corruptions) else np.zeros(0)
    clean = float((m.clean_pred == v.labels).mean())
    return {"clean": clean, "per": per, "mean": float(per.mean()) if len(per) else None,
            "fonts": float((m.font_pred == v.font_labels).mean()) if len(v.font_labels) else None,
            "small": float((m.small_pred == v.small_labels).mean()) if len(v.small_labels)
            else None}


def _bootstrap_se(per_image: np.ndarray, seed: int) -> float:
    """Bootstrap standard error of the mean of ``per_image`` (the sampled images resampled)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(per_image), (BOOTSTRAP, len(per_image)))
    return float(per_image[rows].mean(1).std(ddof=1))


def _lead(a_right: np.ndarray, b_right: np.ndarray, seed: int) -> tuple[float, float]:
    """How much more often model a is right than b on the same images (booleans, or shares
    per image), and its noise."""
    per_image = a_right.astype(float) - b_right
    return float(per_image.mean()), _bootstrap_se(per_image, seed)


def render(results: dict, sink: FigureSink, study: StudyContext) -> list[Block]:
    v = the(results, Variants)
    scores = every(results, ModelRobustness)
    names = study.class_names
    whole = v.n_test == len(v.test_index)
    images = (f"all {len(v.test_index):,} test images" if whole else
              f"{len(v.test_index):,} test images (a stratified sample"
              + (f" of the {v.n_test:,}" if v.n_test else "") + ", the same for every model)")
    blocks = [text(
        f"Every trained model predicts {images} under each of {len(v.corruptions)} "
        "corruptions, one severity each, fixed before any model was scored: "
        + "; ".join(f"<b>{esc(c)}</b>: {esc(s)}" for c, s in zip(v.corruptions, v.severities))
        + ". The accuracy on the same images uncorrupted is the reference"
        + ("." if whole else " (the sample's accuracy, not the whole test set's)."))]
    if len(v.corruptions):
        blocks.append(sink.block("robustness-gallery", _gallery(v), "The first sampled test "
                                 "images under each corruption"))
    if not scores:
        return blocks + [text("This study trained no model (its classic and deep sections "
                              "did not run): nothing to score.")]
    acc = {m.name: accuracies(v, m) for m in scores}
    by_mean = sorted(scores, key=lambda m: -(acc[m.name]["mean"] or 0))
    if len(v.corruptions):
        blocks += _corruption_blocks(v, scores, by_mean, acc, study, sink)
    blocks += _writing_blocks(v, scores, acc, names, sink, study.seed)
    f = maybe(results, Familiarity)
    if f is not None:
        blocks += _familiarity_blocks(v, f, scores, acc)
    return blocks


def _familiarity_blocks(v: Variants, f: Familiarity, scores, acc) -> list[Block]:
    """What the out-of-distribution flag (the page and the API show it) flags."""
    expected = 1 - f.quantile
    clean_flagged = float((f.test_scores > f.threshold).mean())
    rows = [["clean test sample", f"{100 * clean_flagged:.1f} %", "-"]]
    for c, name in enumerate(v.corruptions):
        mean_acc = np.mean([acc[m.name]["per"][c] for m in scores]) if scores else None
        rows.append([name, f"{100 * f.corrupted_flagged[c]:.1f} %",
                     "-" if mean_acc is None else round(float(mean_acc), 4)])
    for name, share, key in (("typed digits", f.font_flagged, "fonts"),
                             ("scikit-learn's 8x8 digits", f.small_flagged, "small")):
        if not np.isnan(share):
            mean_acc = np.mean([acc[m.name][key] for m in scores]) if scores else None
            rows.append([name, f"{100 * share:.1f} %",
                         "-" if mean_acc is None else round(float(mean_acc), 4)])
    sentences = [
        f"The page and the API flag an image as far from the training images when its distance "
        f"to the space of a {f.components.shape[0]}-component PCA of {f.n_fit:,} training "
        f"images (what those components cannot rebuild of it, RMS over the pixels) is above "
        f"<b>{f.threshold:.1f}</b> grey levels: the {100 * f.quantile:g}th percentile of the "
        f"clean test sample's distances, so that {100 * expected:.0f} % of ordinary test images "
        f"are flagged by design ({100 * clean_flagged:.1f} % here)."]
    if len(v.corruptions):
        most, least = int(np.argmax(f.corrupted_flagged)), int(np.argmin(f.corrupted_flagged))
        sentences.append(
            f"It flags {100 * f.corrupted_flagged[most]:.1f} % of the images under "
            f"{esc(v.corruptions[most])} and {100 * f.corrupted_flagged[least]:.1f} % under "
            f"{esc(v.corruptions[least])}.")
        if scores:
            per = np.array([acc[m.name]["per"] for m in scores]).mean(0)
            hurt = int(np.argmin(per))
            if f.corrupted_flagged[hurt] < 0.5:
                sentences.append(
                    f"The corruption that hurts the models most, {esc(v.corruptions[hurt])}, is "
                    f"flagged for only {100 * f.corrupted_flagged[hurt]:.1f} % of its images: "
                    "an unflagged image is not thereby one the models read well.")
    return [heading("Far from the training images"), text(" ".join(sentences)),
            table(["images", "flagged", "mean accuracy of the models"], rows,
                  "Share of each kind of image the out-of-distribution flag raises")]


def _corruption_blocks(v, scores, by_mean, acc, study, sink) -> list[Block]:
    rows = []
    for m in by_mean:
        a = acc[m.name]
        worst = int(np.argmin(a["per"]))
        rows.append([label(m), round(a["clean"], 4), round(a["mean"], 4),
                     f"{a['mean'] - a['clean']:+.4f}",
                     f"{v.corruptions[worst]} ({a['per'][worst]:.3f})",
                     m.trained_with or ("none" if m.section == "deep" else "-")])
    blocks = [heading("Corrupted test images"), table(
        ["model", "clean (sample)", "mean over the corruptions", "drop", "worst corruption",
         "trained with augmentations"],
        rows, "Accuracy on the corrupted test images, most robust first")]
    fig = _heatmap(v, by_mean, acc)
    blocks.append(sink.block("robustness-heatmap", fig, "Accuracy of each model under each "
                             "corruption"))
    sentences = []
    # Answering the sample's largest class every time scores its share: a model no better than
    # that on the clean images has nothing for a corruption to take away.
    chance = float(np.bincount(v.labels).max() / len(v.labels))
    top_clean = max(acc[m.name]["clean"] for m in scores)
    if within_chance(top_clean, chance, len(v.labels)):
        sentences.append(
            f"No model reads the clean images better than answering the largest class every "
            f"time would ({top_clean:.4f} at best, against {chance:.4f}, within twice the "
            "noise of the sample): the corruptions have nothing to take away, and no model "
            "is ranked.")
        blocks.append(text(" ".join(sentences)))
        return blocks
    best = by_mean[0]
    b = acc[best.name]
    drop = (f"{b['mean']:.4f} on average over the corruptions, {b['mean'] - b['clean']:+.4f} "
            f"from its {b['clean']:.4f} on the same images clean")
    sentence = f"<b>{esc(label(best))}</b> holds up best: {drop}"
    if len(by_mean) > 1:
        second = by_mean[1]
        gap = b["mean"] - acc[second.name]["mean"]
        # per image, the share of the corruptions each gets right: the same images are
        # resampled for every corruption
        se = _lead((best.corrupted_pred == v.labels).mean(0),
                   (second.corrupted_pred == v.labels).mean(0), study.seed)[1]
        if gap > 2 * se:
            sentence += (f"; next comes {esc(label(second))} ({acc[second.name]['mean']:.4f}), "
                         f"{gap:.4f} behind (bootstrap standard error {se:.4f}, beyond twice "
                         "the noise)")
        else:
            sentence = (f"<b>{esc(label(best))}</b> and <b>{esc(label(second))}</b> "
                        f"({acc[second.name]['mean']:.4f}) hold up best, {gap:.4f} apart "
                        f"(bootstrap standard error {se:.4f}, within twice the noise: the two "
                        f"are not told apart on these images); {esc(label(best))}: {drop}")
    sentences.append(sentence + ".")
    per_corruption = np.array([acc[m.name]["per"] for m in scores])  # models x corruptions
    clean = np.array([acc[m.name]["clean"] for m in scores])
    # per corruption and image: the share of the models right
    right = np.mean([m.corrupted_pred == v.labels for m in scores], axis=0)
    order = np.argsort(per_corruption.mean(0), kind="stable")
    worst, mildest = int(order[0]), int(order[-1])
    sentence = (f"The corruption that hurts most is <b>{esc(v.corruptions[worst])}</b>: the "
                f"models average {per_corruption[:, worst].mean():.4f} under it against "
                f"{clean.mean():.4f} clean")
    if len(order) > 1:
        runner_up = int(order[1])
        gap = per_corruption[:, runner_up].mean() - per_corruption[:, worst].mean()
        se = _bootstrap_se(right[runner_up] - right[worst], study.seed)
        if gap <= 2 * se:
            sentence += (f", with {esc(v.corruptions[runner_up])} within twice the noise of it "
                         f"({per_corruption[:, runner_up].mean():.4f}, standard error of the "
                         f"difference {se:.4f})")
        sentence += (f"; the mildest is {esc(v.corruptions[mildest])} "
                     f"({per_corruption[:, mildest].mean():.4f})")
    sentences.append(sentence + ".")
    top_clean = max(scores, key=lambda m: acc[m.name]["clean"])
    if top_clean is not best:
        sentences.append(
            f"The most accurate model on the clean sample, {esc(label(top_clean))} "
            f"({acc[top_clean.name]['clean']:.4f}), is not the most robust: "
            f"{acc[top_clean.name]['mean']:.4f} on average under the corruptions.")
    collapsed = _collapses(v, scores)
    if collapsed:
        said = "; ".join(f"{esc(m)} answers \"{esc(study.class_names[k])}\" for "
                         f"{100 * share:.0f} % of the images under {esc(c)} (the class of "
                         f"{100 * np.mean(v.labels == k):.0f} % of them)"
                         for m, c, k, share in collapsed[:6])
        sentences.append(f"Some models answer one class for most images of a corruption, most "
                         f"images of the other classes included: {said}.")
    blocks.append(text(" ".join(sentences)))
    return blocks


def _collapses(v: Variants, scores) -> list[tuple[str, str, int, float]]:
    """(model, corruption, class, share) where one class takes over COLLAPSE of the answers,
    largest share first."""
    found = []
    n_classes = int(max(v.labels.max(), max(m.corrupted_pred.max() for m in scores))) + 1
    for m in scores:
        for c, pred in zip(v.corruptions, m.corrupted_pred):
            counts = np.bincount(pred, minlength=n_classes)
            k = int(counts.argmax())
            share = counts[k] / len(pred)
            # most of the other classes' images too: a class that is most of the sample is
            # not taken over by being answered most
            if share > COLLAPSE and np.mean(pred[v.labels != k] == k) > COLLAPSE:
                found.append((label(m), c, k, float(share)))
    return sorted(found, key=lambda f: -f[3])


def _writing_blocks(v, scores, acc, names, sink, seed: int) -> list[Block]:
    if not len(v.font_labels) and not len(v.small_labels):
        return []
    rows, columns = [], ["model", "clean test sample"]
    if len(v.font_labels):
        columns.append(f"typed digits ({len(v.font_names)} fonts)")
    if len(v.small_labels):
        columns.append("scikit-learn's 8x8 digits")
    for m in sorted(scores, key=lambda m: -acc[m.name]["clean"]):
        a = acc[m.name]
        rows.append([label(m), round(a["clean"], 4)]
                    + ([round(a["fonts"], 4)] if a["fonts"] is not None else [])
                    + ([round(a["small"], 4)] if a["small"] is not None else []))
    blocks = [heading("Someone else's writing"), text(_writing_sentences(v, scores, acc, seed)),
              table(columns, rows, "Accuracy on digits from other hands, beside the test "
                    "sample's")]
    images, titles = [], []
    if len(v.font_labels):
        pick = _font_sample(v, 20)
        images += list(v.font_images[pick])
        titles += [f"{v.font_names[v.font_index[i]][:12]}\n+{v.font_strokes[i]} px"
                   for i in pick]
    if len(v.small_labels):
        images += list(v.small_images[:10])
        titles += [f"8x8 #{i}\n{names[v.small_labels[i]]}" for i in range(min(10, len(v.small_labels)))]
    fig = image_grid(images, titles, cols=10, title_lines=2, fontsize=6, tile_inches=1.1)
    blocks.append(sink.block("robustness-writing", fig, "Typed digits (font, extra stroke "
                             "width) and 8x8 digits as the models read them"))
    return blocks


def _best_reader(scores, acc, key: str, pred: str, labels: np.ndarray, seed: int) -> str:
    """Who reads a set of digits best, told apart from the runner-up only beyond twice the
    noise of their difference (a paired bootstrap over the images)."""
    ranked = sorted(scores, key=lambda m: -acc[m.name][key])
    best = ranked[0]
    said = f"<b>{esc(label(best))}</b> reads them best ({acc[best.name][key]:.4f})"
    if len(ranked) == 1:
        return said
    second = ranked[1]
    gap, se = _lead(getattr(best, pred) == labels, getattr(second, pred) == labels, seed)
    if gap > 2 * se:
        return (f"{said}, {gap:.4f} ahead of {esc(label(second))} (bootstrap standard error "
                f"{se:.4f})")
    return (f"<b>{esc(label(best))}</b> ({acc[best.name][key]:.4f}) and "
            f"<b>{esc(label(second))}</b> ({acc[second.name][key]:.4f}) read them best, within "
            f"twice the noise of each other (standard error of the difference {se:.4f})")


def _writing_sentences(v, scores, acc, seed: int) -> str:
    parts = []
    if len(v.font_labels):
        parts.append(
            f"The digits 0-9 typed in each of {len(v.font_names)} system fonts at "
            f"{len(set(v.font_strokes.tolist()))} stroke widths ({len(v.font_labels):,} "
            "images), prepared as <code>mnistlab predict</code> prepares a user's image: "
            + _best_reader(scores, acc, "fonts", "font_pred", v.font_labels, seed) + ".")
    if len(v.small_labels):
        parts.append(
            f"scikit-learn's {len(v.small_labels):,} 8x8 digits (other writers, scanned and "
            "reduced otherwise), brought to this size the same way: "
            + _best_reader(scores, acc, "small", "small_pred", v.small_labels, seed) + ".")
    ranked = sorted(scores, key=lambda m: -acc[m.name]["clean"])
    top = ranked[0]
    others = [f"{k} {acc[top.name][key]:.4f}" for k, key in (("typed", "fonts"), ("8x8", "small"))
              if acc[top.name][key] is not None]
    tied = ""
    if len(ranked) > 1:
        second = ranked[1]
        gap, se = _lead(top.clean_pred == v.labels, second.clean_pred == v.labels, seed)
        if gap <= 2 * se:
            tied = (f" ({esc(label(second))}, {acc[second.name]['clean']:.4f}, is within twice "
                    "the noise of it)")
    parts.append(f"The most accurate on the test sample, {esc(label(top))} "
                 f"({acc[top.name]['clean']:.4f}){tied}, scores {', '.join(others)}.")
    return " ".join(parts)


def _font_sample(v: Variants, n: int) -> list[int]:
    """``n`` typed digits: fonts, digits and stroke widths taken in turn."""
    strokes = sorted(set(v.font_strokes.tolist()))
    picked = []
    for k in range(n):
        found = np.flatnonzero((v.font_index == k % len(v.font_names)) & (v.font_labels == k % 10)
                               & (v.font_strokes == strokes[k % len(strokes)]))
        picked += found[:1].tolist()
    return picked


def _gallery(v: Variants):
    shown = min(8, len(v.labels))
    images, titles, labels = [], [], []
    images += list(v.clean[:shown])
    titles += [""] * shown
    labels.append("clean")
    for c, name in enumerate(v.corruptions):
        images += list(v.corrupted[c, :shown])
        titles += [""] * shown
        labels.append(name)
    return image_grid(images, titles, cols=shown, row_labels=labels, tile_inches=0.9)


def _heatmap(v: Variants, models, acc):
    values = np.array([acc[m.name]["per"] for m in models])
    fig = new_figure(1.2 + 0.55 * len(v.corruptions), 1.0 + 0.32 * len(models))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(values, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(v.corruptions)), v.corruptions, rotation=45, ha="right",
                  fontsize=7)
    ax.set_yticks(range(len(models)), [label(m) for m in models], fontsize=7)
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, fraction=0.03)
    return fig
