"""Benchmark of the deep-learning section: time-to-accuracy, achieved FLOP/s, section cost.

    .venv/bin/python bench/deep.py [--skip-section] [--threads N]

Prints, in one run:
  - the machine's measured matmul FLOP/s (fp32 and bf16);
  - cnn-fast trained with the section's settings on full Fashion-MNIST: training time, test
    accuracy, and its achieved FLOP/s as a fraction of the fp32 matmul rate;
  - the seed's CNN trained the usual way (a DataLoader over the dataset, 10 epochs, batch 128,
    Adam), test accuracy after each epoch, and when (if ever) it reaches cnn-fast's accuracy;
  - the MNIST proxy: cnn-fast trained on the 5,000 bundled digits, tested on the official
    10,000 test digits of ../shared/data/mnist-test-10k (skipped when absent);
  - the whole section's `full` profile on Fashion-MNIST: wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnistlab import build_config, load_dataset
from mnistlab.models.deep import TorchClassifier, build_module

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-test-10k"


def matmul_flops(dtype: torch.dtype, n: int = 2048, repeat: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - started)


def training_flops_per_image(module: nn.Module, shape: tuple[int, int]) -> float:
    """Multiply-adds of one forward pass (convolutions and linear layers), times 2 FLOPs,
    times 3 for forward + backward (gradients w.r.t. inputs and weights)."""
    macs = []

    def conv_hook(mod, _inp, out):
        macs.append(out.numel() * mod.in_channels // mod.groups * np.prod(mod.kernel_size))

    def linear_hook(mod, _inp, out):
        macs.append(out.numel() * mod.in_features)

    hooks = [m.register_forward_hook(conv_hook) for m in module.modules()
             if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in module.modules()
              if isinstance(m, nn.Linear)]
    module.eval()
    with torch.no_grad():
        module(torch.zeros(1, 1, *shape))
    for h in hooks:
        h.remove()
    return 3 * 2 * float(sum(macs))


def seed_cnn_the_usual_way(data, epochs: int = 10) -> list[tuple[float, float]]:
    """The seed's CNN with a DataLoader, as a tutorial trains it: (elapsed s, test acc)."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    x = torch.tensor(data.x_train, dtype=torch.float32).unsqueeze(1) / 255
    xt = torch.tensor(data.x_test, dtype=torch.float32).unsqueeze(1) / 255
    loader = DataLoader(TensorDataset(x, torch.tensor(data.y_train)), batch_size=128,
                        shuffle=True)
    model = build_module("cnn-seed", data.image_shape, data.n_classes)
    opt = torch.optim.Adam(model.parameters())
    out, elapsed = [], 0.0
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        elapsed += time.perf_counter() - started
        model.eval()
        with torch.no_grad():
            acc = float((model(xt).argmax(1).numpy() == data.y_test).mean())
        out.append((elapsed, acc))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-section", action="store_true")
    parser.add_argument("--skip-seed", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads: {torch.get_num_threads()}")
    fp32, bf16 = matmul_flops(torch.float32), matmul_flops(torch.bfloat16)
    print(f"matmul: fp32 {fp32 / 1e9:.0f} GFLOP/s, bf16 {bf16 / 1e9:.0f} GFLOP/s")

    fashion = load_dataset("fashion-mnist")
    spec = build_config("full").deep.models["cnn-fast"].for_data(fashion)
    params = {**spec.estimator_params(), "seed": 0}
    clf = TorchClassifier("cnn-fast", **params).fit(fashion.x_train, fashion.y_train)
    acc = clf.score(fashion.x_test, fashion.y_test)
    n_fit = int(len(fashion.y_train) * (1 - spec.validation_fraction))
    flops = training_flops_per_image(build_module("cnn-fast", (28, 28), 10, spec.arch_params),
                                     (28, 28)) * n_fit * len(clf.history_["train_loss"])
    rate = flops / clf.train_seconds_
    print(f"cnn-fast on Fashion-MNIST: {clf.n_params_:,} parameters, "
          f"{len(clf.history_['train_loss'])} epochs, training {clf.train_seconds_:.1f} s "
          f"(validation included), test accuracy {acc:.4f} (target >= 0.935, no slower than before)")
    print(f"  achieved {rate / 1e9:.1f} GFLOP/s = {rate / fp32:.1%} of the fp32 matmul rate "
          f"({rate / bf16:.1%} of bf16, target >= 60 %); model FLOPs only, data movement not "
          "counted")

    if not args.skip_seed:
        curve = seed_cnn_the_usual_way(fashion)
        for epoch, (elapsed, seed_acc) in enumerate(curve, 1):
            print(f"  seed CNN, DataLoader: epoch {epoch:2d} at {elapsed:6.1f} s, "
                  f"test {seed_acc:.4f}")
        # The same network, epochs and batch size as the deep section trains it (tensors in
        # memory, bf16 autocast where the CPU has it, channels_last, its dropout), on 90 % of
        # the images (10 % follow the validation loss, evaluated after each epoch, counted in).
        seed_spec = build_config("full").deep.models["cnn-seed"].for_data(fashion)
        ours = TorchClassifier("cnn-seed", **{**seed_spec.estimator_params(), "seed": 0}).fit(
            fashion.x_train, fashion.y_train)
        ours_acc = ours.score(fashion.x_test, fashion.y_test)
        print(f"seed CNN, the deep section's way ({seed_spec.epochs} epochs, batch "
              f"{seed_spec.batch_size}, bf16={seed_spec.bf16!r}): training {ours.train_seconds_:.1f} s"
              f" (validation included), test {ours_acc:.4f}; the usual way: {curve[-1][0]:.1f} s,"
              f" test {curve[-1][1]:.4f}: {curve[-1][0] / ours.train_seconds_:.2f}x faster "
              f"(target >= 2x at equal accuracy)")
        reached = next((e for e, a in curve if a >= acc), None)
        if reached:
            print(f"time to {acc:.4f}: seed CNN {reached:.1f} s, cnn-fast "
                  f"{clf.train_seconds_:.1f} s: ratio {reached / clf.train_seconds_:.1f}x")
        else:
            print(f"the seed CNN never reached {acc:.4f} in 10 epochs ({curve[-1][0]:.1f} s, "
                  f"best {max(a for _, a in curve):.4f}): ratio > "
                  f"{curve[-1][0] / clf.train_seconds_:.1f}x")

    if SHARED_MNIST.is_dir():
        from mnistlab.data.idx import read_idx

        small = load_dataset("mnist-5k")
        x = np.concatenate([small.x_train, small.x_test])
        y = np.concatenate([small.y_train, small.y_test])
        xt = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
        yt = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
        # 5,000 images: 30 epochs are as many gradient steps as 2.5 epochs of Fashion-MNIST.
        # With and without shift augmentation: the study shifts digits (augment_shift "auto"),
        # not Fashion-MNIST, whose 5 epochs it cost 0.9289 -> 0.9235 test accuracy.
        digit_params = {**build_config("full").deep.models["cnn-fast"].for_data(
            small).estimator_params(), "seed": 0, "epochs": 30}
        for shift in (0, 1):
            proxy = TorchClassifier("cnn-fast", **{**digit_params, "augment_shift": shift}
                                    ).fit(x, y)
            used = " (the study's setting on digits)" * (shift == digit_params["augment_shift"])
            print(f"MNIST proxy: cnn-fast on 5,000 digits, augment_shift={shift}{used}, "
                  f"{proxy.train_seconds_:.1f} s, official test set accuracy "
                  f"{proxy.score(xt, yt):.4f} (target >= 0.990)")
    else:
        print("MNIST proxy skipped: ../shared/data/mnist-test-10k is absent")

    if not args.skip_section:
        from mnistlab.sections import deep

        dparams = build_config("full").deep
        started = time.perf_counter()
        results = {}
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for step in deep.plan(fashion, dparams, seed=0):
                t0 = time.perf_counter()
                results[step.name] = (step(fashion, files_dir=Path(tmp), files_key=step.name)
                                      if step.files else step(fashion))
                print(f"  section step {step.name:16s} {time.perf_counter() - t0:6.1f} s")
        wall = time.perf_counter() - started
        peaks = [r.peak_mb for k, r in results.items() if k.startswith("train:")]
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # (RUSAGE_CHILDREN is no use here: a spawned child's ru_maxrss counts the parent's
        # pages at fork time, before its exec.)
        print(f"deep section full profile: {wall:.1f} s (target <= 240 s); peak RSS of the "
              f"training processes {max(peaks):.0f} MiB (target <= 1536), this process "
              f"{own:.0f} MiB (it also ran the benchmarks above)")
        for k, r in results.items():
            if k.startswith("train:"):
                print(f"  {k:16s} test acc {r.test_acc:.4f}, {r.train_s:.1f} s training, "
                      f"peak {r.peak_mb:.0f} MiB")


if __name__ == "__main__":
    from results import recorded  # bench/results.py: this script's part of RESULTS.md

    with recorded("bench/deep.py"):
        main()
