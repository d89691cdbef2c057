"""Corrupted copies of images and digits from someone else's hand: what a model meets beyond
its test set (issue 35). In the spirit of MNIST-C (Mu & Gilmer, 2019): each corruption at one
stated severity, fixed before any model was measured and never tuned afterwards.

scipy.ndimage does every transform (filters, grey morphology, resampling through
``map_coordinates``) on the whole batch at once: it is already installed with scikit-learn,
works on uint8 or float arrays of any size (8x8 digits as well as 28x28), and needs no
per-image Python loop. Pillow renders the font digits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import centred_digit


def _identity_matrices(n: int) -> np.ndarray:
    return np.broadcast_to(np.eye(2), (n, 2, 2))


def _resample(x: np.ndarray, matrices: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each image through its own affine map about its centre: output pixel p reads the input
    at M (p - c) + c - shift (bilinear, black outside). One ``map_coordinates`` call."""
    from scipy import ndimage

    n, h, w = x.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    pixels = np.stack([rows, cols], -1).reshape(-1, 2) - centre
    source = np.einsum("nij,pj->npi", matrices, pixels) + centre - shifts[:, None, :]
    image = np.broadcast_to(np.arange(n)[:, None], (n, h * w))
    coordinates = np.stack([image, source[..., 0], source[..., 1]]).reshape(3, n, h, w)
    return ndimage.map_coordinates(x.astype(np.float32), coordinates, order=1, cval=0.0)


def _signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), n)


def _scale(x: np.ndarray) -> float:
    """Lengths are stated for 28x28 images; smaller images get them in proportion."""
    return min(x.shape[1:]) / 28


def _gaussian_noise(x, rng):
    return x + rng.normal(0.0, 0.2 * 255, x.shape)


def _impulse_noise(x, rng):
    out = x.astype(np.float32)
    hit = rng.random(x.shape) < 0.1
    out[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0.0, 255.0)
    return out


def _blur(x, rng):
    from scipy import ndimage

    sigma = 1.0 * _scale(x)
    return ndimage.gaussian_filter(x.astype(np.float32), (0, sigma, sigma))


def _thick(x, rng):
    from scipy import ndimage

    return ndimage.grey_dilation(x, size=(1, 3, 3))


def _thin(x, rng):
    from scipy import ndimage

    return ndimage.grey_erosion(x, size=(1, 2, 2))


def _shift(x, rng):
    angle = rng.uniform(0, 2 * np.pi, len(x))
    shifts = 4 * _scale(x) * np.stack([np.sin(angle), np.cos(angle)], 1)
    return _resample(x, _identity_matrices(len(x)), shifts)


def _rotate(x, rng):
    a = np.deg2rad(30) * _signs(rng, len(x))
    cos, sin = np.cos(a), np.sin(a)
    matrices = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)
    return _resample(x, matrices, np.zeros((len(x), 2)))


def _shrink(x, rng):
    return _resample(x, _identity_matrices(len(x)) / 0.6, np.zeros((len(x), 2)))


def _shear(x, rng):
    matrices = np.repeat(np.eye(2)[None], len(x), axis=0)
    matrices[:, 1, 0] = 0.5 * _signs(rng, len(x))
    return _resample(x, matrices, np.zeros((len(x), 2)))


def _contrast(x, rng):
    return x.astype(np.float32) * 0.3


def _elastic(x, rng):
    """Simard et al.'s elastic distortion: a random displacement field smoothed by a Gaussian."""
    from scipy import ndimage

    n, h, w = x.shape
    sigma, alpha = 3.0 * _scale(x), 10.0 * _scale(x)
    field = ndimage.gaussian_filter(rng.uniform(-1, 1, (2, n, h, w)), (0, 0, sigma, sigma))
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    image = np.broadcast_to(np.arange(n)[:, None, None], (n, h, w))
    coordinates = np.stack([image, rows + alpha * field[0], cols + alpha * field[1]])
    return ndimage.map_coordinates(x.astype(np.float32), coordinates, order=1, cval=0.0)


@dataclass(frozen=True)
class Corruption:
    apply: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    severity: str  # as the report states it (lengths for 28x28 images)
    kind: str  # noise, blur, stroke, geometry, intensity


# The one registry of corruptions (the config's choices, the report's rows). Severities were
# set once, looking at corrupted mnist-5k digits (each still legible to a person), before any
# model was scored on them.
CORRUPTIONS = {
    "gaussian-noise": Corruption(_gaussian_noise, "Gaussian noise, sd 51 grey levels (0.2 of "
                                 "the range)", "noise"),
    "impulse-noise": Corruption(_impulse_noise, "10 % of the pixels set to black or white",
                                "noise"),
    "blur": Corruption(_blur, "Gaussian blur, sigma 1 pixel", "blur"),
    "thick": Corruption(_thick, "grey dilation, 3x3 pixels: bright parts grow", "stroke"),
    "thin": Corruption(_thin, "grey erosion, 2x2 pixels: bright parts shrink", "stroke"),
    "shift": Corruption(_shift, "shifted 4 pixels in a random direction", "geometry"),
    "rotate": Corruption(_rotate, "rotated 30 degrees, either way", "geometry"),
    "shrink": Corruption(_shrink, "shrunk to 0.6 of its size about the centre", "geometry"),
    "shear": Corruption(_shear, "sheared by 0.5 (about 27 degrees), either way", "geometry"),
    "contrast": Corruption(_contrast, "contrast lowered to 0.3 of the range", "intensity"),
    "elastic": Corruption(_elastic, "elastic deformation, alpha 10, sigma 3 pixels",
                          "geometry"),
}


def corrupt(name: str, images: np.ndarray, seed: int) -> np.ndarray:
    """``images`` (uint8, (n, H, W)) under the corruption ``name``; the random parts (noise,
    directions) drawn from ``seed`` and the corruption's place in the registry."""
    rng = np.random.default_rng([seed, list(CORRUPTIONS).index(name)])
    out = CORRUPTIONS[name].apply(np.asarray(images), rng)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


FONT_FOLDERS = ("/usr/share/fonts",)
FONT_SUFFIXES = (".ttf", ".otf")
STROKES = (0, 2, 4)  # extra stroke width in pixels, at FONT_SIZE
FONT_SIZE = 64


def system_fonts(folders=FONT_FOLDERS) -> tuple[tuple[str, int], ...]:
    """The system's font files (path, size in bytes: a changed file changes a step's key),
    sorted; none where there are none."""
    found = []
    for folder in folders:
        root = Path(folder)
        if root.is_dir():
            found += [p for p in root.rglob("*") if p.suffix.lower() in FONT_SUFFIXES
                      and p.is_file()]
    return tuple((str(p), p.stat().st_size) for p in sorted(found))


def font_digits(fonts, image_shape: tuple[int, int]):
    """The digits 0-9 typed in each font at each stroke width of STROKES, brought to
    ``image_shape`` the way ``mnistlab predict`` brings a user's image (MNIST's preparation).
    Fonts without distinct glyphs for the ten digits (symbol fonts) are left out. Returns
    (images, labels, font index per image, stroke per image, the fonts used)."""
    from PIL import Image, ImageDraw, ImageFont

    images, labels, font_of, stroke_of, used = [], [], [], [], []
    for path, _ in fonts:
        try:
            font = ImageFont.truetype(path, FONT_SIZE)
        except OSError:  # not a font Pillow reads
            continue
        typed = []
        for stroke in STROKES:
            for digit in range(10):
                canvas = Image.new("L", (2 * FONT_SIZE, 2 * FONT_SIZE), 0)
                ImageDraw.Draw(canvas).text((FONT_SIZE // 2, FONT_SIZE // 4), str(digit),
                                            fill=255, font=font, stroke_width=stroke,
                                            stroke_fill=255)
                typed.append(np.asarray(canvas, dtype=np.float32))
        plain = np.stack(typed[:10]).reshape(10, -1)
        if len(np.unique(plain, axis=0)) < 10 or (plain.max(1) == 0).any():
            continue
        for k, grey in enumerate(typed):
            images.append(centred_digit(grey, image_shape))
            labels.append(k % 10)
            font_of.append(len(used))
            stroke_of.append(STROKES[k // 10])
        used.append(Path(path).stem)
    if not images:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros((0, *image_shape), np.uint8), empty, empty, empty, []
    return (np.stack(images), np.array(labels, dtype=np.int64), np.array(font_of),
            np.array(stroke_of), used)


def small_digits(image_shape: tuple[int, int]):
    """scikit-learn's 1,797 8x8 digits (another collection: 43 writers, 32x32 bitmaps counted
    down to 8x8) brought to ``image_shape`` as ``mnistlab predict`` brings a user's image."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = bunch.images.astype(np.float32) * (255 / 16)
    return (np.stack([centred_digit(g, image_shape) for g in grey]),
            bunch.target.astype(np.int64))
