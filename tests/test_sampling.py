import hashlib

import numpy as np
import pytest

from bsr.images import as_rgb, list_images, read_image
from bsr.degrade import degrade, imresize, modcrop, to_uint8
from bsr.pic import pic_direct
from bsr.sampling import PatchSampler, dihedral, make_training_set, quota_vector


@pytest.fixture(scope="module")
def t91_x2(shared_data):
    hr = [modcrop(as_rgb(read_image(p)), 2) for p in list_images(shared_data / "T91" / "HR")[:30]]
    lr = [degrade(img, 2, "BI") for img in hr]
    return make_training_set(lr, hr, 2, 24)


def test_rfs_fills_every_quota_and_uniform_does_not(t91_x2):
    rfs = PatchSampler(t91_x2, 16, seed=0)
    uniform = PatchSampler(t91_x2, 16, seed=0, rfs=False)
    for _ in range(200):
        assert (np.bincount(rfs.choose_crops()[3], minlength=16) == rfs.quota).all()
    assert rfs.fallback_patches == 0
    counts = np.bincount(np.concatenate([uniform.choose_crops()[3] for _ in range(200)]), minlength=16)
    assert counts.max() > 4 * counts.min() + 100  # unbalanced: most crops are flat
    assert (counts != 200).any()


def test_rfs_intervals_are_the_literal_sobel_intervals(t91_x2):
    sampler = PatchSampler(t91_x2, 16, seed=1)
    image, y, x, intervals = sampler.choose_crops()
    direct = [pic_direct(t91_x2.lr[n][yy:yy + 24, xx:xx + 24]) for n, yy, xx in zip(image, y, x)]
    assert (sampler.interval(np.array(direct)) == intervals).all()


def test_same_seed_same_batches_and_state_restores(t91_x2):
    a, b = PatchSampler(t91_x2, 8, seed=5), PatchSampler(t91_x2, 8, seed=5)
    for _ in range(3):
        (la, ha), (lb, hb) = a.next_batch(), b.next_batch()
        assert (la == lb).all() and (ha == hb).all()
    state = a.state()
    after = [a.next_batch() for _ in range(2)]
    c = PatchSampler(t91_x2, 8, seed=5)  # the seed also fixes the interval edges
    c.load_state(state)
    for (la, ha), (lc, hc) in zip(after, [c.next_batch() for _ in range(2)]):
        assert (la == lc).all() and (ha == hc).all()
    assert not (PatchSampler(t91_x2, 8, seed=6).next_batch()[0] == a.next_batch()[0]).all()


def test_patches_are_aligned_uint8_pairs(t91_x2):
    lr, hr = PatchSampler(t91_x2, 16, seed=2).next_batch()
    assert lr.dtype == hr.dtype == np.uint8 and lr.shape == (16, 24, 24, 3) and hr.shape == (16, 48, 48, 3)
    # Augmentation keeps LR and HR aligned: the HR patch, bicubic-downscaled, is close to its LR patch.
    for i in range(16):
        assert np.abs(degrade(hr[i], 2, "BI")[2:-2, 2:-2].astype(int) - lr[i][2:-2, 2:-2]).mean() < 1.0


def test_dihedral_gives_the_eight_flips_and_rotations():
    patch = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    results = [dihedral(patch, t, np.empty_like(patch)) for t in range(8)]
    expected = [np.rot90(p, k) for p in (patch, patch[:, ::-1]) for k in range(4)]
    assert sorted(r.tobytes() for r in results) == sorted(e.tobytes() for e in expected)


def test_quota_vector_splits_batch():
    assert quota_vector(16, np.ones(16)).tolist() == [1] * 16
    assert quota_vector(20, np.ones(16)).sum() == 20
    assert quota_vector(10, [1, 0, 1, 3]).tolist() == [2, 0, 2, 6]


def batches_digest(sampler, batches=5) -> str:
    digest = hashlib.sha256()
    for _ in range(batches):
        lr, hr = sampler.next_batch()
        digest.update(lr.tobytes())
        digest.update(hr.tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("rfs,expected", [
    (True, "f986a7f0cb3c0d263df64dfc9e836ccb3ac5240ec71393f700c276eb0f68f15a"),
    (False, "0f8e96608c3ed9ae179fa320911034c363e1a6a2428efbf4621c4f560f0e9846"),
])
def test_default_sampling_is_bit_identical_to_the_summed_area_table_sampler(t91_x2, rfs, expected):
    """Digests of the batches that the sampler drew before it dropped its tables (same seed and settings):
    keeping only crop intervals must not move a single patch. Those digests were taken on LR images from the double
    path rounded once (the degradation before the uint8 convention), so that is the LR they are checked on."""
    double_lr = [to_uint8(imresize(hr.astype(np.float64), 1 / 2)) for hr in t91_x2.hr[:20]]
    first20 = make_training_set(double_lr, t91_x2.hr[:20], 2, 24)
    assert batches_digest(PatchSampler(first20, 16, seed=7, rfs=rfs, candidates=64)) == expected


def test_rot4_draws_only_rotations(t91_x2):
    sampler = PatchSampler(t91_x2, 16, seed=3, augment="rot4")
    assert sorted(sampler.transforms.tolist()) == [0, 3, 5, 6]
    patch = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3)
    rotations = sorted(np.rot90(patch, k).tobytes() for k in range(4))
    assert sorted(dihedral(patch, t, np.empty_like(patch)).tobytes() for t in sampler.transforms) == rotations


def test_fixed_rfs_images_crop_only_the_batch_images(t91_x2):
    """The slides' reading: M images per batch, cropped until the quota fills; slots that those images cannot
    fill (no crop of theirs in the interval) are the counted uniform fallback, drawn last."""
    sampler = PatchSampler(t91_x2, 16, seed=4, candidates=16, rfs_images="fixed")
    for _ in range(50):
        twin = np.random.default_rng()
        twin.bit_generator.state = sampler.rng.bit_generator.state
        batch_images = set(sampler._random_images(twin, 16).tolist())
        before = sampler.fallback_patches
        image, _, _, intervals = sampler.choose_crops()
        balanced = 16 - (sampler.fallback_patches - before)
        assert set(image[:balanced].tolist()) <= batch_images
        assert (np.bincount(intervals[:balanced], minlength=16) <= sampler.quota).all()
    # Why the paper config draws per candidate: a few images hold the high-PIC crops, M fixed images often
    # lack them, and 100 rounds of M fresh images mostly find them.
    per_candidate = PatchSampler(t91_x2, 16, seed=4, candidates=16)
    for _ in range(50):
        per_candidate.choose_crops()
    print(f"fallback patches in 50 batches, M = 16: fixed {sampler.fallback_patches}, "
          f"per candidate {per_candidate.fallback_patches}")
    assert sampler.fallback_patches > 5 * per_candidate.fallback_patches


def test_training_set_keeps_no_summed_area_tables(t91_x2):
    """The sampler holds one uint8 interval per crop position, not the int64 tables nor the crop PICs."""
    sampler = PatchSampler(t91_x2, 16, seed=0)
    held = [v for v in vars(sampler).values() if isinstance(v, np.ndarray)]
    assert sampler.flat_intervals.dtype == np.uint8
    assert sum(a.nbytes for a in held) < 1.1 * sampler.flat_intervals.nbytes + 10_000
    assert all(p.dtype == np.int32 for p in t91_x2.crop_pics if p is not None)
