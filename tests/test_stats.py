"""The seed-aware intervals cover the truth as often as they say: simulated studies with a known difference.

Each study draws a test set of 100 images (per-image difficulty sd 3 dB, shared by both arms; the arms'
per-image difference varies by 0.15 dB), N seeds per arm (a set mean moves by 0.03 dB from seed to seed, as SR
training's does, plus 0.02 dB of replicate × image noise), and a true difference of 0.05 dB (the paper's
w/o RFS). An interval is right when it holds the true difference, or the true mean of the Baseline.
"""
import numpy as np
import pytest

from bsr.stats import LEVEL, replicate_ci, replicate_difference_ci, seed_sd

STUDIES, IMAGES, TRUE_DIFFERENCE, BASELINE = 1000, 100, 0.05, 30.0
IMAGE_SD, PAIRED_SD, SEED_SD, NOISE_SD = 3.0, 0.15, 0.03, 0.02


def simulated_study(rng, replicates: int, seed_spread: float = SEED_SD) -> tuple[np.ndarray, np.ndarray]:
    """(arm, baseline) scores, replicates × images, of one study."""
    images = BASELINE + rng.normal(0, IMAGE_SD, IMAGES)
    arm_images = images + TRUE_DIFFERENCE + rng.normal(0, PAIRED_SD, IMAGES)

    def trained(per_image):
        return (per_image + rng.normal(0, seed_spread, (replicates, 1))
                + rng.normal(0, NOISE_SD, (replicates, IMAGES)))
    return trained(arm_images), trained(images)


def two_stage_bootstrap(a, b, rng, resamples=2000):
    """The percentile bootstrap that resamples each arm's replicates, then the images (paired): the reference
    that the t interval replaces."""
    ra = rng.integers(0, len(a), (resamples, len(a)))
    rb = rng.integers(0, len(b), (resamples, len(b)))
    images = rng.integers(0, a.shape[1], (resamples, a.shape[1]))
    means_a = np.take_along_axis(a[ra].mean(axis=1), images, axis=1).mean(axis=1)
    means_b = np.take_along_axis(b[rb].mean(axis=1), images, axis=1).mean(axis=1)
    return tuple(np.quantile(means_a - means_b, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))


def coverage(replicates: int, interval, truth) -> float:
    rng = np.random.default_rng(replicates)
    held = 0
    for _ in range(STUDIES):
        arm, baseline = simulated_study(rng, replicates)
        low, high = interval(arm, baseline, rng)
        held += low <= truth <= high
    return held / STUDIES


@pytest.mark.parametrize("replicates", [3, 5])
def test_the_seed_aware_interval_covers_the_truth_95_percent_of_the_time(replicates):
    difference = coverage(replicates, lambda a, b, rng: replicate_difference_ci(a, b), TRUE_DIFFERENCE)
    mean = coverage(replicates, lambda a, b, rng: replicate_ci(b), BASELINE)
    bootstrap = coverage(replicates, lambda a, b, rng: two_stage_bootstrap(a, b, rng), TRUE_DIFFERENCE)
    print(f"N = {replicates}, {STUDIES} studies: arm − Baseline {difference:.1%}, Baseline mean {mean:.1%}; "
          f"two-stage percentile bootstrap {bootstrap:.1%}")
    assert 0.93 <= difference <= 0.97 and 0.93 <= mean <= 0.97


def test_an_image_interval_alone_misses_seed_noise():
    """What the tables showed before replicates: the paired interval over images of one training per arm."""
    rng = np.random.default_rng(1)
    held = 0
    for _ in range(STUDIES):
        arm, baseline = simulated_study(rng, 1, seed_spread=0.06)
        low, high = replicate_difference_ci(arm, baseline, resamples=2000)
        held += low <= TRUE_DIFFERENCE <= high
    print(f"one training per arm, seed sd 0.06 dB: the image interval covers {held / STUDIES:.1%}")
    assert held / STUDIES < 0.8


def test_one_replicate_is_the_image_bootstrap_and_bicubic_adds_no_seed_part():
    from bsr.stats import bootstrap_ci, paired_bootstrap_ci

    rng = np.random.default_rng(2)
    arm, baseline = simulated_study(rng, 3)
    assert replicate_ci(arm[:1]) == bootstrap_ci(arm[0])
    assert replicate_difference_ci(arm[:1], baseline[:1]) == paired_bootstrap_ci(arm[0], baseline[0])
    bicubic = baseline[:1]
    as_trained = replicate_difference_ci(arm, bicubic)  # the single side borrows the arm's seed variance
    untrained = replicate_difference_ci(arm, bicubic, b_trained=False)
    assert untrained[1] - untrained[0] < as_trained[1] - as_trained[0]
    assert np.isnan(seed_sd(arm[:1])) and seed_sd(arm) == pytest.approx(arm.mean(axis=1).std(ddof=1))
