"""PIC (Picture Information Content) of LR patches, in O(1) per crop through summed-area tables.

PIC of a patch = the sum over its pixels of |Gx| + |Gy| (Sobel), reduced over colour channels by `sum`
(the slides' formula) or `max` (the paper text's per-pixel maximum over R, G, B).

Border rule, used by both the tables and the direct computation: a patch's gradient is taken only at pixels
whose whole 3x3 neighbourhood lies inside the patch (Sobel's 'valid' region). A crop's PIC therefore
depends on the crop alone, and equals a rectangle sum of the image's valid gradient map.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.ndimage import correlate1d

from bsr import BsrError
from bsr.files import atomic_path
from bsr.images import as_rgb, list_images, read_image

REDUCTIONS = ("sum", "max")
TABLE_INFO = "pic.json"
_SMOOTH = np.array([1, 2, 1], dtype=np.int64)
_DIFF = np.array([-1, 0, 1], dtype=np.int64)


def sobel_valid(img: np.ndarray, reduce: str = "sum") -> np.ndarray:
    """(H-2, W-2) int64 map of |Gx| + |Gy|, reduced over channels; the Sobel 'valid' region of `img`."""
    if reduce not in REDUCTIONS:
        raise BsrError(f"unknown PIC reduction {reduce!r}: expected one of {', '.join(REDUCTIONS)}")
    x = img.astype(np.int64)
    if x.ndim == 2:
        x = x[..., None]
    gx = correlate1d(correlate1d(x, _DIFF, axis=1), _SMOOTH, axis=0)[1:-1, 1:-1]
    gy = correlate1d(correlate1d(x, _DIFF, axis=0), _SMOOTH, axis=1)[1:-1, 1:-1]
    magnitude = np.abs(gx) + np.abs(gy)
    return magnitude.sum(axis=2) if reduce == "sum" else magnitude.max(axis=2)


def pic_direct(patch: np.ndarray, reduce: str = "sum") -> int:
    """The paper's literal PIC: Sobel on the patch itself, summed."""
    return int(sobel_valid(patch, reduce).sum())


def summed_area_table(img: np.ndarray, reduce: str = "sum") -> np.ndarray:
    """(H-1, W-1) int64 table T with T[i, j] = sum of the valid gradient map over rows < i, cols < j."""
    grad = sobel_valid(img, reduce)
    table = np.zeros((grad.shape[0] + 1, grad.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(grad, axis=0), axis=1, out=table[1:, 1:])
    return table


def pic_from_table(table: np.ndarray, y, x, size: int):
    """PIC of the size x size crops with top-left corners (y, x); scalars or arrays of equal shape."""
    inner = size - 2
    y2, x2 = np.add(y, inner), np.add(x, inner)
    return table[y2, x2] - table[y, x2] - table[y2, x] + table[y, x]


# The largest |Gx| + |Gy| of one pixel, summed over 3 channels: PICs of crops up to 592 x 592 fit in int32.
MAX_PIXEL_PIC = 3 * 2 * 4 * 255


def check_patch(size: int) -> None:
    if size < 3:
        raise BsrError(f"patch size {size}: a PIC patch needs at least 3x3 pixels (Sobel's valid region)")


def all_crop_pics(table: np.ndarray, size: int) -> np.ndarray:
    """PIC of every size x size crop of the image behind `table`, as an array of (H-size+1, W-size+1);
    int32 where every possible value fits (half the memory of int64 at DIV2K size)."""
    inner = size - 2
    t = table
    pics = t[inner:, inner:] - t[:-inner, inner:] - t[inner:, :-inner] + t[:-inner, :-inner]
    return pics.astype(np.int32) if inner * inner * MAX_PIXEL_PIC <= np.iinfo(np.int32).max else pics


def write_tables(lr_dir, out_dir, reduce: str = "sum") -> int:
    """Save one summed-area table per LR image as `<stem>.npy`, with `pic.json` naming the reduction.

    Tables describe the RGB image that training sees (a gray file as R = G = B).
    """
    files = list_images(lr_dir)
    with atomic_path(out_dir, inputs=[lr_dir], folder=True, writer="pic") as tmp:
        tmp.mkdir()
        for path in files:
            np.save(tmp / f"{path.stem}.npy", summed_area_table(as_rgb(read_image(path)), reduce))
        (tmp / TABLE_INFO).write_text(json.dumps({"reduce": reduce, "border": "sobel-valid"}) + "\n")
    return len(files)


def load_table(table_dir, stem: str, reduce: str, lr_shape: tuple[int, ...]) -> np.ndarray:
    """A saved table, checked against the reduction the caller expects and the LR image it belongs to."""
    table_dir = Path(table_dir)
    info_path = table_dir / TABLE_INFO
    if not info_path.is_file():
        raise BsrError(f"{table_dir}: no {TABLE_INFO}; not a directory written by `bsr pic`")
    info = json.loads(info_path.read_text())
    if info.get("reduce") != reduce:
        raise BsrError(f"{table_dir}: tables use PIC reduce={info.get('reduce')!r}, the config asks for {reduce!r}")
    path = table_dir / f"{stem}.npy"
    if not path.is_file():
        raise BsrError(f"{path}: missing PIC table for LR image {stem}")
    table = np.load(path)
    if table.shape != (lr_shape[0] - 1, lr_shape[1] - 1):
        raise BsrError(f"{path}: table shape {table.shape} does not fit LR image {stem} of shape {lr_shape[:2]}")
    return table
