"""Report part 4 from the deep section's stored results."""

from __future__ import annotations

import numpy as np

from ..sections.deep import Architectures, OverfitResult, TrainResult
from .blocks import Block, FigureSink, heading, new_figure, table, text
from .context import StudyContext
from .figures import confusion_figure


def _curves_figure(runs: list[TrainResult]):
    fig = new_figure(10, 2.6 * len(runs))
    for i, r in enumerate(runs):
        h = r.history
        epochs = np.arange(1, len(h["train_loss"]) + 1)
        ax = fig.add_subplot(len(runs), 2, 2 * i + 1)
        ax.plot(epochs, h["train_loss"], "o-", ms=3, label="training")
        ax.plot(epochs, h["val_loss"], "s-", ms=3, label="validation")
        ax.set_ylabel(f"{r.name}\ncross-entropy")
        ax.legend(fontsize=7)
        ax = fig.add_subplot(len(runs), 2, 2 * i + 2)
        ax.plot(epochs, h["train_acc"], "o-", ms=3, label="training")
        ax.plot(epochs, h["val_acc"], "s-", ms=3, label="validation")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7)
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
    n = max(len(r.error_images if errors else r.example_images) for r in runs)
    fig = new_figure(1.2 * max(n, 1), 1.55 * len(runs))
    for i, r in enumerate(runs):
        images = r.error_images if errors else r.example_images
        pred = r.error_pred if errors else r.example_pred
        true = r.error_true if errors else r.example_true
        for j in range(len(images)):
            ax = fig.add_subplot(len(runs), n, i * n + j + 1)
            ax.imshow(images[j], cmap="gray", vmin=0, vmax=255)
            conf = f" {r.error_confidence[j]:.2f}" if errors else ""
            ax.set_title(f"{names[pred[j]]} / {names[true[j]]}{conf}", fontsize=6.5,
                         color="tab:green" if pred[j] == true[j] else "tab:red")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(r.name, fontsize=8)
    return fig


def _overfit_turn(r: TrainResult) -> tuple[int, float]:
    val = np.asarray(r.history["val_loss"], dtype=float)
    if not np.isfinite(val).any():
        return 0, float("nan")
    best = int(np.nanargmin(val)) + 1
    gap = r.history["train_acc"][-1] - r.history["val_acc"][-1]
    return best, gap


def render(results: dict, sink: FigureSink, study: StudyContext) -> list[Block]:
    arch: Architectures = results["architectures"]
    runs = [v for v in results.values() if isinstance(v, TrainResult)]
    demos = [v for v in results.values() if isinstance(v, OverfitResult)]
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
                  f"{r.spec['lr']:g}", r.spec["schedule"], r.n_train] for r in runs]
    blocks += [
        heading("4.2-4.3 Epochs, batch size, validation split, compile and fit parameters"),
        table(["model", "epochs", "epochs run", "batch size", "validation split", "optimizer",
               "learning rate", "schedule", "training images"], spec_rows),
        text("An <b>epoch</b> is one pass over every training image. The <b>batch size</b> is "
             "the number of images whose average loss gives one gradient step: with "
             f"{runs[0].spec['batch_size'] if runs else 128} images per batch, an epoch of "
             f"{int(runs[0].n_train * (1 - runs[0].spec['validation_fraction'])) if runs else 0:,} "
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
            sink.block("deep-curves", _curves_figure(runs),
                       "Loss and accuracy per epoch, training (measured during the epoch, "
                       "dropout on) vs validation"),
            heading("4.5 Test results"),
            table(["model", "test loss", "test accuracy", "errors"],
                  [[r.name, f"{r.test_loss:.4f}", f"{r.test_acc:.4f}",
                    int(r.confusion.sum() - np.trace(r.confusion))] for r in runs]),
            sink.block("deep-confusion", _confusions_figure(runs, names),
                       "Confusion matrices on the test set, each row normalised"),
            sink.block("deep-first10", _examples_figure(runs, names, errors=False),
                       "The first test images: predicted / true class (green right, red wrong)"),
            sink.block("deep-errors", _examples_figure(runs, names, errors=True),
                       "The most confident errors of each model: predicted / true class and "
                       "the probability it gave its wrong answer"),
        ]

    # 4.6 ------------------------------------------------------------------------------
    blocks.append(heading("4.6 Is there overfitting?"))
    lines = []
    for r in runs:
        turn, gap = _overfit_turn(r)
        n_epochs = len(r.history["val_loss"])
        lines.append(f"{r.name}: validation loss lowest at epoch {turn} of {n_epochs}"
                     + (" (it rises after: the network has started to overfit)"
                        if 0 < turn < n_epochs else " (still falling at the end)")
                     + f", final train-validation accuracy gap {gap:+.4f}")
    blocks.append(text("Read from the curves — " + "; ".join(lines) + ". A positive gap that "
                       "grows with the epochs while the validation loss rises is overfitting; "
                       "dropout and the small number of epochs keep it small here. Remedies: "
                       "early stopping on the validation loss, more dropout or weight decay, "
                       "data augmentation, more data."))
    if demos:
        blocks.append(table(["model", "training images", "epochs to 100 % train accuracy",
                             "train accuracy", "test accuracy", "test loss"],
                            [[d.name, d.n_images, d.epochs, f"{d.train_acc:.3f}",
                              f"{d.test_acc:.4f}", f"{d.test_loss:.3f}"] for d in demos],
                            "Demonstration: training on a handful of images until they are "
                            "all right"))
        blocks.append(text("With " + f"{demos[0].n_images}" + " training images a network "
                           "with hundreds of thousands of parameters memorises them all (100 % "
                           "training accuracy) and generalises poorly: "
                           + "; ".join(f"{d.name} scores {d.test_acc:.3f} on the test set "
                                       f"after {d.epochs} epochs" for d in demos)
                           + " (the seed measured 0.26 for its MLP and 0.40 for its CNN)."))

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
                   text(_cost_answer(runs))]
    return blocks


def _cost_answer(runs: list[TrainResult]) -> str:
    by = {r.name: r for r in runs}
    parts = []
    if "mlp-1" in by and "mlp-2" in by:
        a, b = by["mlp-1"], by["mlp-2"]
        parts.append(f"Going from one hidden layer of 128 units to two of 512 with dropout "
                     f"multiplies the parameters by {b.n_params / a.n_params:.1f} and moves "
                     f"test accuracy from {a.test_acc:.4f} to {b.test_acc:.4f}.")
    if "cnn-seed" in by:
        c = by["cnn-seed"]
        mlp = by.get("mlp-2") or by.get("mlp-1")
        if mlp:
            parts.append(f"The seed's CNN reaches {c.test_acc:.4f} against {mlp.test_acc:.4f} "
                         f"for {mlp.name}, at {c.train_s / max(c.epochs_run, 1):.1f} s per "
                         f"epoch against {mlp.train_s / max(mlp.epochs_run, 1):.1f} s: a "
                         "convolution reuses each weight at every position, so it has few "
                         "parameters for its compute, while an MLP has many parameters for "
                         "little compute. The seed concluded the MLP was \"more efficient\"; "
                         "per second of training it is, per error avoided it is not.")
    if "cnn-fast" in by:
        f = by["cnn-fast"]
        parts.append(f"cnn-fast (BatchNorm, one-cycle schedule, {f.n_params:,} parameters) "
                     f"reaches {f.test_acc:.4f} in {f.train_s:.1f} s of training.")
    return " ".join(parts)
