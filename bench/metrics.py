"""PSNR + SSIM (Y, shave = scale) over BSD100's bicubic x2 outputs: bsr.metrics against scikit-image.

Only the metric is timed: the image pairs are made beforehand.
"""
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.common import dataset, timed
from bsr.degrade import degrade, modcrop, upscale_bicubic
from bsr.images import list_images, read_image
from bsr.metrics import psnr_ssim, rgb_to_y

SCALE = 2


def ours(pairs):
    return [psnr_ssim(sr, hr, SCALE) for sr, hr in pairs]


def reference(pairs):
    out = []
    for sr, hr in pairs:
        s = slice(SCALE, -SCALE)
        y_sr, y_hr = rgb_to_y(sr)[s, s], rgb_to_y(hr)[s, s]
        out.append((peak_signal_noise_ratio(y_hr, y_sr, data_range=255),
                    structural_similarity(y_hr, y_sr, data_range=255, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False)))
    return out


def main():
    pairs = []
    for path in list_images(dataset("BSD100")):
        hr = read_image(path)
        pairs.append((upscale_bicubic(degrade(hr, SCALE, "BI"), SCALE), modcrop(hr, SCALE)))
    a, t_ours = timed(ours, pairs)
    b, t_ref = timed(reference, pairs)
    worst = max(max(abs(x[0] - y[0]), abs(x[1] - y[1])) for x, y in zip(a, b))
    print(f"BSD100 x{SCALE}, {len(pairs)} images, PSNR + SSIM on Y")
    print(f"bsr: {t_ours:.2f} s ({len(pairs) / t_ours:.0f} img/s); scikit-image: {t_ref:.2f} s; "
          f"speed-up {t_ref / t_ours:.1f}x; largest difference {worst:.1e} (target < 10 s)")


if __name__ == "__main__":
    main()
