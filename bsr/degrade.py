"""The literature's degradations: modcrop, MATLAB-exact bicubic imresize, BI and BD.

Conventions (see the paper notes): MATLAB `imresize(..., 'bicubic')` uses the cubic kernel with a = -0.5,
widens it by 1/s when shrinking (antialiasing), mirrors at the borders, gives ceil(in * s) pixels, and resizes
one dimension at a time; on uint8 input it rounds half away from zero to uint8 after each pass. BD blurs with a
7x7 Gaussian (sigma 1.6, replicate borders), rounds to uint8, then keeps every s-th pixel starting at s // 2.

Which path each caller takes: BI (`degrade`) and the bicubic baseline (`upscale_bicubic`) mirror MATLAB steps on
uint8 images (`imread` -> `imresize` in every SR preparation and evaluation script), so they pass uint8 and get
MATLAB's bytes. Float input (no caller in the pipeline; kept for tests and analysis) is MATLAB's double path.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.ndimage import correlate1d

from bsr import BsrError
from bsr.files import atomic_path
from bsr.images import list_images, read_image, write_image

KINDS = ("BI", "BD")
BD_KERNEL_SIZE = 7
BD_SIGMA = 1.6


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so that height and width are multiples of `scale`."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Clip and round a float image to uint8 the way MATLAB converts double to uint8.

    floor(x + 0.5) is round-half-away-from-zero for x >= 0, and every x < 0 clips to 0 either way.
    """
    y = np.add(x, 0.5)
    np.floor(y, out=y)
    np.clip(y, 0, 255, out=y)
    return y.astype(np.uint8)


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


@lru_cache(maxsize=64)
def resize_weights(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """The (out_len, in_len) float64 matrix of MATLAB's `contributions`, with mirrored borders folded in."""
    kernel_width = 4.0
    if scale < 1 and antialias:
        def kernel(x):
            return scale * cubic(scale * x)
        kernel_width /= scale
    else:
        kernel = cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    ind = left[:, None] + np.arange(taps)[None, :]
    weights = kernel(u[:, None] - ind)
    weights /= weights.sum(axis=1, keepdims=True)
    # MATLAB mirrors the index sequence 1..n, n..1 (symmetric padding, edge pixel repeated).
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    cols = mirror[(ind.astype(np.int64) - 1) % (2 * in_len)]
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps), cols.ravel()), weights.ravel())
    return matrix


def imresize(img: np.ndarray, scale: float | None = None, output_shape: tuple[int, int] | None = None,
             antialias: bool = True) -> np.ndarray:
    """MATLAB `imresize(img, scale, 'bicubic')` on a (H, W) or (H, W, C) array, equal to MATLAB's output.

    MATLAB resizes one dimension at a time, the one with the smaller scale first (rows first on ties), and
    returns the input's class after each pass. So uint8 input (what `imread` gives every SR preparation and
    evaluation script) is rounded half away from zero and clipped to [0, 255] after each pass, and the second
    pass reads those bytes: this gives MATLAB's bytes. Float input runs both passes in float64 with no
    rounding and gives float64, MATLAB's double path. Each pass is a banded matrix product.
    """
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale or output_shape")
    h, w = img.shape[:2]
    if scale is not None:
        scales = (float(scale), float(scale))
        out_shape = (math.ceil(h * scale), math.ceil(w * scale))
    else:
        out_shape = tuple(int(n) for n in output_shape)
        scales = (out_shape[0] / h, out_shape[1] / w)
    # Channels first, so that both passes are matrix products over contiguous rows: W_h @ x @ W_w^T.
    out = np.moveaxis(img, -1, 0) if img.ndim == 3 else img
    for dim in sorted((0, 1), key=lambda d: scales[d]):
        out = resize_axis(out.astype(np.float64), dim,
                          resize_blocks(img.shape[dim], out_shape[dim], scales[dim], antialias))
        if img.dtype == np.uint8:
            out = to_uint8(out)  # on the contiguous channels-first array: far faster than on a transposed view
    return np.ascontiguousarray(np.moveaxis(out, 0, -1) if img.ndim == 3 else out)


BLOCK_ROWS = 32


@lru_cache(maxsize=64)
def resize_blocks(in_len: int, out_len: int, scale: float, antialias: bool = True):
    """The weight matrix cut into bands of BLOCK_ROWS output rows, each with the input columns it touches.

    The matrix is banded (a few taps per output pixel, mirrored at the borders), so multiplying band by
    band skips the zeros: several times fewer operations than the dense product, with the same sums.
    """
    weights = resize_weights(in_len, out_len, scale, antialias)
    blocks = []
    for start in range(0, out_len, BLOCK_ROWS):
        band = weights[start:start + BLOCK_ROWS]
        cols = np.flatnonzero(band.any(axis=0))
        blocks.append((start, start + len(band), cols[0], cols[-1] + 1,
                       np.ascontiguousarray(band[:, cols[0]:cols[-1] + 1])))
    return out_len, blocks


def resize_axis(x: np.ndarray, dim: int, plan) -> np.ndarray:
    """Resize the rows (dim 0) or columns (dim 1) of the last two axes of `x` with a `resize_blocks` plan."""
    out_len, blocks = plan
    shape = list(x.shape)
    shape[-2 + dim] = out_len
    out = np.empty(shape)
    for r0, r1, c0, c1, band in blocks:
        if dim == 0:
            np.matmul(band, x[..., c0:c1, :], out=out[..., r0:r1, :])
        else:
            np.matmul(x[..., :, c0:c1], band.T, out=out[..., :, r0:r1])
    return out


@lru_cache(maxsize=4)
def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """The 1-D factor of MATLAB's fspecial('gaussian', size, sigma); their outer product is the 2-D kernel."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


def blur_down(img: np.ndarray, scale: int) -> np.ndarray:
    """BD: 7x7 Gaussian blur (sigma 1.6, replicate borders) rounded to uint8, then keep pixels s//2, s//2+s, ..."""
    if scale % 2 == 0:
        raise BsrError(f"BD degradation needs an odd scale (got {scale}): the kept pixel must be a centre pixel")
    k = gaussian_kernel_1d(BD_KERNEL_SIZE, BD_SIGMA)
    blurred = correlate1d(img.astype(np.float64), k, axis=0, mode="nearest")
    blurred = correlate1d(blurred, k, axis=1, mode="nearest")
    start = scale // 2
    return to_uint8(blurred)[start::scale, start::scale]


def check_size(img: np.ndarray, scale: int, name: str) -> None:
    h, w = img.shape[:2]
    if h < scale or w < scale:
        raise BsrError(f"{name}: image is {w}x{h} pixels, smaller than scale {scale}")


def degrade(hr: np.ndarray, scale: int, kind: str, name: str = "image") -> np.ndarray:
    """The LR input for a uint8 HR image: modcrop, then BI (MATLAB's uint8 bicubic down, byte for byte) or BD
    (blur, then subsample)."""
    if kind not in KINDS:
        raise BsrError(f"unknown degradation kind {kind!r}: expected one of {', '.join(KINDS)}")
    check_size(hr, scale, name)
    hr = modcrop(hr, scale)
    if kind == "BI":
        return imresize(hr, 1 / scale)
    return blur_down(hr, scale)


def upscale_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline's SR image: MATLAB's `imresize(LR, scale, 'bicubic')` on the uint8 LR."""
    return imresize(lr, scale)


def degrade_dir(hr_dir, out_dir, scale: int, kind: str) -> int:
    """Write the LR image of every HR image in `hr_dir` to `out_dir` as PNG, under the same stem.

    The directory appears only when every image is done: a failure leaves no partial output.
    """
    files = list_images(hr_dir)
    with atomic_path(out_dir, inputs=[hr_dir], folder=True, writer="degrade") as tmp:
        tmp.mkdir()
        for path in files:
            write_image(tmp / f"{path.stem}.png", degrade(read_image(path), scale, kind, name=str(path)))
    return len(files)
