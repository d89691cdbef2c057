"""The networks of the deep section: two MLPs, the seed's CNN and a fast CNN, as torch modules.

Each is a short ``nn.Sequential``; :func:`build_module` maps an architecture name (and its
``arch_params``) to one, and :func:`layer_table` prints it the way Keras' ``summary()`` does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .architectures import ARCHITECTURES, CNN_FAST_CHANNELS, image_shape_problem

__all__ = ["ARCHITECTURES", "build_module", "count_parameters", "layer_table"]


def _mlp(in_features: int, hidden: list[int], n_classes: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, n_classes))
    return nn.Sequential(*layers)


def _cnn_seed(shape: tuple[int, int], n_classes: int) -> nn.Sequential:
    h, w = (shape[0] - 2) // 2, (shape[1] - 2) // 2
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(32 * h * w, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, n_classes))


def _cnn_fast(shape: tuple[int, int], n_classes: int, channels: list[int],
              dropout: float) -> nn.Sequential:
    """Conv-BN-ReLU blocks, each followed by 2x2 max-pooling but the last; then a linear head
    on the flattened map. BatchNorm lets a one-cycle schedule use large learning rates."""
    layers: list[nn.Module] = []
    c_in, h, w = 1, shape[0], shape[1]
    for i, c_out in enumerate(channels):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True)]
        if i < len(channels) - 1:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c_in = c_out
    layers += [nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(c_in * h * w, n_classes))
    return nn.Sequential(*layers)


def build_module(arch: str, image_shape: tuple[int, int], n_classes: int,
                 arch_params: dict[str, Any] | None = None) -> nn.Module:
    """The network of an architecture name.

    Parameters
    ----------
    arch : {"mlp-1", "mlp-2", "cnn-seed", "cnn-fast"}
    image_shape : (height, width)
    n_classes : int
    arch_params : dict, optional
        ``hidden`` and ``dropout`` for MLPs, ``channels`` and ``dropout`` for cnn-fast.
    """
    p = dict(arch_params or {})
    problem = image_shape_problem(arch, image_shape, p)
    if problem:
        raise ValueError(problem)
    if arch == "mlp-1":
        return _mlp(image_shape[0] * image_shape[1], p.get("hidden", [128]), n_classes,
                    p.get("dropout", 0.0))
    if arch == "mlp-2":
        return _mlp(image_shape[0] * image_shape[1], p.get("hidden", [512, 512]), n_classes,
                    p.get("dropout", 0.2))
    if arch == "cnn-seed":
        return _cnn_seed(image_shape, n_classes)
    if arch == "cnn-fast":
        return _cnn_fast(image_shape, n_classes, p.get("channels", CNN_FAST_CHANNELS),
                         p.get("dropout", 0.0))
    raise ValueError(f"unknown architecture {arch!r} (use one of {', '.join(ARCHITECTURES)})")


def layer_table(module: nn.Module, image_shape: tuple[int, int]) -> list[dict]:
    """Keras-like summary: each leaf layer, its output shape and its parameter count."""
    rows, hooks = [], []
    for name, layer in module.named_modules():
        if list(layer.children()):
            continue

        def hook(mod, _inp, out, name=name):
            rows.append({"layer": f"{name} ({type(mod).__name__})",
                         "output_shape": [None, *out.shape[1:]],
                         "params": sum(p.numel() for p in mod.parameters())})
        hooks.append(layer.register_forward_hook(hook))
    was_training = module.training
    module.eval()
    with torch.no_grad():
        module(torch.zeros(1, 1, *image_shape))
    module.train(was_training)
    for h in hooks:
        h.remove()
    return rows


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
