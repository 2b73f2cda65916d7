"""Training patches: RFS (Random Filter Sampling, balanced over PIC intervals) or uniform random crops.

RFS, as the paper describes it: pick M random LR images, crop one random patch from each, compute its PIC,
accept it only if its PIC interval still has room in the batch quota, and repeat until the quota is full.
PICs come from summed-area tables, so a candidate costs O(1) whatever the patch size.

Interval edges: K evenly spaced intervals between two quantiles of the PIC of uniform random crops of the
training set (default: the minimum and the 99.5th percentile, so that the top interval is not a handful of
outliers); PICs beyond the ends fall into the first or last interval.
M (`candidates`) changes how many random numbers a round consumes, not the distribution: candidates are
accepted in draw order, exactly as if they were drawn one at a time.
Fallback: after `max_rounds` rounds of M candidates, the batch's empty slots are filled with uniform random
crops and counted in `fallback_patches`, which training logs.
Augmentation: one of the 8 flips/90-degree rotations per patch. Everything is drawn from one seeded
numpy Generator, whose state is part of a checkpoint.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np

from bsr import BsrError
from bsr.images import as_rgb, list_images, read_image
from bsr.pic import all_crop_pics, load_table, summed_area_table

EDGE_SAMPLE_SIZE = 200_000


@dataclass
class TrainingSet:
    """LR images, their HR images (None when only PICs are needed) and their PIC summed-area tables."""
    lr: list[np.ndarray]
    hr: list[np.ndarray] | None
    tables: list[np.ndarray]
    scale: int
    names: list[str]


def load_training_set(hr_dirs, lr_dirs, scale: int, reduce: str = "sum", table_dirs=None) -> TrainingSet:
    """Pair HR and LR images by file stem; use saved PIC tables when `table_dirs` is given, else compute them."""
    lr, hr, tables, names = [], [], [], []
    table_dirs = table_dirs or [None] * len(lr_dirs)
    if not len(hr_dirs) == len(lr_dirs) == len(table_dirs):
        raise BsrError("the training HR, LR and PIC directory lists must have the same length")
    for hr_dir, lr_dir, table_dir in zip(hr_dirs, lr_dirs, table_dirs):
        hr_files = {p.stem: p for p in list_images(hr_dir)}
        for lr_path in list_images(lr_dir):
            if lr_path.stem not in hr_files:
                raise BsrError(f"{lr_path}: no HR image with stem {lr_path.stem!r} in {hr_dir}")
            lr_img, hr_img = as_rgb(read_image(lr_path)), as_rgb(read_image(hr_files[lr_path.stem]))
            h, w = lr_img.shape[:2]
            if hr_img.shape[0] < h * scale or hr_img.shape[1] < w * scale:
                raise BsrError(f"{hr_files[lr_path.stem]}: HR is smaller than {scale} x its LR image {lr_path}")
            lr.append(lr_img)
            hr.append(hr_img[: h * scale, : w * scale])
            tables.append(summed_area_table(lr_img, reduce) if table_dir is None
                          else load_table(table_dir, lr_path.stem, reduce, lr_img.shape))
            names.append(str(lr_path))
    return TrainingSet(lr, hr, tables, scale, names)


def quota_vector(batch: int, weights) -> np.ndarray:
    """Patches per interval: `batch` split in proportion to `weights`, remainders to the largest fractions."""
    weights = np.asarray(weights, dtype=np.float64)
    exact = batch * weights / weights.sum()
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: batch - quota.sum()]] += 1
    return quota


def without_small_images(data: TrainingSet, patch: int) -> tuple[TrainingSet, list[str]]:
    """Drop LR images smaller than the patch (T91 has some at x3/x4), saying so on stderr."""
    keep = [i for i, t in enumerate(data.tables) if min(t.shape) + 1 >= patch]
    excluded = [name for i, name in enumerate(data.names) if i not in set(keep)]
    if not keep:
        raise BsrError(f"every LR training image is smaller than the {patch}x{patch} patch")
    if excluded:
        print(f"bsr: {len(excluded)} LR training images are smaller than {patch}x{patch} and are not sampled: "
              f"{', '.join(excluded[:3])}{', ...' if len(excluded) > 3 else ''}", file=sys.stderr)

    def pick(items):
        return None if items is None else [items[i] for i in keep]

    return TrainingSet(pick(data.lr), pick(data.hr), pick(data.tables), data.scale, pick(data.names)), excluded


class PatchSampler:
    """Draws batches of (LR, HR) uint8 patch pairs, RFS-balanced or uniform, reproducibly from a seed."""

    def __init__(self, data: TrainingSet, patch: int, batch: int, seed: int, rfs: bool = True,
                 intervals: int = 16, candidates: int = 256, max_rounds: int = 100, quota_weights=None,
                 range_quantiles=(0.0, 0.995)):
        self.patch, self.batch, self.rfs = patch, batch, rfs
        self.candidates, self.max_rounds = candidates, max_rounds
        data, self.excluded = without_small_images(data, patch)
        self.data = data
        heights = np.array([t.shape[0] + 1 for t in data.tables])
        widths = np.array([t.shape[1] + 1 for t in data.tables])
        self.positions = np.stack([heights - patch + 1, widths - patch + 1], axis=1)
        # All tables in one flat array, so that a round's PICs are a few vectorised gathers.
        self.table_width = widths - 1
        sizes = np.array([t.size for t in data.tables])
        self.table_offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.flat_tables = np.concatenate([t.ravel() for t in data.tables])
        self.quota = quota_vector(batch, np.ones(intervals) if quota_weights is None else quota_weights)
        if len(self.quota) != intervals:
            raise BsrError(f"sampling.quota has {len(self.quota)} weights for {intervals} intervals")
        self.edges = self._interval_edges(intervals, range_quantiles, seed)
        # The interval of every crop position, so that a candidate costs one uint8 lookup.
        self.position_offset = np.concatenate([[0], np.cumsum(self.positions.prod(axis=1))[:-1]])
        self.flat_intervals = np.concatenate(
            [self.interval(all_crop_pics(t, patch)).astype(np.uint8).ravel() for t in data.tables])
        self.rng = np.random.default_rng(seed)
        self.fallback_patches = 0

    def _random_crops(self, rng, n):
        u = rng.random((3, n))
        image = (u[0] * len(self.positions)).astype(np.int64)
        y = (u[1] * self.positions[image, 0]).astype(np.int64)
        x = (u[2] * self.positions[image, 1]).astype(np.int64)
        return image, y, x

    def pics(self, image, y, x) -> np.ndarray:
        """PIC of crops from the summed-area tables, gathered for many images at once."""
        offset, width, inner = self.table_offset[image], self.table_width[image], self.patch - 2
        t = self.flat_tables

        def at(r, c):
            return t[offset + r * width + c]

        return at(y + inner, x + inner) - at(y, x + inner) - at(y + inner, x) + at(y, x)

    def intervals_of(self, image, y, x) -> np.ndarray:
        return self.flat_intervals[self.position_offset[image] + y * self.positions[image, 1] + x].astype(np.int64)

    def _interval_edges(self, intervals, range_quantiles, seed):
        # A separate generator, so that the edges do not depend on how many batches were drawn.
        crops = self._random_crops(np.random.default_rng([seed, 1]), EDGE_SAMPLE_SIZE)
        lo, hi = np.quantile(self.pics(*crops), range_quantiles)
        if hi <= lo:
            raise BsrError(f"the training set's PIC range is empty ({lo} to {hi}): the images are flat")
        return np.linspace(lo, hi, intervals + 1)

    def interval(self, pics) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges, pics, side="right") - 1, 0, len(self.quota) - 1)

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "fallback_patches": self.fallback_patches}

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.fallback_patches = state["fallback_patches"]

    def choose_crops(self):
        """One batch of crop positions: (image, y, x, interval) arrays of length `batch`."""
        if not self.rfs:
            image, y, x = self._random_crops(self.rng, self.batch)
            return image, y, x, self.intervals_of(image, y, x)
        room = self.quota.copy()
        chosen = []
        for _ in range(self.max_rounds):
            image, y, x = self._random_crops(self.rng, self.candidates)
            bins = self.intervals_of(image, y, x)
            # Accept candidates in draw order while their interval has room: rank each within its interval.
            order = np.argsort(bins, kind="stable")
            first = np.searchsorted(bins[order], bins[order], side="left")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order)) - first
            accept = rank < room[bins]
            room -= np.bincount(bins[accept], minlength=len(room))
            chosen.append((image[accept], y[accept], x[accept], bins[accept]))
            if not room.any():
                break
        missing = int(room.sum())
        if missing:
            self.fallback_patches += missing
            image, y, x = self._random_crops(self.rng, missing)
            chosen.append((image, y, x, self.intervals_of(image, y, x)))
        return tuple(np.concatenate(parts) for parts in zip(*chosen))

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """(LR, HR) uint8 arrays of shape (B, p, p, 3) and (B, p·s, p·s, 3), augmented."""
        image, y, x, _ = self.choose_crops()
        s, p = self.data.scale, self.patch
        lr = np.empty((self.batch, p, p, 3), np.uint8)
        hr = np.empty((self.batch, p * s, p * s, 3), np.uint8)
        transforms = self.rng.integers(8, size=self.batch)
        for i, (n, yy, xx, t) in enumerate(zip(image, y, x, transforms)):
            dihedral(self.data.lr[n][yy:yy + p, xx:xx + p], t, out=lr[i])
            dihedral(self.data.hr[n][yy * s:(yy + p) * s, xx * s:(xx + p) * s], t, out=hr[i])
        return lr, hr


_FLIP_CODES = (None, 0, 1, -1)  # none, upside down, left-right, both (a 180-degree rotation)


def dihedral(patch: np.ndarray, t: int, out: np.ndarray) -> np.ndarray:
    """Write the t-th of the 8 flips/90-degree rotations of a square patch into `out`.

    Element t is a transpose (bit 2) followed by one of four flips (bits 0-1); OpenCV copies these an order
    of magnitude faster than numpy copies a negatively strided or transposed uint8 view.
    """
    src = cv2.transpose(patch) if t & 4 else patch
    code = _FLIP_CODES[t & 3]
    if code is None:
        out[...] = src
    else:
        cv2.flip(src, code, dst=out)
    return out
