"""Images from users (files, uploads, a canvas) brought to the form a dataset's models read.

Digit datasets: the way MNIST was made (LeCun et al.): ink on a dark field, cropped to the ink,
the longer side scaled to 20 of 28 pixels with anti-aliasing, placed so that the centre of mass
is at the centre. Pillow does the decoding and the resampling; the polarity, the crop and the
centring are the few lines no library offers for this (scikit-image has none of the three as
one step). Other datasets (Fashion-MNIST and the like): grey and resized only.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from ..core.errors import MnistlabError

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")  # Pillow opens nothing else
# The files read as images (a dataset's class folders, `mnistlab predict`): those formats.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
MAX_PIXELS = 4096 * 4096  # a decoded image larger than this is refused before decoding
INK_THRESHOLD = 0.1  # of the darkest-to-brightest range: fainter pixels do not count as ink
MNIST_BOX, MNIST_FIELD = 20, 28


class ImageError(MnistlabError):
    """An image cannot be used; ``status`` is the HTTP status that says why."""

    status = 400


class UnsupportedImage(ImageError):
    status = 415


class ImageTooLarge(ImageError):
    status = 413


class NoInk(ImageError):
    status = 422


class BadArray(ImageError):
    """An array of the wrong shape, or values outside 0..255."""

    status = 422


def decode(payload: bytes, name: str = "image"):
    """A Pillow image of ``payload``, one of :data:`FORMATS`, at most :data:`MAX_PIXELS`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(payload), formats=FORMATS)
            if image.width * image.height > MAX_PIXELS:
                raise ImageTooLarge(f"{name}: {image.width}x{image.height} pixels is over the "
                                    f"limit of {MAX_PIXELS:,}")
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"{name}: refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image (mnistlab reads "
                         f"{', '.join(FORMATS)})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"{name}: a damaged or truncated image ({exc})") from None
    return image


def to_grey(image) -> np.ndarray:
    """Grey levels 0..255 (float32); a transparent image is laid on white first."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and
                                               "transparency" in image.info):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return np.asarray(image.convert("L"), dtype=np.float32)


def to_model_input(image, image_shape: tuple[int, int], digits: bool,
                   name: str = "image") -> np.ndarray:
    """The uint8 array of ``image_shape`` a model of the dataset reads, from a Pillow image.

    An image already grey and of ``image_shape`` passes through unchanged.
    """
    h, w = image_shape
    if image.mode == "L" and image.size == (w, h):
        return np.asarray(image, dtype=np.uint8).copy()
    grey = to_grey(image)
    if not digits:
        return _resize(grey, (w, h))
    return centred_digit(grey, image_shape, name)


def _resize(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    # bilinear, widened when reducing (anti-aliased): a positive kernel, no ringing around
    # strokes as Lanczos gives
    image = Image.fromarray(grey.astype(np.float32), mode="F").resize(size, Image.BILINEAR)
    return np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8)


def centred_digit(grey: np.ndarray, image_shape: tuple[int, int],
                  name: str = "image") -> np.ndarray:
    """MNIST's preparation of one grey image (any size, any polarity)."""
    ink = 255.0 - grey if np.median(_border(grey)) > 127 else grey  # ink: the bright part
    ink = np.clip(ink - np.median(_border(ink)), 0, None)  # the field: 0
    if ink.max() < 255 * INK_THRESHOLD:
        raise NoInk(f"{name}: no ink found (a blank or uniform image)")
    rows, cols = np.nonzero(ink >= ink.max() * INK_THRESHOLD)
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    ink *= 255.0 / ink.max()
    h, w = image_shape
    # MNIST fits the ink in 20 of 28 pixels; scikit-learn's 8x8 digits (and other digit sets
    # of other sizes) were size-normalised to the whole bitmap
    mnist = (h, w) == (MNIST_FIELD, MNIST_FIELD)
    box = MNIST_BOX if mnist else min(h, w)
    scale = box / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    patch = _resize(ink, size).astype(np.float32)
    # place the patch so that its centre of mass lands where the dataset's digits have theirs
    # (whole pixels, as MNIST did): at pixel (14, 14) of MNIST's 28x28 field (its test digits:
    # 14.01, 13.98, sd 0.29; (13.5, 13.5) put every digit half a pixel up and left of MNIST's),
    # at the middle of a field the digits fill (scikit-learn's 8x8: 3.47, 3.57)
    mass = patch.sum()
    com_r = (patch.sum(axis=1) * np.arange(patch.shape[0])).sum() / mass
    com_c = (patch.sum(axis=0) * np.arange(patch.shape[1])).sum() / mass
    centre_r, centre_c = (h / 2, w / 2) if mnist else ((h - 1) / 2, (w - 1) / 2)
    top, left = int(round(centre_r - com_r)), int(round(centre_c - com_c))
    field = np.zeros((h, w), np.float32)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + patch.shape[0], h), min(left + patch.shape[1], w)
    field[r0:r1, c0:c1] = patch[r0 - top:r1 - top, c0 - left:c1 - left]
    return np.clip(np.rint(field), 0, 255).astype(np.uint8)


def _border(grey: np.ndarray) -> np.ndarray:
    return np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])


def image_to_input(payload: bytes, image_shape: tuple[int, int], digits: bool,
                   name: str = "image") -> np.ndarray:
    """Bytes of an image file -> the model input (uint8, ``image_shape``)."""
    return to_model_input(decode(payload, name), image_shape, digits, name)


def array_to_input(values, image_shape: tuple[int, int], name: str = "array") -> np.ndarray:
    """A nested list or array of grey levels of exactly ``image_shape`` -> uint8."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadArray(f"{name}: not a rectangular array of numbers") from None
    h, w = image_shape
    if x.shape != (h, w):
        raise BadArray(f"{name}: expected an array of shape ({h}, {w}), got {x.shape}")
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 255:
        raise BadArray(f"{name}: grey levels must be finite numbers in 0..255")
    return np.rint(x).astype(np.uint8)
