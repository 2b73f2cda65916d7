"""Training patches: RFS (Random Filter Sampling, balanced over PIC intervals) or uniform random crops.

RFS, as the slides describe it: pick M random LR images, crop one random patch from each, compute its PIC,
accept it only if its PIC interval still has room in the batch quota, and repeat until the quota is full.
`rfs_images: fixed` is that reading: a batch's M images are drawn once and every round crops them again.
`rfs_images: per_candidate` draws a new image for every candidate (every round is M fresh images); it samples
the same distribution and was the only mode before the key existed.
PICs come from summed-area tables, so a candidate costs O(1) whatever the patch size.

Interval edges: K evenly spaced intervals between two quantiles of the PIC of uniform random crops of the
training set (default: the minimum and the 99.5th percentile, so that the top interval is not a handful of
outliers); PICs beyond the ends fall into the first or last interval.
M (`candidates`) changes how many random numbers a round consumes, not the distribution: candidates are
accepted in draw order, exactly as if they were drawn one at a time.
Fallback: after `max_rounds` rounds of M candidates, the batch's empty slots are filled with uniform random
crops and counted in `fallback_patches`, which training logs.
Augmentation (`augment`): `rot4`, a rotation by 0, 90, 180 or 270 degrees (the paper's "random rotations"),
or `dihedral8`, one of the 8 flips/rotations (EDSR's). Everything is drawn from one seeded numpy Generator,
whose state is part of a checkpoint.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bsr import BsrError
from bsr.images import as_rgb, list_images, read_image
from bsr.pic import all_crop_pics, check_patch, load_table, summed_area_table

EDGE_SAMPLE_SIZE = 200_000


@dataclass
class TrainingSet:
    """LR images, their HR images (None when only PICs are needed), and the PIC of every patch x patch crop of
    each LR image (None where the image is smaller than the patch).

    Crop PICs replace the summed-area tables as soon as an image is loaded: at DIV2K size the int64 tables of
    all images take 4.4 GB at x2, their crop PICs (int32) 2 GB, and the sampler keeps only a uint8 interval
    per crop position (0.5 GB).
    """
    lr: list[np.ndarray]
    hr: list[np.ndarray] | None
    crop_pics: list[np.ndarray | None]
    patch: int
    scale: int
    names: list[str]


def image_crop_pics(lr: np.ndarray, patch: int, reduce: str = "sum", table: np.ndarray | None = None):
    """The PIC of every patch x patch crop of `lr` (from its saved summed-area table when given)."""
    check_patch(patch)
    if min(lr.shape[:2]) < patch:
        return None
    return all_crop_pics(summed_area_table(lr, reduce) if table is None else table, patch)


def make_training_set(lr: list, hr: list | None, scale: int, patch: int, reduce: str = "sum",
                      names: list[str] | None = None) -> TrainingSet:
    """A training set from images in memory, PICs computed here."""
    return TrainingSet(lr, hr, [image_crop_pics(img, patch, reduce) for img in lr], patch, scale,
                       names or [str(i) for i in range(len(lr))])


def load_training_set(hr_dirs, lr_dirs, scale: int, patch: int, reduce: str = "sum", table_dirs=None) -> TrainingSet:
    """Pair HR and LR images by file stem; use saved PIC tables when `table_dirs` is given, else compute them."""
    lr, hr, crop_pics, names = [], [], [], []
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
            hr.append(np.ascontiguousarray(hr_img[: h * scale, : w * scale]))
            table = None if table_dir is None else load_table(table_dir, lr_path.stem, reduce, lr_img.shape)
            crop_pics.append(image_crop_pics(lr_img, patch, reduce, table))
            names.append(str(lr_path))
    return TrainingSet(lr, hr, crop_pics, patch, scale, names)


def quota_vector(batch: int, weights) -> np.ndarray:
    """Patches per interval: `batch` split in proportion to `weights`, remainders to the largest fractions."""
    weights = np.asarray(weights, dtype=np.float64)
    exact = batch * weights / weights.sum()
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: batch - quota.sum()]] += 1
    return quota


def without_small_images(data: TrainingSet) -> tuple[TrainingSet, list[str]]:
    """Drop LR images smaller than the patch (T91 has some at x3/x4), saying so on stderr."""
    patch = data.patch
    keep = [i for i, pics in enumerate(data.crop_pics) if pics is not None]
    excluded = [name for name, pics in zip(data.names, data.crop_pics) if pics is None]
    if not keep:
        raise BsrError(f"every LR training image is smaller than the {patch}x{patch} patch")
    if excluded:
        print(f"bsr: {len(excluded)} LR training images are smaller than {patch}x{patch} and are not sampled: "
              f"{', '.join(excluded[:3])}{', ...' if len(excluded) > 3 else ''}", file=sys.stderr)

    def pick(items):
        return None if items is None else [items[i] for i in keep]

    return TrainingSet(pick(data.lr), pick(data.hr), pick(data.crop_pics), patch, data.scale,
                       pick(data.names)), excluded


class PatchSampler:
    """Draws batches of (LR, HR) uint8 patch pairs, RFS-balanced or uniform, reproducibly from a seed."""

    def __init__(self, data: TrainingSet, batch: int, seed: int, rfs: bool = True, intervals: int = 16,
                 candidates: int = 256, max_rounds: int = 100, quota_weights=None, range_quantiles=(0.0, 0.995),
                 augment: str = "dihedral8", rfs_images: str = "per_candidate", batch_seed=None):
        if augment not in AUGMENTATIONS:
            raise BsrError(f"sampling.augment: {augment!r} is not one of {', '.join(AUGMENTATIONS)}")
        if rfs_images not in RFS_IMAGES:
            raise BsrError(f"sampling.rfs_images: {rfs_images!r} is not one of {', '.join(RFS_IMAGES)}")
        self.patch, self.batch, self.rfs = data.patch, batch, rfs
        self.candidates, self.max_rounds = candidates, max_rounds
        self.transforms, self.rfs_images = AUGMENTATIONS[augment], rfs_images
        data, self.excluded = without_small_images(data)
        self.lr, self.hr, self.scale = data.lr, data.hr, data.scale
        self.positions = np.array([pics.shape for pics in data.crop_pics])
        self.quota = quota_vector(batch, np.ones(intervals) if quota_weights is None else quota_weights)
        if len(self.quota) != intervals:
            raise BsrError(f"sampling.quota has {len(self.quota)} weights for {intervals} intervals")
        self.edges = self._interval_edges(data.crop_pics, range_quantiles, seed)
        # The interval of every crop position, so that a candidate costs one uint8 lookup. The crop PICs are
        # not kept: the caller's training set may be dropped once the sampler exists.
        sizes = self.positions.prod(axis=1)
        self.position_offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.flat_intervals = np.empty(sizes.sum(), np.uint8)
        for offset, size, pics in zip(self.position_offset, sizes, data.crop_pics):
            self.flat_intervals[offset:offset + size] = self.interval(pics.ravel())
        # The batches may come from a seed of their own (each rank of a multi-GPU run has one); the interval
        # edges always come from `seed`, so that every rank balances over the same intervals.
        self.rng = np.random.default_rng(seed if batch_seed is None else batch_seed)
        self.fallback_patches = 0

    def _random_images(self, rng, n):
        return (rng.random(n) * len(self.positions)).astype(np.int64)

    def _random_positions(self, rng, image):
        u = rng.random((2, len(image)))
        return (u[0] * self.positions[image, 0]).astype(np.int64), (u[1] * self.positions[image, 1]).astype(np.int64)

    def _random_crops(self, rng, n):
        image = self._random_images(rng, n)
        return (image, *self._random_positions(rng, image))

    def _interval_edges(self, crop_pics, range_quantiles, seed):
        # A separate generator, so that the edges do not depend on how many batches were drawn.
        image, y, x = self._random_crops(np.random.default_rng([seed, 1]), EDGE_SAMPLE_SIZE)
        pics = np.empty(len(image), np.int64)
        order = np.argsort(image, kind="stable")
        bounds = np.searchsorted(image[order], np.arange(len(crop_pics) + 1))
        for n, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
            picked = order[start:stop]
            pics[picked] = crop_pics[n][y[picked], x[picked]]
        lo, hi = np.quantile(pics, range_quantiles)
        if hi <= lo:
            raise BsrError(f"the training set's PIC range is empty ({lo} to {hi}): the images are flat")
        return np.linspace(lo, hi, len(self.quota) + 1)

    def intervals_of(self, image, y, x) -> np.ndarray:
        return self.flat_intervals[self.position_offset[image] + y * self.positions[image, 1] + x].astype(np.int64)

    def interval(self, pics) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges, pics, side="right") - 1, 0, len(self.quota) - 1)

    def _candidates(self, images):
        """One round of M candidate crops: from M new random images, or from the batch's M images."""
        if images is None:
            return self._random_crops(self.rng, self.candidates)
        return (images, *self._random_positions(self.rng, images))

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
        images = self._random_images(self.rng, self.candidates) if self.rfs_images == "fixed" else None
        for _ in range(self.max_rounds):
            image, y, x = self._candidates(images)
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
        s, p = self.scale, self.patch
        lr = np.empty((self.batch, p, p, 3), np.uint8)
        hr = np.empty((self.batch, p * s, p * s, 3), np.uint8)
        transforms = self.transforms[self.rng.integers(len(self.transforms), size=self.batch)]
        for i, (n, yy, xx, t) in enumerate(zip(image, y, x, transforms)):
            dihedral(self.lr[n][yy:yy + p, xx:xx + p], t, out=lr[i])
            dihedral(self.hr[n][yy * s:(yy + p) * s, xx * s:(xx + p) * s], t, out=hr[i])
        return lr, hr


_FLIP_CODES = (None, 0, 1, -1)  # none, upside down, left-right, both (a 180-degree rotation)
# The dihedral elements each augmentation draws from: all 8 flips/rotations, or the rotations by 0/90/180/270
# degrees alone (a transpose then an upside-down flip turns by 90 degrees counter-clockwise).
AUGMENTATIONS = {"dihedral8": np.arange(8), "rot4": np.array([0, 5, 3, 6])}
RFS_IMAGES = ("per_candidate", "fixed")


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


def check_plot_patch(lr_dir, patch: int) -> None:
    """Before anything is written: the histogram needs LR images at least as large as its patch."""
    from PIL import Image

    sizes = []
    for path in list_images(lr_dir):
        with Image.open(path) as im:
            sizes.append(im.size)
    if max(min(size) for size in sizes) < patch:
        w, h = max(sizes, key=min)
        raise BsrError(f"--patch {patch}: larger than every image in {lr_dir} (the largest is {w}x{h})")


def plot_balance(lr_dir, table_dir, reduce: str, out_png, patch: int = 48, batch: int = 16, batches: int = 500,
                 seed: int = 0) -> None:
    """The paper's 'unbalance' figure: the PIC intervals of uniform random crops next to RFS batches."""
    from bsr.figures import plt, save_figure

    files = list_images(lr_dir)
    lr = [as_rgb(read_image(p)) for p in files]
    crop_pics = [image_crop_pics(img, patch, reduce, load_table(table_dir, p.stem, reduce, img.shape))
                 for p, img in zip(files, lr)]
    data = TrainingSet(lr, None, crop_pics, patch, 1, [str(p) for p in files])
    counts = {}
    for label, rfs in (("uniform random crops", False), ("RFS batches", True)):
        sampler = PatchSampler(data, batch, seed, rfs=rfs)
        intervals = np.concatenate([sampler.choose_crops()[3] for _ in range(batches)])
        counts[label] = np.bincount(intervals, minlength=len(sampler.quota)) / len(intervals)
    k = np.arange(len(sampler.quota))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for offset, (label, share) in zip((-0.2, 0.2), counts.items()):
        ax.bar(k + offset, share, width=0.4, label=label)
    ax.set_xlabel(f"PIC interval (K = {len(k)}, {patch}x{patch} LR patches, reduce = {reduce})")
    ax.set_ylabel("share of patches")
    ax.set_xticks(k)
    ax.legend()
    # The pipeline's LR folders are <set>/<degradation tag> (data/lr/DIV2K/BIx2): the title names both.
    lr_dir = Path(lr_dir).resolve()
    ax.set_title(f"{lr_dir.parent.name} {lr_dir.name}: PIC of uniform crops and of RFS batches")
    save_figure(fig, out_png, dpi=120)
