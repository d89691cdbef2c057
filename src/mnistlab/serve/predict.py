"""``mnistlab predict``: images and batches from files, through the models of a study."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import DatasetError
from ..data.idx import read_idx
from ..data.images import FORMATS, IMAGE_SUFFIXES, ImageError, image_to_input
from ..study.catalog import TrainedModel

BATCH_KEYS = ("x_test", "images", "x")
LABEL_KEYS = {"x_test": "y_test", "images": "labels", "x": "y"}


@dataclass
class Inputs:
    """The model inputs of every file given, in order; ``labels`` when a batch carries them."""

    names: list[str]  # "digit.png", or "batch.npz[17]"
    images: np.ndarray  # (n, H, W) uint8
    labels: np.ndarray | None = None


def _batch(path: Path, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    if path.suffix == ".npz":
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as npz:
                key = next((k for k in BATCH_KEYS if k in npz.files), None)
                if key is None and len(npz.files) == 1:
                    key = npz.files[0]
                if key is None:
                    raise ImageError(f"{path}: no images in it (name them one of "
                                     f"{', '.join(BATCH_KEYS)})")
                x = npz[key]
                y = npz[LABEL_KEYS[key]] if LABEL_KEYS.get(key) in npz.files else None
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ImageError(f"{path}: not a readable .npz file ({exc})") from None
    else:
        try:
            x, y = read_idx(path, expected_ndim=3), None
        except DatasetError as exc:
            raise ImageError(str(exc)) from None
    if x.ndim == 2 and x.shape == tuple(image_shape):
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != tuple(image_shape):
        raise ImageError(f"{path}: images of shape {x.shape[1:]}, but the models read "
                         f"{image_shape[0]}x{image_shape[1]}")
    if not np.issubdtype(x.dtype, np.number) or x.min() < 0 or x.max() > 255:
        raise ImageError(f"{path}: grey levels must be numbers in 0..255")
    if y is not None and len(y) != len(x):
        y = None
    return x.astype(np.uint8), y


def gather(paths: list[Path], image_shape: tuple[int, int], digits: bool) -> Inputs:
    """Every image of ``paths`` (image files, folders of them, IDX or npz batches) as the
    models' input."""
    names: list[str] = []
    images: list[np.ndarray] = []
    batch_labels: list[np.ndarray | None] = []  # per IDX/npz file
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ImageError(f"{path}: no image files in it ({', '.join(FORMATS)})")
        elif path.is_file():
            files = [path]
        else:
            raise ImageError(f"{path}: no such file or folder")
        for file in files:
            if file.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    payload = file.read_bytes()
                except OSError as exc:
                    raise ImageError(f"{file}: cannot be read ({exc.strerror})") from None
                images.append(image_to_input(payload, image_shape, digits, str(file))[None])
                names.append(str(file))
            else:
                x, y = _batch(file, image_shape)
                images.append(x)
                names += [f"{file}[{i}]" for i in range(len(x))]
                batch_labels.append(y)
    batch = np.concatenate(images)
    # labels (and so an accuracy) only when every image comes from one labelled batch
    only = batch_labels[0] if len(batch_labels) == 1 else None
    return Inputs(names, batch, only if only is not None and len(only) == len(batch) else None)


def predict_all(models: list[TrainedModel], inputs: Inputs) -> dict[str, dict]:
    """Per model: ``kind`` (probability or score), the ``scores`` array (n, C), ``pred``."""
    out = {}
    for model in models:
        kind, scores = model.scores(inputs.images)
        out[model.name] = {"kind": kind, "scores": scores,
                           "pred": np.asarray(model.predict(inputs.images))}
    return out
