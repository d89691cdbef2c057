"""Image preprocessing that no library offers in this form."""

from __future__ import annotations

import numpy as np


def deskew(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Straighten each image by its second moments and centre it on its centre of mass.

    The classic MNIST preprocessing (LeCun et al. list it among the best-performing ones):
    the shear ``col += alpha * (row - centre)`` with ``alpha = cov(row, col) / var(row)`` of the
    ink makes a slanted stroke upright, so that slanted and upright writings of a digit become
    neighbours. Written by hand because scikit-image and scipy have the resampling
    (`scipy.ndimage.map_coordinates`, used here on a whole chunk of images at once) but not
    this moment-based transform.

    Parameters
    ----------
    images : ndarray of shape (n, height, width)
        Grey levels, any real dtype; ink is the bright part.
    chunk : int
        Images resampled per call, to bound the coordinate arrays' memory.

    Returns
    -------
    ndarray of shape (n, height, width), float32, on the input's scale.
    """
    from scipy import ndimage

    if images.ndim != 3:
        raise ValueError(f"deskew needs images of shape (n, height, width), got {images.shape}")
    n, h, w = images.shape
    out = np.empty((n, h, w), dtype=np.float32)
    rows = np.arange(h, dtype=np.float32)[None, :, None]
    cols = np.arange(w, dtype=np.float32)[None, None, :]
    for start in range(0, n, chunk):
        x = images[start:start + chunk].astype(np.float32)
        m = len(x)
        mass = np.maximum(x.sum(axis=(1, 2)), 1e-6)[:, None, None]  # a blank image stays blank
        centre_r = (x * rows).sum(axis=(1, 2), keepdims=True) / mass
        centre_c = (x * cols).sum(axis=(1, 2), keepdims=True) / mass
        var_r = (x * (rows - centre_r) ** 2).sum(axis=(1, 2), keepdims=True) / mass
        cov = (x * (rows - centre_r) * (cols - centre_c)).sum(axis=(1, 2), keepdims=True) / mass
        alpha = cov / np.maximum(var_r, 1e-6)
        # output pixel (r, c) reads the input at (r + shift_r, c + alpha (r - mid_r) + shift_c):
        # centred on the centre of mass, sheared about the middle row.
        mid_r, mid_c = (h - 1) / 2, (w - 1) / 2
        src_r = np.broadcast_to(rows + (centre_r - mid_r), (m, h, w))
        src_c = np.broadcast_to(cols + alpha * (rows - mid_r) + (centre_c - mid_c), (m, h, w))
        src_i = np.broadcast_to(np.arange(m, dtype=np.float32)[:, None, None], (m, h, w))
        out[start:start + m] = ndimage.map_coordinates(x, [src_i, src_r, src_c], order=1,
                                                       mode="constant", cval=0.0)
    return out
