"""Preparing users' images the way MNIST was made, and refusing what cannot be used."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab import load_dataset
from mnistlab.data.images import (
    MAX_PIXELS,
    BadArray,
    ImageError,
    ImageTooLarge,
    NoInk,
    array_to_input,
    centred_digit,
    image_to_input,
)

# strokes in fractions of the image's width and height: a 7, and a slanted 1
STROKES = [[(0.27, 0.2), (0.73, 0.2), (0.43, 0.9)], [(0.45, 0.85), (0.6, 0.15)]]


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _drawing(mode: str, background, ink, size=(300, 200), stroke=0) -> Image.Image:
    image = Image.new(mode, size, background)
    points = [(x * size[0], y * size[1]) for x, y in STROKES[stroke]]
    ImageDraw.Draw(image).line(points, fill=ink, width=max(2, min(size) // 11))
    return image


@pytest.mark.parametrize("stroke", [0, 1])
def test_transparent_inverted_and_coloured_drawings_give_the_same_input(stroke):
    on_white = image_to_input(_png(_drawing("RGB", "white", "black", stroke=stroke)),
                              (28, 28), True)
    transparent = image_to_input(_png(_drawing("RGBA", (0, 0, 0, 0), (0, 0, 0, 255),
                                               stroke=stroke)), (28, 28), True)
    inverted = image_to_input(_png(_drawing("L", 0, 255, stroke=stroke)), (28, 28), True)
    assert np.array_equal(on_white, transparent)
    assert np.array_equal(on_white, inverted)
    assert on_white.dtype == np.uint8 and on_white.max() == 255


@pytest.mark.parametrize("size", [(300, 200), (40, 90), (1000, 1000)])
def test_the_ink_fits_20_pixels_and_its_centre_of_mass_is_the_centre(size):
    x = image_to_input(_png(_drawing("RGB", "white", "navy", size=size)), (28, 28), True)
    rows, cols = np.nonzero(x)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (20, 21)
    r, c = np.indices(x.shape)
    mass = x.astype(float).sum()
    assert abs((x * r).sum() / mass - 14) <= 0.5  # where MNIST's digits have it (below)
    assert abs((x * c).sum() / mass - 14) <= 0.5


def test_a_real_mnist_digit_drawn_large_on_white_comes_back_as_mnist_has_it():
    """200 of the bundled MNIST test digits, 3x larger, dark on white: prepared, they match
    MNIST's own images (mean correlation 0.993, 5th percentile 0.990; 0.817 and 0.557 when
    every digit was placed half a pixel up and left, its centre of mass at (13.5, 13.5) where
    MNIST's is at (14, 14))."""
    from scipy import ndimage

    x = load_dataset("mnist-5k").x_test[:200]
    assert np.allclose(np.mean([ndimage.center_of_mass(im.astype(float)) for im in x], axis=0),
                       (14, 14), atol=0.1)
    correlations = []
    for digit in x:
        drawn = 255 - np.kron(digit, np.ones((3, 3), np.uint8))
        prepared = centred_digit(drawn.astype(np.float64), (28, 28))
        correlations.append(np.corrcoef(digit.ravel(), prepared.ravel())[0, 1])
    assert np.mean(correlations) > 0.98 and np.percentile(correlations, 5) > 0.97


def test_a_digit_of_scikit_learns_8x8_set_drawn_large_keeps_that_sets_centre():
    """Those digits fill their bitmap and centre it at the middle of the field, not at MNIST's
    (14, 14): 200 of them, 10x larger, dark on white, come back with their mean centre of mass
    where the set has it (3.48, 3.56 against 3.48, 3.58) and mean correlation 0.84 to the
    originals."""
    from scipy import ndimage

    x = load_dataset("digits").x_test[:200]
    own = np.mean([ndimage.center_of_mass(im.astype(float)) for im in x], axis=0)
    prepared = [centred_digit(255.0 - np.kron(d, np.ones((10, 10))), (8, 8)) for d in x]
    assert all(p.shape == (8, 8) and p.dtype == np.uint8 and p.max() >= 190 for p in prepared)
    centres = np.mean([ndimage.center_of_mass(p.astype(float)) for p in prepared], axis=0)
    assert np.allclose(centres, own, atol=0.1), (centres, own)
    correlations = [np.corrcoef(d.ravel(), p.ravel())[0, 1] for d, p in zip(x, prepared)]
    assert np.mean(correlations) > 0.8


def test_an_image_already_in_the_datasets_form_passes_through_exactly():
    data = load_dataset("mnist-5k")
    for image in data.x_test[:20]:
        assert np.array_equal(image_to_input(_png(Image.fromarray(image)), (28, 28), True),
                              image)


def test_other_datasets_are_only_resized():
    photo = Image.new("RGB", (56, 84), (200, 30, 30))
    x = image_to_input(_png(photo), (28, 28), False)
    assert x.shape == (28, 28) and len(np.unique(x)) == 1  # a uniform red stays uniform


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "BMP", "GIF"])
def test_every_named_format_is_read(fmt):
    x = image_to_input(_png(_drawing("RGB", "white", "black"), fmt), (28, 28), True)
    assert x.shape == (28, 28) and x.max() > 200


def test_what_cannot_be_used_is_refused_with_its_status():
    with pytest.raises(ImageError, match="not a readable image") as info:
        image_to_input(b"hello, not an image", (28, 28), True, "upload")
    assert info.value.status == 400
    tiff = _png(_drawing("RGB", "white", "black"), "TIFF")  # Pillow reads it; we do not
    with pytest.raises(ImageError, match="not a readable image"):
        image_to_input(tiff, (28, 28), True)
    truncated = _png(_drawing("RGB", "white", "black"))[:300]
    with pytest.raises(ImageError, match="damaged or truncated") as info:
        image_to_input(truncated, (28, 28), True)
    assert info.value.status == 400
    side = int(MAX_PIXELS ** 0.5) + 1
    bomb = _png(Image.new("1", (side, side)))  # a few kB that decode to 16 M pixels
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLarge) as info:
        image_to_input(bomb, (28, 28), True)
    assert info.value.status == 413
    with pytest.raises(NoInk) as info:
        image_to_input(_png(Image.new("RGB", (50, 50), "white")), (28, 28), True)
    assert info.value.status == 422


def test_arrays_must_have_the_datasets_shape_and_range():
    good = np.zeros((28, 28))
    good[10:18, 12:15] = 254.6
    assert array_to_input(good.tolist(), (28, 28)).max() == 255
    for bad, message in [(np.zeros((28, 27)), r"shape \(28, 28\), got \(28, 27\)"),
                         (np.full((28, 28), 256.0), "0..255"), (np.full((28, 28), -1), "0..255"),
                         ([[1, 2], [3]], "not a rectangular array")]:
        with pytest.raises(BadArray, match=message) as info:
            array_to_input(bad if isinstance(bad, list) else bad.tolist(), (28, 28))
        assert info.value.status == 422
