"""Report part 4 from the deep section's stored results."""

from __future__ import annotations

import numpy as np

from ..sections.deep import Architectures, OverfitResult, TrainResult, in_seed_order
from ..study.results import StudyContext
from .blocks import Block, FigureSink, every, heading, new_figure, nouns, table, text, the
from .figures import confusion_figure, image_grid, legend
from .noise import SPEED_MARGIN, gain_noise


def _curves_figure(runs: list[TrainResult]):
    fig = new_figure(10, 2.6 * len(runs))
    for i, r in enumerate(runs):
        h = r.history
        epochs = np.arange(1, len(h["train_loss"]) + 1)
        ax = fig.add_subplot(len(runs), 2, 2 * i + 1)
        ax.plot(epochs, h["train_loss"], "o-", ms=3, label="training")
        ax.plot(epochs, r.val_loss_criterion, "s-", ms=3, label="validation")
        smoothing = r.spec.get("label_smoothing", 0)
        ax.set_ylabel(f"{r.name}\ncross-entropy"
                      + (f"\n(label smoothing {smoothing:g})" if smoothing else ""))
        legend(ax, fontsize=7)
        ax = fig.add_subplot(len(runs), 2, 2 * i + 2)
        ax.plot(epochs, h["train_acc"], "o-", ms=3, label="training")
        ax.plot(epochs, h["val_acc"], "s-", ms=3, label="validation")
        ax.set_ylabel("accuracy")
        legend(ax, fontsize=7)
        if i == len(runs) - 1:
            fig.axes[-2].set_xlabel("epoch")
            ax.set_xlabel("epoch")
    return fig


def _confusions_figure(runs: list[TrainResult], names: list[str]):
    fig = new_figure(4.4 * len(runs), 4.2)
    for i, r in enumerate(runs):
        ax = fig.add_subplot(1, len(runs), i + 1)
        confusion_figure(r.confusion, names, f"{r.name} (test acc {r.test_acc:.4f})", fig, ax)
    return fig


def _examples_figure(runs: list[TrainResult], names: list[str], errors: bool):
    n = max(max(len(r.error_images if errors else r.example_images) for r in runs), 1)
    images, titles, colors = [], [], []
    for r in runs:
        shown = r.error_images if errors else r.example_images
        pred = r.error_pred if errors else r.example_pred
        true = r.error_true if errors else r.example_true
        for j in range(n):
            if j >= len(shown):
                images.append(None)
                titles.append("")
                colors.append("black")
                continue
            images.append(shown[j])
            conf = f" {r.error_confidence[j]:.2f}" if errors else ""
            titles.append(f"{names[pred[j]]} / {names[true[j]]}{conf}")
            colors.append("tab:green" if pred[j] == true[j] else "tab:red")
    return image_grid(images, titles, cols=n, colors=colors, fontsize=6.5,
                      row_labels=[r.name for r in runs])


def render(results: dict, sink: FigureSink, study: StudyContext) -> list[Block]:
    arch = the(results, Architectures)
    runs = in_seed_order(every(results, TrainResult))
    demos = every(results, OverfitResult)
    names = study.class_names
    blocks: list[Block] = []

    # 4.1 -------------------------------------------------------------------------------
    blocks.append(heading("4.1 Input and output sizes, and the layers of each network"))
    sizes = "; ".join(f"{n}: input {tuple(s)}, output {arch.output_sizes[n]}"
                      for n, s in arch.input_shapes.items())
    blocks.append(text(
        f"Measured on the built networks — {sizes} (None is the batch dimension). An MLP reads "
        "each image as a flat vector of pixels, so its first layer has one weight per pixel "
        "and hidden unit; a CNN reads the 2-D grid with one channel (gray levels), so its "
        "filters slide over neighbouring pixels. The output layer has one unit per class; "
        "the softmax of its outputs gives the class probabilities."))
    for name, layers in arch.layers.items():
        rows = [[r["layer"], str(tuple(r["output_shape"])), r["params"]] for r in layers]
        rows.append(["total", "", arch.params[name]])
        blocks.append(table(["layer (type)", "output shape", "parameters"], rows,
                            f"{name}: {arch.params[name]:,} trainable parameters"))

    # 4.2-4.3 ---------------------------------------------------------------------------
    spec_rows = [[r.name, r.spec["epochs"], r.epochs_run, r.spec["batch_size"],
                  f"{r.spec['validation_fraction']:.0%}", r.spec["optimizer"],
                  f"{r.spec['lr']:g}", r.spec["schedule"], f"{r.n_fit:,} of {r.n_train:,}"]
                 for r in runs]
    blocks += [
        heading("4.2-4.3 Epochs, batch size, validation split, compile and fit parameters"),
        table(["model", "epochs", "epochs run", "batch size", "validation split", "optimizer",
               "learning rate", "schedule", "trained on (images)"], spec_rows),
        text("An <b>epoch</b> is one pass over every training image. The <b>batch size</b> is "
             "the number of images whose average loss gives one gradient step: with "
             f"{runs[0].spec['batch_size'] if runs else 128} images per batch, an epoch of "
             f"{runs[0].n_fit if runs else 0:,} "
             "images makes that many divided by the batch size weight updates. The "
             "<b>validation split</b> is held out of the training images and never trained on: "
             "its loss, measured after each epoch, shows when the network starts to fit the "
             "training images at the expense of new ones, and it is what early stopping and "
             "any choice of epochs or architecture read — never the test set. What matters most "
             "in compile/fit: the loss (cross-entropy for classification), the optimiser and its "
             "learning rate (too high diverges, too low crawls), the number of epochs and the "
             "batch size (together they set the number and noise of the updates)."),
    ]

    # curves, test metrics, examples ------------------------------------------------------
    if runs:
        blocks += [
            heading("Learning curves"),
            sink.block("deep-curves", _curves_figure(runs), _curves_caption(runs)),
            heading("4.5 Test results"),
            table(["model", "test loss", "test accuracy", "errors"],
                  [[r.name, f"{r.test_loss:.4f}", f"{r.test_acc:.4f}",
                    int(r.confusion.sum() - np.trace(r.confusion))] for r in runs]),
            sink.block("deep-confusion", _confusions_figure(runs, names),
                       "Confusion matrices on the test set, each row normalised"),
            sink.block("deep-first10", _examples_figure(runs, names, errors=False),
                       "The first test images: predicted / true class (green right, red wrong)"),
        ]
        if any(len(r.error_images) for r in runs):
            blocks.append(sink.block(
                "deep-errors", _examples_figure(runs, names, errors=True),
                "The most confident errors of each model: predicted / true class and the "
                "probability it gave its wrong answer"))
        else:
            blocks.append(text("No network got any test image wrong."))

    # 4.6 ------------------------------------------------------------------------------
    blocks.append(heading("4.6 Is there overfitting?"))
    blocks.append(text(overfitting_answer(runs, arch)))
    if demos:
        blocks.append(table(["model", "training images", "epochs to 100 % train accuracy",
                             "train accuracy", "test accuracy", "test loss"],
                            [[d.name, d.n_images, d.epochs, f"{d.train_acc:.3f}",
                              f"{d.test_acc:.4f}", f"{d.test_loss:.3f}"] for d in demos],
                            "Demonstration: training on a handful of images until they are "
                            "all right"))
        blocks.append(text(_demo_answer(demos, arch, runs, study.mnist_like)))

    # 4.7 and cost -----------------------------------------------------------------------
    if runs:
        blocks += [heading("4.7 Architectures compared, and what each costs"),
                   table(["model", "parameters", "epochs", "training (s)", "s / epoch",
                          "inference (s / 10k images)", "test accuracy",
                          "peak RSS of its process (MiB)", "of which training (MiB)",
                          "threads"],
                         [[r.name, r.n_params, r.epochs_run, f"{r.train_s:.1f}",
                           f"{r.train_s / max(r.epochs_run, 1):.2f}",
                           f"{r.infer_s_per_10k:.3f}", f"{r.test_acc:.4f}",
                           f"{r.peak_mb:.0f}", f"{r.peak_mb - r.baseline_mb:.0f}", r.threads]
                          for r in runs],
                         ("Each model trained in its own process; peak RSS is that process's "
                          "(interpreter, libraries and data included), the second column what "
                          "training added" if all(r.isolated for r in runs) else
                          "Models trained in the study's own process (isolate = false, the "
                          "quick profile's setting): peak RSS includes the earlier sections, "
                          "only the second column is the model's")),
                   text(_cost_answer(runs, arch))]
    return blocks


def _curves_caption(runs: list[TrainResult]) -> str:
    smoothed = [f"{r.name} ({r.spec['label_smoothing']:g})" for r in runs
                if r.spec.get("label_smoothing")]
    shifted = [f"{r.name} (up to {r.spec['augment_shift']} px)" for r in runs
               if r.spec.get("augment_shift")]
    augmented = [f"{r.name} ({', '.join(r.spec['augment'])})" for r in runs
                 if r.spec.get("augment")]
    return ("Loss and accuracy per epoch: training (measured during the epoch, dropout on) vs "
            "validation" + (f". Networks trained with label smoothing ({', '.join(smoothed)}): "
                            "both loss curves include it, so they compare like with like (the "
                            "test loss in the table is plain cross-entropy, as in section 4.5)"
                            if smoothed else "")
            + (f". Networks trained on randomly shifted images ({', '.join(shifted)}): their "
               "training curves are measured on the shifted images, the validation curves on "
               "the images as they are" if shifted else "")
            + (f". Networks trained on augmented images ({'; '.join(augmented)}, see section "
               "5): their training curves are measured on the augmented images"
               if augmented else ""))


def _has(arch: Architectures, name: str, layer_type: str) -> bool:
    return any(layer_type in row["layer"] for row in arch.layers.get(name, []))


def overfit_verdict(val_loss: list[float]) -> tuple[int, float, float, bool]:
    """(epoch of the lowest validation loss, the largest rise from it at any later epoch, the
    loss's own epoch-to-epoch noise, overfitting?). Overfitting is a rise beyond twice that
    noise (the median absolute change between epochs over the second half of training), not
    any rise; and the whole curve after the lowest point counts, not its last epoch alone (a
    loss that rose, then fell back once, still rose)."""
    v = np.asarray(val_loss, dtype=float)
    if not np.isfinite(v).any():
        return 0, float("nan"), float("nan"), False
    best = int(np.nanargmin(v))
    rise = float(np.nanmax(v[best:]) - v[best])
    changes = np.abs(np.diff(v))
    noise = float(np.median(changes[len(changes) // 2:])) if len(changes) else 0.0
    return best + 1, rise, noise, best + 1 < len(v) and rise > 2 * noise


def _overfit_line(r: TrainResult) -> tuple[str, bool]:
    turn, rise, noise, overfits = overfit_verdict(r.history["val_loss"])
    n = len(r.history["val_loss"])
    if turn == 0:
        return f"{r.name}: no validation split, nothing to read", False
    peak_acc = int(np.argmax(r.history["val_acc"])) + 1
    gap = r.history["train_acc"][-1] - r.history["val_acc"][-1]
    if turn == n:
        line = f"{r.name}: validation loss still falling at the last epoch ({n})"
    else:
        highest = turn + int(np.nanargmax(np.asarray(r.history["val_loss"][turn - 1:])))
        where = "at the end" if highest == n else f"at epoch {highest}"
        if overfits:
            line = (f"{r.name}: validation loss lowest at epoch {turn} of {n}, then up to "
                    f"{rise:.3f} higher ({where}), beyond its epoch-to-epoch noise "
                    f"({noise:.3f}): it has started to overfit")
        else:
            line = (f"{r.name}: validation loss lowest at epoch {turn} of {n}, then at most "
                    f"{rise:.3f} higher ({where}), within its epoch-to-epoch noise "
                    f"({noise:.3f}): no sign of overfitting yet")
    return (line + f"; validation accuracy peaks at epoch {peak_acc}, final train-validation "
            f"accuracy gap {gap:+.4f}"), overfits


def overfitting_answer(runs: list[TrainResult], arch: Architectures) -> str:
    lines = [_overfit_line(r) for r in runs]
    text_ = ("Read from the curves — " + "; ".join(line for line, _ in lines) + ". A positive "
             "gap that grows with the epochs while the validation loss rises beyond its noise "
             "is overfitting. ")
    overfitting = [r.name for r, (_, o) in zip(runs, lines) if o]
    dropout = [r.name for r in runs if _has(arch, r.name, "Dropout")]
    if overfitting:
        text_ += f"Here {', '.join(overfitting)} overfit{'s' if len(overfitting) == 1 else ''}. "
    elif runs:
        epochs = sorted({r.epochs_run for r in runs})
        uses = (f"{', '.join(dropout)} with dropout, the others without" if dropout
                else "none uses dropout")
        text_ += ("None of them overfits within "
                  + (f"{epochs[0]} epochs ({uses}). " if len(epochs) == 1 else
                     f"the epochs each was trained for ({epochs[0]} to {epochs[-1]}; {uses}). "))
    return text_ + ("Remedies: early stopping on the validation loss, more dropout or weight "
                    "decay, data augmentation, more data.")


def _demo_answer(demos: list[OverfitResult], arch: Architectures, runs: list[TrainResult],
                 seed_comparable: bool) -> str:
    full = {r.name: r.test_acc for r in runs}
    parts = []
    for d in demos:
        part = (f"{d.name} ({arch.params.get(d.name, 0):,} parameters) "
                + ("memorises them all" if d.train_acc >= 1.0 else
                   f"reaches {d.train_acc:.0%} training accuracy")
                + f" after {d.epochs} {nouns(d.epochs, 'epoch')} and scores {d.test_acc:.3f} on "
                  "the test set")
        if d.name in full:
            part += f" (against {full[d.name]:.3f} when trained on all the images)"
        parts.append(part)
    text_ = f"With {demos[0].n_images} training images, " + "; ".join(parts) + ". "
    text_ += ("With far more parameters than images, a network can fit every training image "
              "and still have learned little that carries over to new ones.")
    if seed_comparable:
        text_ += " The seed measured 0.26 for its MLP and 0.40 for its CNN on MNIST."
    return text_


def _mlp_shape(arch: Architectures, name: str) -> str:
    widths = [row["output_shape"][-1] for row in arch.layers.get(name, [])
              if "Linear" in row["layer"]][:-1]
    if not widths:
        return name
    shape = (f"{len(widths)} hidden layer{'s' if len(widths) > 1 else ''} of "
             + " and ".join(str(w) for w in dict.fromkeys(widths)) + " units")
    return shape + (" with dropout" if _has(arch, name, "Dropout") else "")


def _cost_answer(runs: list[TrainResult], arch: Architectures) -> str:
    by = {r.name: r for r in runs}
    parts = []
    if "mlp-1" in by and "mlp-2" in by:
        a, b = by["mlp-1"], by["mlp-2"]
        parts.append(f"Going from {_mlp_shape(arch, 'mlp-1')} (mlp-1) to "
                     f"{_mlp_shape(arch, 'mlp-2')} (mlp-2) multiplies the parameters by "
                     f"{b.n_params / a.n_params:.1f} and moves test accuracy from "
                     f"{a.test_acc:.4f} to {b.test_acc:.4f}.")
    mlp = by.get("mlp-2") or by.get("mlp-1")
    if "cnn-seed" in by and mlp:
        parts.append(cnn_vs_mlp(by["cnn-seed"], mlp))
    if "cnn-fast" in by:
        f = by["cnn-fast"]
        tricks = [t for t, present in (("BatchNorm", _has(arch, "cnn-fast", "BatchNorm")),
                                       (f"{f.spec.get('schedule')} schedule",
                                        f.spec.get("schedule") not in (None, "constant")),
                                       (f"label smoothing {f.spec.get('label_smoothing', 0):g}",
                                        bool(f.spec.get("label_smoothing"))),
                                       (f"random shifts of up to {f.spec.get('augment_shift')} px",
                                        bool(f.spec.get("augment_shift"))),
                                       (f"augmentations: {', '.join(f.spec.get('augment') or [])}",
                                        bool(f.spec.get("augment"))))
                  if present]
        parts.append(f"cnn-fast ({', '.join(tricks + [f'{f.n_params:,} parameters'])}) "
                     f"reaches {f.test_acc:.4f} in {f.train_s:.1f} s of training.")
    return " ".join(parts)


def _seconds(s: float) -> str:
    return f"{s:.1f}" if s >= 1 else f"{s:.2g}"


def cnn_vs_mlp(c: TrainResult, mlp: TrainResult) -> str:
    """The seed's CNN against an MLP: parameters, time per epoch, accuracy, each compared,
    the accuracies beyond twice the noise of the test set's size, the times beyond
    SPEED_MARGIN."""
    c_s, m_s = c.train_s / max(c.epochs_run, 1), mlp.train_s / max(mlp.epochs_run, 1)
    n_test = int(np.sum(c.confusion))
    noise = gain_noise([c.test_acc, mlp.test_acc], n_test) if n_test else 0.0
    text_ = (f"The seed's CNN reaches {c.test_acc:.4f} against {mlp.test_acc:.4f} for "
             f"{mlp.name}, with {c.n_params:,} parameters against {mlp.n_params:,} and "
             f"{_seconds(c_s)} s per epoch against {_seconds(m_s)} s. ")
    faster = ("cnn" if c_s * SPEED_MARGIN < m_s else "mlp" if m_s * SPEED_MARGIN < c_s
              else "neither")
    better = ("cnn" if c.test_acc > mlp.test_acc + noise else
              "mlp" if mlp.test_acc > c.test_acc + noise else "neither")
    if c.n_params < mlp.n_params and faster == "mlp":
        text_ += ("A convolution reuses each weight at every position of the image: fewer "
                  "parameters, more computation. ")
    elif c.n_params >= mlp.n_params:
        text_ += ("The CNN has the more parameters here: its convolution shares weights, but "
                  "the dense layer after it reads every position of every feature map. ")
    speed = {"cnn": "the CNN is faster per epoch", "mlp": "the MLP is faster per epoch",
             "neither": f"the two take about as long per epoch (within {SPEED_MARGIN:g}x)"}
    accuracy = {"cnn": "the CNN more accurate", "mlp": "the MLP more accurate",
                "neither": f"the two as accurate within twice the noise of {n_test:,} test "
                           f"images ({noise:.4f})"}
    if faster == "mlp" and better == "cnn":
        return text_ + ("The seed concluded the MLP was \"more efficient\"; per second of "
                        "training it is, per error avoided it is not.")
    said = (f"Here the {faster.upper()} is both faster per epoch and more accurate"
            if faster == better != "neither" else f"Here {speed[faster]} and {accuracy[better]}")
    if faster == better == "neither":
        return text_ + f"{said}: these numbers do not tell which is \"more efficient\"."
    if {faster, better} == {"cnn", "mlp"}:
        return text_ + f"{said}: neither is simply \"more efficient\"."
    holds = "holds" if "mlp" in (faster, better) else "does not hold"
    return text_ + (f"{said}: the seed's verdict that its MLP is \"more efficient\" than its "
                    f"CNN {holds} on this data.")
