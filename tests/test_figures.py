"""The report's figure helpers, on real matplotlib figures."""

import numpy as np
import pytest

from mnistlab.report.figures import image_grid


def test_an_image_grid_tiles_every_image_under_its_title_and_leaves_none_empty():
    images = [np.full((4, 6), value, dtype=np.float32) for value in (10, 20, 30)]
    images.insert(2, None)  # a row shorter than the others
    fig = image_grid(images, ["a", "b", "", "d"], cols=2, colors=["red", "green", "k", "blue"],
                     row_labels=["first", "second"])
    (ax,) = fig.axes
    canvas = ax.images[0].get_array()
    shown = [v for v in np.unique(canvas.compressed())]
    assert shown == [10, 20, 30]  # every image, nothing else: the gaps are masked (white)
    assert canvas.count() == 3 * 4 * 6
    rows, cols = np.nonzero(~np.ma.getmaskarray(canvas))
    # b right of a on the first row; on the second, the left tile stays empty, d right of it
    at = {v: (rows[canvas.compressed() == v].min(), cols[canvas.compressed() == v].min())
          for v in shown}
    assert at[10][0] == at[20][0] < at[30][0] and at[10][1] < at[20][1] == at[30][1]
    texts = {t.get_text(): t for t in ax.texts}
    assert set(texts) == {"a", "b", "d", "first", "second"}
    assert texts["d"].get_color() == "blue"
    # each title sits above its image (the y axis points down), inside the figure
    assert texts["d"].get_position()[1] < at[30][0] and texts["a"].get_position()[1] >= -0.5


def test_an_image_grid_of_no_image_says_so():
    with pytest.raises(ValueError, match="no image"):
        image_grid([None], ["x"], cols=1)
