import numpy as np
import pytest

from bsr.images import as_rgb, list_images, read_image
from bsr.degrade import degrade, modcrop
from bsr.pic import pic_direct, summed_area_table
from bsr.sampling import PatchSampler, TrainingSet, dihedral, quota_vector


@pytest.fixture(scope="module")
def t91_x2(shared_data):
    hr = [modcrop(as_rgb(read_image(p)), 2) for p in list_images(shared_data / "T91" / "HR")[:30]]
    lr = [degrade(img, 2, "BI") for img in hr]
    return TrainingSet(lr, hr, [summed_area_table(img) for img in lr], 2, [str(i) for i in range(len(lr))])


def test_rfs_fills_every_quota_and_uniform_does_not(t91_x2):
    rfs = PatchSampler(t91_x2, 24, 16, seed=0)
    uniform = PatchSampler(t91_x2, 24, 16, seed=0, rfs=False)
    for _ in range(200):
        assert (np.bincount(rfs.choose_crops()[3], minlength=16) == rfs.quota).all()
    assert rfs.fallback_patches == 0
    counts = np.bincount(np.concatenate([uniform.choose_crops()[3] for _ in range(200)]), minlength=16)
    assert counts.max() > 4 * counts.min() + 100  # unbalanced: most crops are flat
    assert (counts != 200).any()


def test_rfs_intervals_are_the_literal_sobel_intervals(t91_x2):
    sampler = PatchSampler(t91_x2, 24, 16, seed=1)
    image, y, x, intervals = sampler.choose_crops()
    direct = [pic_direct(t91_x2.lr[n][yy:yy + 24, xx:xx + 24]) for n, yy, xx in zip(image, y, x)]
    assert (sampler.interval(np.array(direct)) == intervals).all()


def test_same_seed_same_batches_and_state_restores(t91_x2):
    a, b = PatchSampler(t91_x2, 24, 8, seed=5), PatchSampler(t91_x2, 24, 8, seed=5)
    for _ in range(3):
        (la, ha), (lb, hb) = a.next_batch(), b.next_batch()
        assert (la == lb).all() and (ha == hb).all()
    state = a.state()
    after = [a.next_batch() for _ in range(2)]
    c = PatchSampler(t91_x2, 24, 8, seed=5)  # the seed also fixes the interval edges
    c.load_state(state)
    for (la, ha), (lc, hc) in zip(after, [c.next_batch() for _ in range(2)]):
        assert (la == lc).all() and (ha == hc).all()
    assert not (PatchSampler(t91_x2, 24, 8, seed=6).next_batch()[0] == a.next_batch()[0]).all()


def test_patches_are_aligned_uint8_pairs(t91_x2):
    lr, hr = PatchSampler(t91_x2, 24, 16, seed=2).next_batch()
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
