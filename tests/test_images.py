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


def _ink_on(mode: str, stroke_level: int = 60):
    """A square of grey ``stroke_level`` on a transparent field whose colour is black: read
    without its transparency, the field would be the darkest part of the image."""
    if mode == "P":
        image = Image.new("P", (12, 12), 0)
        image.putpalette([0, 0, 0, stroke_level, stroke_level, stroke_level])
        image.info["transparency"] = 0  # palette index 0 is transparent
        ImageDraw.Draw(image).rectangle((3, 3, 8, 8), fill=1)
        return image
    field = {"RGBA": (0, 0, 0, 0), "LA": (0, 0), "PA": (0, 0)}[mode]
    image = Image.new(mode, (12, 12), field)
    if mode == "PA":
        image.putpalette([0, 0, 0, stroke_level, stroke_level, stroke_level])
        ink = (1, 255)
    else:
        ink = (stroke_level,) * (len(field) - 1) + (255,)
    ImageDraw.Draw(image).rectangle((3, 3, 8, 8), fill=ink)
    return image


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P"])
def test_a_transparent_field_is_read_as_white_paper(mode):
    from mnistlab.data.images import to_grey

    expected = np.full((12, 12), 255, np.float32)
    expected[3:9, 3:9] = 60
    grey = to_grey(_ink_on(mode))
    assert grey.dtype == np.float32 and np.array_equal(grey, expected)


def test_grey_levels_come_back_as_float32_without_transparency():
    from mnistlab.data.images import to_grey

    grey = to_grey(Image.new("L", (3, 2), 77))
    assert grey.dtype == np.float32 and grey.shape == (2, 3) and np.all(grey == 77)


def test_the_field_is_told_from_the_ink_by_its_median_grey_level():
    """A field up to 127 is dark (the bright strokes are the ink), from 128 it is light (the
    dark strokes are): each other reading finds no ink at all."""
    dark_field = np.full((40, 40), 127.0)
    dark_field[10:30, 18:22] = 255
    light_field = np.full((40, 40), 128.0)
    light_field[10:30, 18:22] = 0
    assert np.array_equal(centred_digit(dark_field, (28, 28)), centred_digit(light_field, (28, 28)))
    assert centred_digit(dark_field, (28, 28)).max() == 255


def test_paper_lighter_than_the_field_is_still_paper():
    """Pixels brighter than the paper's median (a white sticker on grey paper) are no ink, and
    take nothing from the strokes beside them."""
    plain = np.full((60, 60), 200.0)
    plain[10:50, 16:24] = plain[10:50, 36:44] = 0  # two bars, paper between them
    x = centred_digit(plain, (28, 28))
    assert np.all(x[:, 13:17] == 0) and x.max() == 255  # the paper between is 0, exactly
    stickered = plain.copy()
    stickered[10:50, 26:34] = 255  # between the bars
    stickered[0:5, 0:60] = 255
    assert np.array_equal(x, centred_digit(stickered, (28, 28)))


def test_a_solid_bar_fills_its_box_and_everything_else_is_zero():
    """A black bar on white: scaled to 20 pixels on its long side (a whole number of pixels
    here), its mass centred at pixel (14, 14): ink 255 exactly, the field 0 exactly."""
    grey = np.full((100, 100), 255.0)
    grey[20:80, 40:55] = 0  # 60 x 15 -> 20 x 5
    x = centred_digit(grey, (28, 28))
    expected = np.zeros((28, 28), np.uint8)
    expected[4:24, 12:17] = 255  # rows 4..23 (mass centre 13.5 -> 14), columns 12..16
    assert x.dtype == np.uint8 and np.array_equal(x, expected), np.argwhere(x)


def test_an_image_exactly_at_the_pixel_limit_is_read():
    side = int(MAX_PIXELS ** 0.5)
    assert side * side == MAX_PIXELS
    image = Image.new("1", (side, side), 1)
    ImageDraw.Draw(image).rectangle((1000, 500, 1400, 3500), fill=0)
    assert image_to_input(_png(image), (28, 28), True).max() == 255


def test_a_decompression_bomb_is_refused_naming_the_upload():
    side = 10_000  # 100 M pixels: over Pillow's own bomb threshold
    bomb = _png(Image.new("1", (side, side)))
    with pytest.raises(ImageTooLarge, match=r"^drawing\.png: refused as a decompression bomb"):
        image_to_input(bomb, (28, 28), True, "drawing.png")


def test_errors_name_the_image_and_what_is_read():
    with pytest.raises(ImageError, match=r"^image: not a readable image \(mnistlab reads PNG, "
                                         r"JPEG, WEBP, BMP, GIF\)$"):
        image_to_input(b"not an image", (28, 28), True)
    from mnistlab.data.images import to_model_input

    with pytest.raises(NoInk, match=r"^image: no ink found"):
        to_model_input(Image.new("RGB", (50, 50), "white"), (28, 28), True)
    with pytest.raises(NoInk, match=r"^image: no ink found"):
        centred_digit(np.full((30, 30), 255.0), (28, 28))


def test_arrays_name_themselves_and_come_back_as_uint8():
    x = array_to_input(np.full((8, 8), 3.4).tolist(), (8, 8))
    assert x.dtype == np.uint8 and np.all(x == 3)
    with pytest.raises(BadArray, match=r"^array: not a rectangular array of numbers$"):
        array_to_input([["a"] * 8] * 8, (8, 8))
    with pytest.raises(BadArray, match=r"^array: expected an array of shape"):
        array_to_input([[0] * 8] * 7, (8, 8))


def test_resized_images_keep_black_black_and_come_back_as_uint8():
    half = Image.new("L", (56, 56), 0)
    ImageDraw.Draw(half).rectangle((28, 0, 55, 55), fill=255)
    x = image_to_input(_png(half.convert("RGB")), (28, 28), False)
    assert x.dtype == np.uint8 and np.all(x[:, :13] == 0) and np.all(x[:, 15:] == 255)


def test_a_thin_line_stays_one_pixel_thin():
    for grey, expected_shape in ((np.zeros((50, 120)), (1, 20)), (np.zeros((120, 50)), (20, 1))):
        if expected_shape[0] == 1:
            grey[25, 10:110] = 255.0
        else:
            grey[10:110, 25] = 255.0
        rows, cols = np.nonzero(centred_digit(grey, (28, 28)))
        assert (np.ptp(rows) + 1, np.ptp(cols) + 1) == expected_shape


def test_ink_at_exactly_a_tenth_of_the_range_counts():
    faint = np.full((40, 40), 255.0)
    faint[10:30, 18:22] = 255.0 - 25.5  # a contrast of exactly 10 %: ink
    assert centred_digit(faint, (28, 28)).max() == 255
    dot = np.zeros((60, 60))
    dot[20:40, 28:32] = 255.0
    dot[55, 55] = 25.5  # exactly a tenth of the brightest: part of the digit's box
    rows, _ = np.nonzero(centred_digit(dot, (28, 28)) >= 128)
    assert np.ptp(rows) + 1 < 15  # the bar shares the 20-pixel box with the far dot


def test_a_digit_of_a_small_set_fills_its_whole_field():
    """scikit-learn's 8x8 digits fill their bitmap: a solid square comes out as the whole
    field, its first row and column included."""
    grey = np.full((40, 40), 255.0)
    grey[5:35, 5:35] = 0
    assert np.array_equal(centred_digit(grey, (8, 8)), np.full((8, 8), 255, np.uint8))


def test_a_digit_already_in_mnists_form_keeps_its_place_and_its_grey_levels():
    """A 20-pixel-tall patch whose mass centre is where MNIST puts it comes back unchanged,
    its anti-aliased grey levels included (nothing rescaled but to the brightest ink)."""
    patch = np.full((20, 12), 128.0)
    patch[:, [0, -1]] = patch[[0, -1], :] = 255  # symmetric: its mass centre is its middle
    field = np.zeros((28, 28))
    field[4:24, 8:20] = patch  # mass centre (13.5, 13.5): rows 4.., columns 8.. as MNIST's
    assert np.array_equal(centred_digit(field, (28, 28)), field.astype(np.uint8))


def test_resizing_adds_no_ringing_at_an_edge():
    """Other datasets' images are resized bilinearly (widened when reducing): no grey level
    beyond the two sides of a sharp edge, as a bicubic or Lanczos kernel would give."""
    edge = np.full((90, 90), 50, np.uint8)
    edge[:, 45:] = 200
    x = image_to_input(_png(Image.fromarray(edge).convert("RGB")), (28, 28), False)
    assert x.min() == 50 and x.max() == 200 and len(np.unique(x)) > 2


def test_an_uploads_name_reaches_every_message():
    with pytest.raises(NoInk, match=r"^scan\.png: no ink found"):
        image_to_input(_png(Image.new("RGB", (40, 40), "white")), (28, 28), True, "scan.png")


def test_the_field_is_read_from_the_outermost_ring_of_pixels():
    from mnistlab.data.images import _border

    grey = np.arange(20).reshape(4, 5)  # rows 0-4, 5-9, 10-14, 15-19
    top, bottom, left, right = [0, 1, 2, 3, 4], [15, 16, 17, 18, 19], [0, 5, 10, 15], [4, 9, 14, 19]
    assert sorted(_border(grey)) == sorted(top + bottom + left + right)
