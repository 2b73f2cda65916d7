import csv

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bsr.evaluate import eval_bicubic
from bsr.metrics import psnr, psnr_ssim, rgb_to_y, ssim

RNG = np.random.default_rng(0)


def _pair(shape):
    hr = RNG.integers(0, 256, shape, dtype=np.uint8)
    noise = RNG.normal(0, 12, shape)
    return np.clip(hr + noise, 0, 255).astype(np.uint8), hr


@pytest.mark.parametrize("shape,shave", [((64, 80, 3), 2), ((50, 47, 3), 3), ((40, 40), 4), ((33, 61, 3), 0)])
def test_psnr_and_ssim_equal_scikit_image(shape, shave):
    sr, hr = _pair(shape)
    y_sr, y_hr = rgb_to_y(sr), rgb_to_y(hr)
    if shave:
        y_sr, y_hr = y_sr[shave:-shave, shave:-shave], y_hr[shave:-shave, shave:-shave]
    ref_psnr = peak_signal_noise_ratio(y_hr, y_sr, data_range=255)
    ref_ssim = structural_similarity(y_hr, y_sr, data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert abs(psnr(sr, hr, shave) - ref_psnr) < 1e-6
    assert abs(ssim(sr, hr, shave) - ref_ssim) < 1e-6
    assert psnr_ssim(sr, hr, shave) == (psnr(sr, hr, shave), ssim(sr, hr, shave))


def test_rgb_psnr_option():
    sr, hr = _pair((30, 30, 3))
    ref = peak_signal_noise_ratio(hr[2:-2, 2:-2], sr[2:-2, 2:-2], data_range=255)
    assert abs(psnr(sr, hr, 2, space="rgb") - ref) < 1e-9
    assert psnr(sr, hr, 2, space="rgb") != psnr(sr, hr, 2)


def test_y_is_bt601_and_not_rounded():
    img = np.array([[[255, 255, 255], [0, 0, 0], [10, 20, 30]]], np.uint8)
    y = rgb_to_y(img)
    assert np.allclose(y[0, :2], [235.0, 16.0], atol=1e-3)
    assert y[0, 2] == pytest.approx(16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255)


def _published_bicubic(paper_dir):
    rows = csv.DictReader(open(paper_dir / "bsr_tables.tsv"), delimiter="\t")
    return {(r["degradation"], int(r["scale"]), r["dataset"]): (float(r["psnr"]), float(r["ssim"]))
            for r in rows if r["method"] == "Bi-cubic"}


@pytest.mark.parametrize("dataset", ["Set5", "Set14", "BSD100"])
@pytest.mark.parametrize("kind,scale", [("BI", 2), ("BI", 3), ("BI", 4), ("BD", 3)])
def test_reproduces_paper_bicubic_cell(dataset, kind, scale, shared_data, paper_dir, tmp_path):
    published_psnr, published_ssim = _published_bicubic(paper_dir)[(kind, scale, dataset)]
    summary = eval_bicubic(shared_data / dataset / "HR", scale, kind, tmp_path / "bicubic.json")
    print(f"{dataset} {kind} x{scale}: {summary['psnr']:.4f}/{summary['ssim']:.5f} "
          f"published {published_psnr}/{published_ssim}")
    assert abs(summary["psnr"] - published_psnr) <= 0.03
    assert abs(summary["ssim"] - published_ssim) <= 0.0015
    assert summary["n"] == len(list((shared_data / dataset / "HR").iterdir()))
    assert (tmp_path / "bicubic.csv").read_text().count("\n") == summary["n"] + 1
