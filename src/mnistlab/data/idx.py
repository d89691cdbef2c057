"""Validated reader for the IDX format (the files MNIST, Fashion-MNIST and KMNIST ship as).

Hand-written because the format is 20 lines of spec and no maintained library validates it:
``idx2numpy`` trusts the header, and a truncated download would then give a silently short array.
Every check here raises :class:`~mnistlab.core.errors.DatasetError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Collection
from pathlib import Path

import numpy as np

from ..core.errors import DatasetError

# Third byte of the magic number -> element dtype (big-endian on disk).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path, sha256: Collection[str] = ()) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None
    data = raw
    if raw[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    # A repackager recompresses (Debian's Fashion-MNIST does), so the content's digest is the
    # one that identifies the data; the file's own digest serves where only that is published.
    if sha256 and not (hashlib.sha256(data).hexdigest() in sha256
                       or (raw is not data and hashlib.sha256(raw).hexdigest() in sha256)):
        raise DatasetError(f"{path}: neither the file nor its decompressed content has the "
                           "published SHA-256: a corrupted or altered copy (delete it; a named "
                           "dataset is then downloaded again)")
    return data


def read_idx(path: str | Path, *, expected_ndim: int | None = None,
             sha256: Collection[str] = ()) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array.

    Parameters
    ----------
    path : str or Path
        The file, e.g. ``train-images-idx3-ubyte.gz``.
    expected_ndim : int, optional
        Number of dimensions the file must declare (3 for images, 1 for labels).
    sha256 : collection of str, optional
        Known-good SHA-256 digests: when given, the digest of the file as stored or of its
        decompressed content must be one of them.

    Returns
    -------
    numpy.ndarray
        Native-endian array with the shape the header declares.

    Raises
    ------
    DatasetError
        Bad magic number, unexpected number of dimensions, a body whose length does not match
        the header (truncated or padded file), or no digest among ``sha256``.
    """
    path = Path(path)
    data = _read_bytes(path, sha256)
    if len(data) < 4:
        raise DatasetError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES:
        raise DatasetError(
            f"{path}: not an IDX file (magic number {data[:4].hex()}, expected 0000 08 0N)"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise DatasetError(f"{path}: IDX file has {ndim} dimensions, expected {expected_ndim}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DatasetError(f"{path}: header truncated")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = len(data) - header_len
    if body != expected:
        raise DatasetError(
            f"{path}: header declares shape {shape} ({expected} bytes) but the file holds "
            f"{body} bytes: truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file; gzipped when ``path`` ends in ``.gz`` (or ``compress``)."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    codes = {v.newbyteorder("=").str: k for k, v in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("=").str)
    if code is None:
        raise ValueError(f"dtype {array.dtype} cannot be stored in IDX")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = array.astype(_IDX_DTYPES[code], copy=False).tobytes()
    payload = header + body
    if compress or (compress is None and path.suffix == ".gz"):
        payload = gzip.compress(payload, compresslevel=6)
    path.write_bytes(payload)
