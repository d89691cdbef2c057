"""cnn-fast trained with and without augmentations, scored beyond the test set: the
robustness section's corruptions (a stratified sample of the test images), the digits typed
in the system's fonts and scikit-learn's 8x8 digits (digit data only), and the clean test set.

    .venv/bin/python bench/robustness.py [--data mnist-proxy|fashion-mnist]
                                         [--train none@256,affine+stroke+blur+contrast+noise]
                                         [--seeds 0,1,2] [--images 2000] [--threads N]
                                         [--epochs N]

Each entry of --train is one training: augmentation names joined by + ("none" for none),
then optionally @ and a batch size; the study's full-profile settings of cnn-fast for the data
otherwise. Each trains once per seed; the table gives the mean over seeds and, for the 8x8
digits (the noisiest), the range. Times are wall times, same data, same threads, one after
the other; ratios are to the first entry. Goals (issue 35, MNIST proxy: the 5,000 bundled
digits to train, the official 10,000 test digits): mean accuracy over the corruptions at
least 0.95, on the 8x8 digits at least 0.80, clean at least 0.99, training at most 1.5x the
time of the training before the augmentations (no augmentation, batches of 256). Run nothing
else beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deep import race_data  # noqa: E402
from results import recorded  # noqa: E402

GOALS = {"corrupted mean": 0.95, "8x8 digits": 0.80, "clean": 0.99, "time ratio": 1.5}


def _arguments() -> argparse.Namespace:
    from mnistlab.models.augment import AUGMENTATIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["mnist-proxy", "fashion-mnist"],
                        default="mnist-proxy")
    parser.add_argument("--train", default="none@256,none," + "+".join(AUGMENTATIONS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its own)")
    parser.add_argument("--epochs", type=int, default=0,
                        help="cnn-fast's epochs (0: the study's full profile)")
    args = parser.parse_args()
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    args.trainings = []
    for entry in args.train.split(","):
        names, _, batch = entry.partition("@")
        chosen = [] if names == "none" else names.split("+")
        unknown = sorted(set(chosen) - set(AUGMENTATIONS))
        if unknown:
            parser.error(f"--train: unknown {', '.join(unknown)}; known: "
                         f"{', '.join(AUGMENTATIONS)}")
        if batch and not batch.isdigit():
            parser.error(f"--train: {entry!r}: the batch size after @ must be a number")
        args.trainings.append((entry, chosen, int(batch) if batch else None))
    return args


def main(args: argparse.Namespace) -> None:
    from mnistlab import build_config
    from mnistlab.data.datasets import Dataset
    from mnistlab.engine.step import call_step
    from mnistlab.models.deep import TorchClassifier
    from mnistlab.sections import robustness

    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, xt, yt = race_data(args.data)
    digits = args.data == "mnist-proxy"
    names = [str(i) for i in range(10)]
    data = Dataset(args.data, x, y, xt, yt, names, digits=digits)
    spec = build_config("full").deep.models["cnn-fast"].for_data(data)
    if args.epochs:
        spec = spec.model_copy(update={"epochs": args.epochs})
    variants = call_step(robustness.variants, data, robustness.Params(images=args.images), 0,
                         fonts=robustness.system_fonts() if digits else (),
                         small_digits_wanted=True)
    print(f"data: {args.data}, {len(x):,} training images, {len(xt):,} test images; "
          f"corruptions on {len(variants.labels):,} of them (stratified); torch threads "
          f"{torch.get_num_threads()}; cnn-fast: {spec.epochs} epochs, batch {spec.batch_size}, "
          f"augment_shift {spec.augment_shift}")
    flat = variants.corrupted.reshape(-1, *variants.corrupted.shape[2:])

    def accuracy(model, images, labels) -> float:
        return float((model.predict(images) == labels).mean()) if len(labels) else np.nan

    rows = []
    for label, chosen, batch in args.trainings:
        params = {**spec.estimator_params(), "augment": chosen}
        if batch:
            params["batch_size"] = batch
        seconds, clean, per, typed, small = [], [], [], [], []
        for seed in args.seeds:
            started = time.perf_counter()
            model = TorchClassifier("cnn-fast", **{**params, "seed": seed}).fit(x, y)
            seconds.append(time.perf_counter() - started)
            clean.append(accuracy(model, xt, yt))
            per.append((model.predict(flat).reshape(variants.corrupted.shape[:2])
                        == variants.labels).mean(1))
            typed.append(accuracy(model, variants.font_images, variants.font_labels))
            small.append(accuracy(model, variants.small_images, variants.small_labels))
        rows.append((label, params["batch_size"], np.mean(seconds), np.mean(clean),
                     np.mean(per, axis=0), np.mean(typed), small))
        print(f"  trained {label} (batch {params['batch_size']}), seeds "
              f"{', '.join(map(str, args.seeds))}: {np.mean(seconds):.1f} s each", flush=True)
    base = rows[0][2]
    print()
    print(f"Means over seeds {', '.join(map(str, args.seeds))}; 8x8 digits: mean (lowest to "
          "highest).")
    print("| training | batch | train s (ratio) | clean test | corrupted mean | typed digits | "
          "8x8 digits | " + " | ".join(variants.corruptions) + " |")
    print("|---" * (7 + len(variants.corruptions)) + "|")
    for label, batch, seconds, clean, per, typed, small in rows:
        print(f"| {label} | {batch} | {seconds:.1f} ({seconds / base:.2f}x) | {clean:.4f} | "
              f"{per.mean():.4f} | {typed:.4f} | {np.mean(small):.4f}"
              + (f" ({np.min(small):.3f}-{np.max(small):.3f})" if digits else "") + " | "
              + " | ".join(f"{p:.3f}" for p in per) + " |")
    print()
    print("Goals (MNIST proxy): " + ", ".join(f"{k} {'>=' if k != 'time ratio' else '<='} {v}"
                                              for k, v in GOALS.items()))


if __name__ == "__main__":
    arguments = _arguments()
    # one part of RESULTS.md per dataset (and number of epochs, when it is not the study's)
    with recorded("bench/robustness.py", arguments.data + (f", {arguments.epochs} epochs"
                                                           if arguments.epochs else "")):
        main(arguments)
