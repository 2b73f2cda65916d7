"""PSNR and SSIM as the SR literature reports them.

Default: the BT.601 luma Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 of uint8 RGB, kept as float
(not rounded), `shave` = scale pixels cut from every border, per-image values averaged over a set.
A file stored single-channel is evaluated as it is. SSIM is Wang et al.'s: 11x11 Gaussian window with
sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, valid region only.
`space="rgb"` measures PSNR over the three RGB channels instead, as peers' model zoos do.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from bsr import BsrError

SPACES = ("y", "rgb")
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def check_metric_size(shape: tuple[int, ...], shave: int, name: str) -> None:
    """SSIM's window must fit in what is left after shaving, or SSIM is the mean of nothing (NaN)."""
    h, w = shape[0] - 2 * shave, shape[1] - 2 * shave
    if min(h, w) < SSIM_WINDOW:
        raise BsrError(f"{name}: {shape[1]}x{shape[0]} pixels leave {max(w, 0)}x{max(h, 0)} after shaving {shave} "
                       f"per border, smaller than SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window")


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma in [16, 235] as float64; a (H, W) gray image is returned as float64 unchanged."""
    if img.ndim == 2:
        return img.astype(np.float64)
    return img.astype(np.float64) @ _Y_WEIGHTS + 16.0


def _prepare(sr: np.ndarray, hr: np.ndarray, shave: int, space: str) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != hr.shape:
        raise ValueError(f"SR shape {sr.shape} differs from HR shape {hr.shape}")
    if space not in SPACES:
        raise ValueError(f"unknown metric space {space!r}: expected one of {SPACES}")
    if space == "y":
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    else:
        sr, hr = sr.astype(np.float64), hr.astype(np.float64)
    if shave:
        sr, hr = sr[shave:-shave, shave:-shave], hr[shave:-shave, shave:-shave]
    return sr, hr


def psnr(sr: np.ndarray, hr: np.ndarray, shave: int = 0, space: str = "y") -> float:
    return _psnr_prepared(*_prepare(sr, hr, shave, space))


def _psnr_prepared(sr: np.ndarray, hr: np.ndarray) -> float:
    mse = np.mean((sr - hr) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@lru_cache(maxsize=1)
def _ssim_kernel() -> np.ndarray:
    x = np.arange(SSIM_WINDOW, dtype=np.float64) - (SSIM_WINDOW - 1) / 2
    k = np.exp(-(x * x) / (2 * SSIM_SIGMA**2))
    return k / k.sum()


def _ssim_gray(x: np.ndarray, y: np.ndarray) -> float:
    k = _ssim_kernel()
    r = SSIM_WINDOW // 2

    def window_mean(img):
        # A separable correlation, then the valid region: the same as MATLAB's filter2(w, img, 'valid').
        return cv2.sepFilter2D(img, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]

    mu_x, mu_y = window_mean(x), window_mean(y)
    var_x = window_mean(x * x) - mu_x * mu_x
    var_y = window_mean(y * y) - mu_y * mu_y
    cov = window_mean(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + C1) * (2 * cov + C2)) / ((mu_x**2 + mu_y**2 + C1) * (var_x + var_y + C2))
    return float(ssim_map.mean())


def _ssim_channels(sr: np.ndarray, hr: np.ndarray) -> float:
    if sr.ndim == 2:
        return _ssim_gray(sr, hr)
    return float(np.mean([_ssim_gray(sr[..., c], hr[..., c]) for c in range(sr.shape[2])]))


def ssim(sr: np.ndarray, hr: np.ndarray, shave: int = 0, space: str = "y") -> float:
    """SSIM; on RGB it is the mean over channels."""
    return _ssim_channels(*_prepare(sr, hr, shave, space))


def psnr_ssim(sr: np.ndarray, hr: np.ndarray, shave: int = 0, space: str = "y") -> tuple[float, float]:
    """Both metrics from one colour conversion: what an evaluation loop wants."""
    sr, hr = _prepare(sr, hr, shave, space)
    return _psnr_prepared(sr, hr), _ssim_channels(sr, hr)
