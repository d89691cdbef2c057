"""Property-based tests of the parsers that take users' files: any input either loads exactly
the arrays that were written or fails with the one-line DatasetError, never anything else."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mnistlab.core.errors import DatasetError
from mnistlab.data.datasets import load_dataset
from mnistlab.data.idx import read_idx, write_idx

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
IDX_DTYPES = [np.uint8, np.int8, np.dtype(">i2"), np.dtype(">i4"), np.dtype(">f4"),
              np.dtype(">f8")]


@SETTINGS
@given(array=hnp.arrays(st.sampled_from(IDX_DTYPES),
                        hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
                        elements={"allow_nan": False}),
       gz=st.booleans())
def test_idx_round_trip_is_exact(tmp_path, array, gz):
    path = tmp_path / ("a-idx" + (".gz" if gz else ""))
    write_idx(path, array)
    back = read_idx(path)
    assert back.shape == array.shape and back.dtype.kind == array.dtype.kind
    assert np.array_equal(back, array)


@SETTINGS
@given(payload=st.binary(max_size=300), gz=st.booleans())
def test_any_bytes_are_an_array_or_a_dataset_error(tmp_path, payload, gz):
    path = tmp_path / ("b-idx" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(payload) if gz else payload)
    try:
        result = read_idx(path)
    except DatasetError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(result, np.ndarray)


@SETTINGS
@given(data=st.data())
def test_a_damaged_idx_file_is_never_more_than_a_dataset_error(tmp_path, data):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "c-idx"
    write_idx(path, array)
    raw = bytearray(path.read_bytes())
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)),
                               max_size=3))
    for where, mask in flips:
        raw[where] ^= mask
    path.write_bytes(bytes(raw[:cut]))
    try:
        back = read_idx(path, expected_ndim=3)
    except DatasetError:
        return
    if cut == len(raw) and all(where >= 16 for where, _ in flips):  # only pixels changed
        assert back.shape == array.shape
    else:
        assert back.ndim == 3


SPLITS = ("x_train", "y_train", "x_test", "y_test")


@SETTINGS
@given(arrays=st.fixed_dictionaries({
    "x_train": hnp.arrays(st.sampled_from([np.uint8, np.int32, np.float32]),
                          st.sampled_from([(6, 4, 4), (6, 16), (6, 4, 4, 1), (0, 4, 4)])),
    "y_train": hnp.arrays(st.sampled_from([np.int64, np.uint8, np.float32]),
                          st.sampled_from([(6,), (6, 1), (6, 3), (5,)]),
                          elements=st.integers(0, 3)),
    "x_test": hnp.arrays(np.uint8, st.sampled_from([(3, 4, 4), (3, 5, 4)])),
    "y_test": hnp.arrays(np.int64, st.sampled_from([(3,), (2,)]), elements=st.integers(0, 4)),
}), drop=st.sampled_from([None, *SPLITS]))
def test_npz_loads_what_was_written_or_fails_in_one_line(tmp_path, arrays, drop):
    path = tmp_path / "d.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if k != drop})
    try:
        data = load_dataset(f"npz:{path}")
    except DatasetError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert drop is None
    x_train = arrays["x_train"]
    assert np.array_equal(data.x_train, x_train.reshape(data.x_train.shape))
    assert np.array_equal(data.x_test, arrays["x_test"])
    assert [data.class_names[i] for i in data.y_train] == [
        str(int(v)) for v in arrays["y_train"].reshape(-1)]
    assert [data.class_names[i] for i in data.y_test] == [
        str(int(v)) for v in arrays["y_test"]]


@pytest.mark.parametrize("payload", [b"", b"PK\x03\x04", b"\x93NUMPY", b"\x80\x04\x95pickle"])
def test_npz_that_is_not_an_archive_is_one_line(tmp_path, payload):
    path = tmp_path / "bad.npz"
    path.write_bytes(payload)
    with pytest.raises(DatasetError, match="bad.npz"):
        load_dataset(f"npz:{path}")


CLASS_NAMES = st.text("abcxyz_-", min_size=1, max_size=5)
# Weighted so that about half of the folders are good ones.
ODDITIES = [None] * 12 + ["other size", "garbage", "stray text file"]


@SETTINGS
@given(data=st.data())
def test_an_image_folder_loads_what_was_written_or_fails_in_one_line(tmp_path_factory, data):
    """Random class folders of PNG/BMP images (grey, colour, transparent), some of another
    size, some not images at all, stray non-image files: the loader returns exactly the grey
    pixels of every image in sorted order, or one DatasetError naming a path of the folder."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    n_classes = data.draw(st.sampled_from([2, 3, 1]))  # the first is where shrinking goes
    classes = data.draw(st.lists(CLASS_NAMES, min_size=n_classes, max_size=n_classes,
                                 unique=True))
    mode = data.draw(st.sampled_from(["L", "RGB", "RGBA"]))
    suffix = ".png" if mode == "RGBA" else data.draw(st.sampled_from([".png", ".bmp"]))
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    expected = {"train": ([], []), "test": ([], [])}
    broken = False
    for split in ("train", "test"):
        for index, name in enumerate(sorted(classes)):
            folder = root / split / name
            if split == "test" and data.draw(st.sampled_from([False, False, True])):
                continue  # a class the test split lacks: allowed
            folder.mkdir(parents=True)
            written = 0
            for i in range(data.draw(st.sampled_from([1, 2, 1, 2, 0]))):
                oddity = data.draw(st.sampled_from(ODDITIES))
                path = folder / f"{i}{suffix}"
                if oddity == "garbage":
                    path.write_bytes(b"\x89PNG\r\n not really")
                    broken = True
                    continue
                if oddity == "stray text file":
                    (folder / f"{i}.txt").write_text("notes")
                    continue
                shape = (5, 4) if oddity == "other size" else (4, 4)
                broken |= oddity == "other size"
                pixels = data.draw(hnp.arrays(np.uint8, shape + channels))
                Image.fromarray(pixels, mode).save(path)
                with Image.open(path) as img:
                    expected[split][0].append(np.asarray(img.convert("L")))
                expected[split][1].append(index)
                written += 1
            broken |= split == "train" and written == 0  # a class needs training images
    try:
        loaded = load_dataset(f"folder:{root}")
    except DatasetError as exc:
        assert str(root) in str(exc) and "\n" not in str(exc)
        assert broken or len(classes) < 2 or not expected["test"][0]  # only a bad folder fails
        event("DatasetError")
        return
    event("loaded")
    assert not broken and len(classes) >= 2 and expected["test"][0]
    assert loaded.class_names == sorted(classes)
    for split, x, y in (("train", loaded.x_train, loaded.y_train),
                        ("test", loaded.x_test, loaded.y_test)):
        assert np.array_equal(x, np.stack(expected[split][0]))
        assert y.tolist() == expected[split][1]
