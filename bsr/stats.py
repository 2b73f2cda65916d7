"""Is a difference between two set means real? Intervals that say what they cover, and per-image win counts.

One training per row (N = 1). A test set's mean is a mean of per-image scores, so its uncertainty comes from
which images the set happens to hold: resampling the images with replacement estimates it (a percentile
bootstrap). Two methods scored on the same images are compared through their per-image differences (a paired
bootstrap), which removes the images' shared difficulty and gives a far narrower interval than comparing two
independent means. Such an interval says nothing about training randomness: another seed moves an SR network's
set mean by a few hundredths of a dB, the size of the paper's ablation effects.

Replicates (N >= 2 trainings with different seeds, scored on the same images). A score is then a matrix
X[r, i] (replicate r, image i), and a row's value is the mean over replicates of the set means. Its variance
has two parts, estimated by a two-way analysis of variance without replication (replicate × image):
- which images the set holds: var_i(mean_r X[r, i]) / n, with n − 1 degrees of freedom;
- which seeds were drawn: σ²_seed / N, where σ²_seed = max(MS_replicates − MS_residual, 0) / n is the seed
  variance of a set mean over these images (MS_replicates alone would also count the replicate × image noise,
  which the image part already holds), with N − 1 degrees of freedom.
The interval is mean ± t · se with Welch–Satterthwaite degrees of freedom. A bootstrap over replicates cannot
do this with N = 3: the spread of resamples of three values underestimates their variance by a third, and
their percentiles are those of a handful of distinct means. tests/test_stats.py measures both on 1,000
simulated studies (100 images, seed sd 0.03 dB, a true difference of 0.05 dB): of the arm − Baseline
difference, a two-stage percentile bootstrap (replicates, then images) covers the truth 88.6% of the time at
N = 3 and 92.5% at N = 5, this interval 95.4% and 95.4%; one training per arm with the image interval alone,
27% at a seed sd of 0.06 dB. With few seeds the t quantile is large (4.3 at 2 degrees of freedom): that width
is what three trainings can tell.

An arm against the Baseline: the difference of the two means; the image part is that of the per-image
differences of the replicate means (the images are shared, so paired), and each arm adds its own seed part
(its replicates are independent of the other's). An arm trained once (N = 1) beside one with replicates
borrows the other's seed variance, and the note says so. Bicubic has no seed part: it is not trained.
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


def seed_sd(scores) -> float:
    """The standard deviation over replicates of the set mean (rows: replicates, columns: images); NaN for one."""
    scores = np.asarray(scores, dtype=np.float64)
    return float(scores.mean(axis=1).std(ddof=1)) if len(scores) > 1 else float("nan")


def seed_variance(scores: np.ndarray) -> float:
    """σ²_seed of a set mean over these images, from the replicate × image analysis of variance (module doc)."""
    r, n = scores.shape
    replicate_means, image_means = scores.mean(axis=1), scores.mean(axis=0)
    residual = scores - replicate_means[:, None] - image_means[None, :] + scores.mean()
    ms_replicates = n * replicate_means.var(ddof=1)
    ms_residual = (residual ** 2).sum() / ((r - 1) * (n - 1)) if n > 1 else 0.0
    return max(ms_replicates - ms_residual, 0.0) / n


def t_interval(value: float, parts: list[tuple[float, int]], level: float) -> tuple[float, float]:
    """value ± t · sqrt(Σ variances), with Welch–Satterthwaite degrees of freedom over (variance, dof) parts."""
    from scipy import stats as scipy_stats

    total = float(sum(v for v, _ in parts))
    if total <= 0:
        return value, value
    dof = total ** 2 / sum(v ** 2 / d for v, d in parts if v > 0)
    half = float(scipy_stats.t.ppf((1 + level) / 2, dof)) * total ** 0.5
    return value - half, value + half


def replicate_ci(scores, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """Interval of a row's value, the mean of `scores` (replicates × images): over images alone with one
    replicate (a bootstrap, as before replicates existed), over images and seeds with more (module doc)."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if len(scores) == 1:
        return bootstrap_ci(scores[0], resamples, seed, level)
    n = scores.shape[1]
    image_part = scores.mean(axis=0).var(ddof=1) / n
    return t_interval(float(scores.mean()), [(image_part, n - 1), (seed_variance(scores) / len(scores),
                                                                    len(scores) - 1)], level)


def replicate_difference_ci(a, b, b_trained: bool = True, resamples: int = RESAMPLES, seed: int = SEED,
                            level: float = LEVEL) -> tuple[float, float]:
    """Interval of mean(a) − mean(b), both replicates × images, the images the same and in the same order.

    With one replicate on both sides: the paired bootstrap over images (`paired_bootstrap_ci`). Else the image
    part of the per-image differences plus each side's seed part; a trained side with one replicate borrows
    the other's seed variance, and `b_trained` False (bicubic) gives b none."""
    a, b = (np.atleast_2d(np.asarray(x, dtype=np.float64)) for x in (a, b))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired scores must have one value per image on both sides: {a.shape} vs {b.shape}")
    if len(a) == 1 and (len(b) == 1 or not b_trained):
        return paired_bootstrap_ci(a[0], b.mean(axis=0), resamples, seed, level)
    n = a.shape[1]
    differences = a.mean(axis=0) - b.mean(axis=0)
    parts = [(differences.var(ddof=1) / n, n - 1)]
    trained = [x for x, is_trained in ((a, True), (b, b_trained)) if is_trained]
    estimates = {id(x): (seed_variance(x), len(x) - 1) for x in trained if len(x) > 1}
    weights = dict.fromkeys(estimates, 0.0)  # one part per estimate: a borrowed one is the same random number
    for x in trained:  # its own seed variance, or the other side's for a single training
        weights[id(x) if id(x) in estimates else next(iter(estimates))] += 1 / len(x)
    parts += [(estimates[key][0] * weight, estimates[key][1]) for key, weight in weights.items()]
    return t_interval(float(differences.mean()), parts, level)
