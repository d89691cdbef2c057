"""cnn-fast trained with and without augmentations, scored beyond the test set: the
robustness section's corruptions (a stratified sample of the test images), the digits typed
in the system's fonts and scikit-learn's 8x8 digits (digit data only), and the clean test set.

    .venv/bin/python bench/robustness.py [--data mnist-proxy|fashion-mnist]
                                         [--train none@256,affine+stroke+blur+contrast+noise]
                                         [--seeds 0,1,2] [--images 2000] [--threads N]
                                         [--epochs N]

Each entry of --train is one training: augmentation names joined by + ("none" for none),
then optionally @ and a batch size, then optionally :epochs=N and :channels=A-B-C (cnn-fast's
blocks); the study's full-profile settings of cnn-fast for the data otherwise. The default
races the training before the augmentations (none@256, 5 epochs, three blocks), the first
augmented one (batches of 64, same network), the second (a fourth block, batches of 32, 7
epochs) and today's. Each trains once per seed; the table gives the mean over seeds and, for
the 8x8 digits (the noisiest), the range. Times are wall times, same data, same threads, seed
by seed each training in turn; a ratio is the median over seeds of the time over the first
entry's. Goals (issue 35, MNIST proxy: the 5,000 bundled digits to train, the official 10,000
test digits): mean accuracy over the corruptions at least 0.95, on the 8x8 digits at least
0.80, clean at least 0.99, training at most 1.5x the time of the training before the
augmentations. Run nothing else beside it.
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
    before = ":epochs=5:channels=32-64-128"  # cnn-fast before issue 35
    every = "+".join(AUGMENTATIONS)
    parser.add_argument("--train", default=f"none@256{before},{every}@64{before},"
                        f"{every}@32:epochs=7:channels=24-48-96-128,{every}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its own)")
    parser.add_argument("--epochs", type=int, default=0,
                        help="cnn-fast's epochs (0: the study's full profile)")
    args = parser.parse_args()
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    args.trainings = []
    for entry in args.train.split(","):
        entry, *settings = entry.split(":")
        names, _, batch = entry.partition("@")
        chosen = [] if names == "none" else names.split("+")
        unknown = sorted(set(chosen) - set(AUGMENTATIONS))
        if unknown:
            parser.error(f"--train: unknown {', '.join(unknown)}; known: "
                         f"{', '.join(AUGMENTATIONS)}")
        if batch and not batch.isdigit():
            parser.error(f"--train: {entry!r}: the batch size after @ must be a number")
        update = {"batch_size": int(batch)} if batch else {}
        for setting in settings:
            key, _, value = setting.partition("=")
            numbers = value.split("-")
            if key not in ("epochs", "channels") or not all(n.isdigit() for n in numbers):
                parser.error(f"--train: {setting!r}: use epochs=N or channels=A-B-C")
            update.update({"epochs": int(value)} if key == "epochs" else
                          {"arch_params": {"channels": [int(n) for n in numbers]}})
        args.trainings.append((":".join([entry, *settings]), chosen, update))
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
    spec = build_config("full").deep.models["cnn-fast"].for_data(data, "cnn-fast")
    if args.epochs:
        spec = spec.model_copy(update={"epochs": args.epochs})
    variants = call_step(robustness.variants, data, robustness.Params(images=args.images), 0,
                         fonts=robustness.system_fonts() if digits else (),
                         small_digits_wanted=True)
    print(f"data: {args.data}, {len(x):,} training images, {len(xt):,} test images; "
          f"corruptions on {len(variants.labels):,} of them (stratified); torch threads "
          f"{torch.get_num_threads()}; cnn-fast: {spec.epochs} epochs, batch {spec.batch_size}, "
          f"channels {spec.arch_params['channels']}, augment_shift {spec.augment_shift}")
    flat = variants.corrupted.reshape(-1, *variants.corrupted.shape[2:])

    def accuracy(model, images, labels) -> float:
        return float((model.predict(images) == labels).mean()) if len(labels) else np.nan

    # Seed by seed, every training in turn: a slower spell of the machine falls on all of
    # them, not on one (the time ratio is the median of each seed's own ratio).
    scores = {label: {"seconds": [], "clean": [], "per": [], "typed": [], "small": []}
              for label, _, _ in args.trainings}
    for seed in args.seeds:
        for label, chosen, update in args.trainings:
            params = {**spec.estimator_params(), "augment": chosen, **update, "seed": seed}
            started = time.perf_counter()
            model = TorchClassifier("cnn-fast", **params).fit(x, y)
            score = scores[label]
            score["seconds"].append(time.perf_counter() - started)
            score["clean"].append(accuracy(model, xt, yt))
            score["per"].append((model.predict(flat).reshape(variants.corrupted.shape[:2])
                                 == variants.labels).mean(1))
            score["typed"].append(accuracy(model, variants.font_images, variants.font_labels))
            score["small"].append(accuracy(model, variants.small_images, variants.small_labels))
        print(f"  seed {seed}: " + ", ".join(
            f"{label} {scores[label]['seconds'][-1]:.1f} s, clean "
            f"{scores[label]['clean'][-1]:.4f}" for label, _, _ in args.trainings), flush=True)
    first = np.array(scores[args.trainings[0][0]]["seconds"])
    rows = []
    for label, _, update in args.trainings:
        score = scores[label]
        rows.append((label, update.get("batch_size", spec.batch_size),
                     np.mean(score["seconds"]),
                     float(np.median(np.array(score["seconds"]) / first)),
                     np.mean(score["clean"]), np.mean(score["per"], axis=0),
                     np.mean(score["typed"]), score["small"]))
    print()
    print(f"Means over seeds {', '.join(map(str, args.seeds))}; 8x8 digits: mean (lowest to "
          "highest).")
    print("| training | batch | train s (ratio) | clean test | corrupted mean | typed digits | "
          "8x8 digits | " + " | ".join(variants.corruptions) + " |")
    print("|---" * (7 + len(variants.corruptions)) + "|")
    for label, batch, seconds, ratio, clean, per, typed, small in rows:
        print(f"| {label} | {batch} | {seconds:.1f} ({ratio:.2f}x) | {clean:.4f} | "
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
