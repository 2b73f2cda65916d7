"""Is a difference between two set means real? Percentile bootstrap intervals and per-image win counts.

A test set's mean is a mean of per-image scores, so its uncertainty comes from which images the set happens
to hold: resampling the images with replacement estimates it. Two methods scored on the same images are
compared through their per-image differences (a paired bootstrap), which removes the images' shared
difficulty and gives a far narrower interval than comparing two independent means.
"""
from __future__ import annotations

import numpy as np

RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) image indices drawn with replacement; the same for a given seed and n."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_ci(a, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `a` (one score per image)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1 or not len(a):
        raise ValueError(f"bootstrap needs a non-empty 1-d array of per-image scores, got shape {a.shape}")
    means = a[resample_indices(len(a), resamples, seed)].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def paired_bootstrap_ci(a, b, resamples: int = RESAMPLES, seed: int = SEED,
                        level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a − b), resampling images (a[i] and b[i] score the same image)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores must have one value per image on both sides: {a.shape} vs {b.shape}")
    return bootstrap_ci(a - b, resamples, seed, level)


def win_rate(a, b) -> tuple[int, int]:
    """(images where a scores strictly higher than b, images)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"paired scores must have one value per image on both sides: {a.shape} vs {b.shape}")
    return int((a > b).sum()), len(a)
