import gzip

import numpy as np
import pytest

from mnistlab.core.errors import DatasetError
from mnistlab.data.idx import read_idx, write_idx


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_roundtrip_plain_and_gzipped(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    write_idx(tmp_path / name, images)
    back = read_idx(tmp_path / name, expected_ndim=3)
    assert back.dtype == np.uint8 and np.array_equal(back, images)


def test_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + bytes(100))
    with pytest.raises(DatasetError,
                       match=r"x-idx3-ubyte: not an IDX file \(magic number 12340803, expected"):
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


@pytest.mark.parametrize("header, message", [
    (b"\x01\x00\x08\x01", "not an IDX file (magic number 01000801, expected 0000 08 0N)"),
    (b"\x00\x01\x08\x01", "not an IDX file (magic number 00010801, expected 0000 08 0N)"),
    (b"\x00\x00\x07\x01", "not an IDX file (magic number 00000701, expected 0000 08 0N)"),
    (b"\x00\x00\x08", "too short to be an IDX file (3 bytes)"),
    (b"\x00\x00\x08\x00", "header declares shape () (1 bytes) but the file holds 0 bytes: "
                         "truncated or corrupt"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x01", "header truncated"),
])
def test_each_byte_of_the_magic_number_and_the_header_is_checked(tmp_path, header, message):
    path = tmp_path / "h-idx"
    path.write_bytes(header)
    with pytest.raises(DatasetError) as info:
        read_idx(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_zero_dimensional_idx_file_holds_one_value(tmp_path):
    path = tmp_path / "scalar-idx"
    path.write_bytes(b"\x00\x00\x08\x00\x07")
    assert read_idx(path).tolist() == 7


def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(DatasetError) as info:
        read_idx(tmp_path / "nothing-idx")
    assert str(info.value) == f"{tmp_path / 'nothing-idx'}: file not found"
    with pytest.raises(DatasetError) as info:
        read_idx(tmp_path)  # a folder
    assert str(info.value) == f"{tmp_path}: cannot read (Is a directory)"


def test_a_wrong_digest_names_the_file_and_what_to_do(tmp_path):
    path = tmp_path / "d-idx.gz"
    write_idx(path, np.arange(6, dtype=np.uint8))
    with pytest.raises(DatasetError) as info:
        read_idx(path, sha256=["0" * 64])
    assert str(info.value) == (
        f"{path}: neither the file nor its decompressed content has the published SHA-256: a "
        "corrupted or altered copy (delete it; a named dataset is then downloaded again)")


def test_only_idx_dtypes_can_be_written(tmp_path):
    with pytest.raises(ValueError, match="dtype uint16 cannot be stored in IDX"):
        write_idx(tmp_path / "x-idx", np.zeros(3, np.uint16))


def test_what_is_read_is_a_writable_array_of_its_own(tmp_path):
    path = tmp_path / "w-idx"
    write_idx(path, np.arange(12, dtype=np.uint8).reshape(3, 4))
    array = read_idx(path)
    assert array.flags.writeable and array.flags.owndata
    array[0, 0] = 99  # a user may edit what was read
