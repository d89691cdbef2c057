"""The network names and the image sizes each can work on, without importing torch.

A study's plan checks its networks against the dataset's image shape on every run, including a
rerun with nothing to compute; importing torch for that would take about a second of it.
"""

from __future__ import annotations

from typing import Any

ARCHITECTURES = ("mlp-1", "mlp-2", "cnn-seed", "cnn-fast")
CNN_FAST_CHANNELS = [32, 64, 128]


def image_shape_problem(arch: str, image_shape: tuple[int, int],
                        arch_params: dict[str, Any] | None = None) -> str | None:
    """Why ``arch`` cannot be built for images of ``image_shape``, or None when it can."""
    h, w = image_shape
    if arch == "cnn-seed" and (h < 4 or w < 4):  # a 3x3 convolution, then 2x2 pooling
        return f"cnn-seed needs images of at least 4x4 pixels, got {h}x{w}"
    if arch == "cnn-fast":
        channels = (arch_params or {}).get("channels", CNN_FAST_CHANNELS)
        if not channels or min(channels) < 1:
            return f"cnn-fast channels must be positive integers, got {channels}"
        if min(h, w) // 2 ** (len(channels) - 1) < 1:  # a 2x2 pooling after each block but one
            return (f"cnn-fast: {len(channels)} blocks pool {h}x{w} images to nothing; "
                    "use fewer channels entries")
    return None
