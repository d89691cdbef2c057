import gzip

import numpy as np
import pytest

from mnistlab.errors import DatasetError
from mnistlab.idx import read_idx, write_idx


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_roundtrip_plain_and_gzipped(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    write_idx(tmp_path / name, images)
    back = read_idx(tmp_path / name, expected_ndim=3)
    assert back.dtype == np.uint8 and np.array_equal(back, images)


def test_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + bytes(100))
    with pytest.raises(DatasetError, match=r"x-idx3-ubyte: not an IDX file \(magic number 12340803"):
        read_idx(path)


def test_truncated_body_is_detected(tmp_path):
    path = tmp_path / "t-idx3-ubyte"
    write_idx(path, np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="declares shape \\(10, 28, 28\\).*truncated"):
        read_idx(path)


def test_wrong_number_of_dimensions(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.zeros(10, np.uint8))
    with pytest.raises(DatasetError, match="has 1 dimensions, expected 3"):
        read_idx(path, expected_ndim=3)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "t-idx3-ubyte.gz"
    payload = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 100]) + bytes(100))
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_big_endian_types_are_read_natively(tmp_path):
    values = np.arange(6, dtype=np.int32).reshape(2, 3) - 3
    write_idx(tmp_path / "i", values)
    assert np.array_equal(read_idx(tmp_path / "i"), values)
