"""The one registry of networks: name, builder, the image sizes each can work on, and how the
deep section trains it by default; without importing torch.

A study's plan checks its networks against the dataset's image shape on every run, including a
rerun with nothing to compute; importing torch for that would take about a second of it.
Adding a network is one entry here and its builder in :mod:`mnistlab.models.nets`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .training import AUGMENTATION_NAMES

CNN_FAST_CHANNELS = [32, 64, 128]


def _cnn_seed_problem(h: int, w: int, arch_params: dict[str, Any]) -> str | None:
    if h < 4 or w < 4:  # a 3x3 convolution, then 2x2 pooling
        return f"cnn-seed needs images of at least 4x4 pixels, got {h}x{w}"
    return None


def _cnn_fast_problem(h: int, w: int, arch_params: dict[str, Any]) -> str | None:
    channels = arch_params.get("channels", CNN_FAST_CHANNELS)
    if not channels or min(channels) < 1:
        return f"cnn-fast channels must be positive integers, got {channels}"
    if min(h, w) // 2 ** (len(channels) - 1) < 1:  # a 2x2 pooling after each block but one
        return (f"cnn-fast: {len(channels)} blocks pool {h}x{w} images to nothing; "
                "use fewer channels entries")
    return None


@dataclass(frozen=True)
class Network:
    """One network of the deep section."""

    builder: str  # function of mnistlab.models.nets: (image_shape, n_classes, **arch_params)
    arch_params: dict[str, Any]  # the builder's defaults
    # Its place when the study trains the networks, longest first (Fashion-MNIST, default
    # parameters), so that two trained side by side end together.
    training_order: int
    # The deep section's default training (its ModelSpec fields): chosen and measured there.
    spec: dict[str, Any] = field(default_factory=dict)
    # Why an image shape does not fit it: (height, width, arch_params) -> reason or None
    shape_problem: Callable[[int, int, dict[str, Any]], str | None] | None = None
    # What its spec's "auto" entries become, per setting: (on the named digit datasets of
    # 28x28 images or larger, where the training augmentations apply; on every other dataset)
    auto: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def decide_auto(self, setting: str, mnist_sized_digits: bool) -> Any:
        on_digits, elsewhere = self.auto[setting]
        return on_digits if mnist_sized_digits else elsewhere


# In the seed's order (MLPs, then CNNs): the report, the model list and a tie for the best
# follow it. bf16="auto": bfloat16 autocast where the CPU computes it natively (AVX-512 BF16,
# AMX) or on a CUDA GPU that has it; elsewhere float32. The seed's CNN trains 1.5x faster with
# it on the 2-core development machine and mlp-2 1.3x (mlp-1, too small to gain, stays float32).
NETWORKS = {
    "mlp-1": Network("mlp", {"hidden": [128], "dropout": 0.0}, 3,
                     spec={"validation_fraction": 0.2}),
    "mlp-2": Network("mlp", {"hidden": [512, 512], "dropout": 0.2}, 2,
                     spec={"validation_fraction": 0.2, "bf16": "auto"}),
    "cnn-seed": Network("cnn_seed", {}, 1, spec={"validation_fraction": 0.1, "bf16": "auto"},
                        shape_problem=_cnn_seed_problem),
    # Chosen on Fashion-MNIST's validation split, 2 CPU cores: [24, 48, 96] reached 0.927 test
    # in 49 s (7 epochs), [32, 64, 128] 0.930 in 37 s (5 epochs), both with bf16 autocast.
    # Shifts of up to 1 pixel on MNIST-sized digits only. bench/deep.py's MNIST proxy (5,000
    # digits, 30 epochs, the official test set): 0.9859 -> 0.9909; mnist-5k's 1,000 test
    # digits, seeds 0-2: full profile 0.9723 -> 0.9763, quick 0.8977 -> 0.8950 (within its
    # spread). They cost Fashion-MNIST's 5 epochs 0.9289 -> 0.9235, and scikit-learn's 8x8
    # digits (1 pixel of 8) 0.969 -> 0.927 (seeds 0-4). The augmentations of models.augment
    # on the same digits only, in batches of 64 there (bench/robustness.py, MNIST proxy, 5
    # epochs, seeds 0-2, against no augmentation in batches of 256): mean accuracy over the
    # robustness section's corruptions 0.710 -> 0.957, scikit-learn's 8x8 digits 0.54 -> 0.84,
    # the typed digits 0.795 -> 0.805, clean 0.9860 -> 0.9865, training 1.26x. Batches of 256
    # with them: 0.940, 0.79, 0.9821 (too few steps); batches of 64 on Fashion-MNIST's 54,000
    # images cost 1.2x the time for +0.002 (71.5 -> 83.2 s), and the augmentations 0.025 of
    # its clean accuracy (0.9316 -> 0.9070): neither there. On those digits the augmented
    # images then take more steps through a fourth block (3x3 maps): [24, 48, 96, 128],
    # batches of 32, 7 epochs (bench/robustness.py, MNIST proxy, seeds 0-4, 2 cores, float32,
    # against [32, 64, 128] in batches of 64 for 5 epochs): clean 0.9864 -> 0.9900, the
    # corruptions 0.957 -> 0.969, the 8x8 digits 0.84 -> 0.90, the typed digits 0.81 -> 0.87,
    # training 1.39x (1.61x that without augmentations in batches of 256). Every variant of
    # about that cost ended at 0.9897-0.9902: [32, 64, 128, 128] in batches of 48, [32, 64, 96,
    # 128] for 6 epochs, a last epoch without augmentations, elastic distortions, other
    # learning rates; the fourth block costs Fashion-MNIST 0.9310 -> 0.9275 (seed 0): not there.
    # Those steps were short of time, not of accuracy: a batch of 32 spends most of its time on
    # the first blocks' 28x28 and 14x14 maps, and on drawing augmentations batch by batch.
    # With [16, 32, 64, 128] and the images augmented 1,024 at a time, 10 epochs take less
    # time than 7 did (seeds 0-4, MNIST proxy: clean 0.9908, the corruptions 0.972, the 8x8
    # digits 0.91, the typed digits 0.90, training 1.22-1.25x that without augmentations; 9
    # epochs: 0.9897, [16, 32, 96, 128] for 9: 0.9900, 1.08x). On Fashion-MNIST [32, 64, 128]
    # has levelled off by its 5th epoch (seed 0, 1 thread: 5 epochs 0.9291, 8 0.9312, 10
    # 0.9300), so more epochs buy nothing there; nor did SGD (0.9247), [32, 64, 192] (0.9303
    # in 1.16x the time), a second 3x3 convolution on the 7x7 maps (0.9312, 1.53x) or pooling
    # before BatchNorm (0.9276, 0.87x; 6 epochs 0.9289).
    "cnn-fast": Network("cnn_fast", {"channels": CNN_FAST_CHANNELS, "dropout": 0.0}, 0,
                        spec={"epochs": "auto", "batch_size": "auto", "lr": 4e-3,
                              "optimizer": "adamw", "weight_decay": 5e-4,
                              "schedule": "onecycle", "validation_fraction": 0.1,
                              "label_smoothing": 0.1, "arch_params": "auto", "bf16": "auto",
                              "augment_shift": "auto", "augment": "auto"},
                        shape_problem=_cnn_fast_problem,
                        auto={"epochs": (10, 5), "batch_size": (32, 256),
                              "arch_params": ({"channels": [16, 32, 64, 128]},
                                              {"channels": CNN_FAST_CHANNELS}),
                              "augment_shift": (1, 0),
                              "augment": (list(AUGMENTATION_NAMES), [])}),

}
ARCHITECTURES = tuple(NETWORKS)


def image_shape_problem(arch: str, image_shape: tuple[int, int],
                        arch_params: dict[str, Any] | None = None) -> str | None:
    """Why ``arch`` cannot be built for images of ``image_shape`` with ``arch_params``, or None
    when it can."""
    network = NETWORKS[arch]
    unknown = sorted(set(arch_params or {}) - set(network.arch_params))
    if unknown:
        takes = ", ".join(network.arch_params) or "none"
        return f"{arch}: unknown arch_params {', '.join(unknown)} (it takes {takes})"
    check = network.shape_problem
    return check(*image_shape, arch_params or {}) if check else None
