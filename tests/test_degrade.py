import numpy as np
import pytest

from bsr.degrade import blur_down, degrade, gaussian_kernel_1d, imresize, modcrop, resize_weights, to_uint8

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4, 0.7, 1.5])
def test_constant_image_stays_constant(scale):
    img = np.full((37, 29, 3), 123, np.uint8)
    out = imresize(img, scale)
    assert (out == 123).all()
    assert np.allclose(imresize(img.astype(np.float64), scale), 123.0, atol=1e-12)


@pytest.mark.parametrize("shape,scale", [((7, 9), 1 / 2), ((10, 11), 1 / 3), ((13, 5), 1 / 4), ((5, 6), 3), ((9, 4), 0.7)])
def test_output_size_is_ceil_of_input_times_scale(shape, scale):
    out = imresize(RNG.random(shape), scale)
    assert out.shape == tuple(int(np.ceil(n * scale)) for n in shape)


def test_downscale_by_two_weights_are_the_closed_form_antialiased_cubic():
    # Output pixel x sits at input coordinate 2x - 1/2 (1-based); taps at distances 1/2, 3/2, 5/2, 7/2,
    # weighted (1/2)·cubic(d/2): cubic(1/4) = 111/128, cubic(3/4) = 29/128, cubic(5/4) = -9/128,
    # cubic(7/4) = -3/128. They already sum to 1, so normalisation changes nothing.
    expected = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256
    w = resize_weights(40, 20, 0.5)
    assert np.allclose(w[10, 17:25], expected, rtol=0, atol=1e-15)
    assert np.count_nonzero(w[10]) == 8


def test_downscale_by_three_weights_are_the_closed_form_antialiased_cubic():
    # Output pixel x sits exactly on input pixel 3x - 1; (1/3)·cubic(d/3) for d = 0..5 gives
    # 1/3, 7/27, 1/9, 0, -2/81, -1/81, summing to 1.
    expected = np.array([-1, -2, 0, 9, 21, 27, 21, 9, 0, -2, -1]) / 81
    w = resize_weights(60, 20, 1 / 3)
    centre = 3 * 11 - 1 - 1  # 0-based input index under output pixel 11 (1-based)
    assert np.allclose(w[10, centre - 5: centre + 6], expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("scale,pad", [(1 / 2, 8), (1 / 3, 9), (2, 4), (3, 4)])
def test_borders_mirror_the_edge_pixel(scale, pad):
    # MATLAB pads by mirroring with the edge pixel repeated (numpy's 'symmetric'); resizing an explicitly
    # padded signal must give the same values away from its own borders.
    x = RNG.random((30, 1))
    padded = np.pad(x, ((pad, pad), (0, 0)), mode="symmetric")
    out = imresize(x, output_shape=(round(30 * scale), 1))
    out_padded = imresize(padded, output_shape=(round((30 + 2 * pad) * scale), 1))
    offset = round(pad * scale)
    assert np.allclose(out_padded[offset: offset + len(out)], out, rtol=0, atol=1e-12)


def test_uint8_rounding_is_half_away_from_zero():
    assert to_uint8(np.array([0.5, 1.5, 2.5, 2.4999, 254.5, 255.7, -0.5, -3.0])).tolist() == [1, 2, 3, 2, 255, 255, 0, 0]
    img = RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert (imresize(img, 1 / 2) == to_uint8(imresize(img.astype(np.float64), 1 / 2))).all()


def test_modcrop_cuts_bottom_right():
    img = np.arange(7 * 11).reshape(7, 11)
    assert (modcrop(img, 3) == img[:6, :9]).all()


def test_bd_keeps_every_third_pixel_from_the_second():
    k = gaussian_kernel_1d(7, 1.6)
    x = np.arange(7) - 3
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.6**2))
    assert np.allclose(np.outer(k, k), g / g.sum(), rtol=0, atol=1e-15)  # fspecial('gaussian', 7, 1.6)

    img = np.zeros((30, 30), np.uint8)
    img[13, 16] = 255  # a pixel that is kept: 13 = 1 + 3·4, 16 = 1 + 3·5
    lr = blur_down(img, 3)
    assert lr.shape == (10, 10)
    assert lr[4, 5] == round(255 * k[3] * k[3] + 1e-9)
    assert lr.sum() == lr[4, 5] + lr[3:6, 4:7].sum() - lr[4, 5]  # only the 3x3 neighbourhood is reached


def test_bd_replicates_borders_and_keeps_constants():
    img = np.full((12, 9, 3), 77, np.uint8)
    assert (degrade(img, 3, "BD") == 77).all()
    # Against a direct 2-D correlation over an edge-padded (replicate) image.
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (15, 12), dtype=np.uint8)
    k = gaussian_kernel_1d(7, 1.6)
    padded = np.pad(img.astype(np.float64), 3, mode="edge")
    direct = np.array([[np.sum(padded[i:i + 7, j:j + 7] * np.outer(k, k)) for j in range(12)] for i in range(15)])
    assert (blur_down(img, 3) == to_uint8(direct)[1::3, 1::3]).all()


def test_bi_output_size_and_modcrop():
    img = RNG.integers(0, 256, (31, 26, 3), dtype=np.uint8)
    assert degrade(img, 4, "BI").shape == (7, 6, 3)
    assert degrade(img[..., 0], 3, "BD").shape == (10, 8)
