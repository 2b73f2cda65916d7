"""Degradation speed over BSD100: bsr.degrade against a straightforward per-output-pixel reference.

Prints images/s for BI x2/x3/x4 and BD x3 (read + degrade), the total for all four, and the bicubic round
trip (down and back up) per scale, and checks that both implementations give identical uint8 images.
"""
import math

import numpy as np

from bench.common import dataset, timed
from bsr.degrade import cubic, degrade, gaussian_kernel_1d, modcrop, to_uint8, upscale_bicubic
from bsr.images import list_images, read_image


def reference_resize_1d(x: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    """One output row at a time, as BasicSR's MATLAB port and MATLAB's own description do."""
    in_len = x.shape[0]
    width = 4.0 / scale if scale < 1 else 4.0
    out = np.empty((out_len,) + x.shape[1:])
    for i in range(out_len):
        u = (i + 1) / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        idx = np.arange(left, left + math.ceil(width) + 2)
        d = u - idx
        w = scale * cubic(scale * d) if scale < 1 else cubic(d)
        w = w / w.sum()
        src = idx - 1
        src = np.where(src < 0, -src - 1, src)
        src = np.where(src >= in_len, 2 * in_len - src - 1, src)
        out[i] = np.tensordot(w, x[src], axes=1)
    return out


def reference_imresize(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    x = reference_resize_1d(img.astype(np.float64), math.ceil(h * scale), scale)
    x = reference_resize_1d(np.swapaxes(x, 0, 1), math.ceil(w * scale), scale)
    return to_uint8(np.swapaxes(x, 0, 1))


def reference_degrade(hr: np.ndarray, scale: int, kind: str) -> np.ndarray:
    hr = modcrop(hr, scale)
    if kind == "BI":
        return reference_imresize(hr, 1 / scale)
    k2 = np.outer(gaussian_kernel_1d(7, 1.6), gaussian_kernel_1d(7, 1.6))
    pad = np.pad(hr.astype(np.float64), ((3, 3), (3, 3)) + ((0, 0),) * (hr.ndim - 2), mode="edge")
    h, w = hr.shape[:2]
    blurred = sum(k2[i, j] * pad[i:i + h, j:j + w] for i in range(7) for j in range(7))
    return to_uint8(blurred)[scale // 2::scale, scale // 2::scale]


def run(files, func, scale, kind, roundtrip=False):
    out = []
    for path in files:
        lr = func(read_image(path), scale, kind)
        out.append(upscale_bicubic(lr, scale) if roundtrip else lr)
    return out


def main():
    files = list_images(dataset("BSD100"))
    cases = [(2, "BI"), (3, "BI"), (4, "BI"), (3, "BD")]
    total_ours = total_ref = 0.0
    print(f"BSD100, {len(files)} images, read + degrade")
    print(f"{'case':8} {'bsr img/s':>10} {'ref img/s':>10} {'speed-up':>9}")
    for scale, kind in cases:
        ours, t_ours = timed(run, files, degrade, scale, kind)
        ref, t_ref = timed(run, files, reference_degrade, scale, kind)
        assert all((a == b).all() for a, b in zip(ours, ref)), f"{kind} x{scale}: outputs differ"
        total_ours += t_ours
        total_ref += t_ref
        print(f"{kind} x{scale:<4} {len(files) / t_ours:10.1f} {len(files) / t_ref:10.1f} {t_ref / t_ours:8.1f}x")
    print(f"all four degradations: bsr {total_ours:.2f} s, reference {total_ref:.2f} s (target < 20 s)")
    for scale in (2, 3, 4):
        _, t = timed(run, files, degrade, scale, "BI", True)
        print(f"bicubic round trip x{scale} (read, down, up): {t:.2f} s")


if __name__ == "__main__":
    main()
