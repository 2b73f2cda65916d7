import numpy as np
import pytest

from bsr.degrade import blur_down, degrade, gaussian_kernel_1d, imresize, modcrop, resize_weights, to_uint8
from bsr.images import read_image

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


def dense_pass(x: np.ndarray, dim: int, out_len: int, scale: float) -> np.ndarray:
    """One 1-D MATLAB resize pass of a 2-D float array as a dense matrix product (no banding)."""
    w = resize_weights(x.shape[dim], out_len, scale)
    return w @ x if dim == 0 else x @ w.T


def test_uint8_rounding_is_half_away_from_zero():
    assert to_uint8(np.array([0.5, 1.5, 2.5, 2.4999, 254.5, 255.7, -0.5, -3.0])).tolist() == [1, 2, 3, 2, 255, 255, 0, 0]


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4])
def test_uint8_input_is_rounded_after_each_pass_rows_first(scale):
    # MATLAB returns the input's class after each 1-D pass: the second pass reads the first one's uint8 bytes.
    img = RNG.integers(0, 256, (24, 36), dtype=np.uint8)
    h, w = (int(np.ceil(n * scale)) for n in img.shape)
    rows = to_uint8(dense_pass(img.astype(np.float64), 0, h, scale))
    expected = to_uint8(dense_pass(rows.astype(np.float64), 1, w, scale))
    assert (imresize(img, scale) == expected).all()
    once = to_uint8(imresize(img.astype(np.float64), scale))  # the double path, rounded once
    assert (once != expected).any()


def test_uint8_first_pass_clips_a_sharp_edge_before_the_second():
    # A black/white edge that steps down a row halfway across: the cubic's negative lobes overshoot [0, 255] in
    # the first (row) pass. MATLAB clips there, so the second pass mixes 0 and 255, not -12 and 267.
    img = np.zeros((16, 16), np.uint8)
    img[5:, :8] = 255
    img[6:, 8:] = 255
    first = dense_pass(img.astype(np.float64), 0, 8, 1 / 2)
    assert first.min() < -0.5 and first.max() > 255.5
    expected = to_uint8(dense_pass(to_uint8(first).astype(np.float64), 1, 8, 1 / 2))
    out = imresize(img, 1 / 2)
    assert (out == expected).all()
    assert (out != to_uint8(dense_pass(first, 1, 8, 1 / 2))).any()  # clipping moved some bytes


def test_uint8_dimension_with_the_smaller_scale_goes_first():
    img = RNG.integers(0, 256, (30, 20), dtype=np.uint8)
    shape = (15, 40)  # rows x0.5, columns x2: rows first, whichever is listed first
    cols = to_uint8(dense_pass(img.astype(np.float64), 0, 15, 0.5))
    expected = to_uint8(dense_pass(cols.astype(np.float64), 1, 40, 2.0))
    assert (imresize(img, output_shape=shape) == expected).all()
    shape = (60, 10)  # rows x2, columns x0.5: columns first
    cols = to_uint8(dense_pass(img.astype(np.float64), 1, 10, 0.5))
    expected = to_uint8(dense_pass(cols.astype(np.float64), 0, 60, 2.0))
    assert (imresize(img, output_shape=shape) == expected).all()
    rows_first = to_uint8(dense_pass(to_uint8(dense_pass(img.astype(np.float64), 0, 60, 2.0)).astype(np.float64),
                                     1, 10, 0.5))
    assert (rows_first != expected).any()  # the order matters on uint8


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4, 0.7])
def test_float_input_is_the_double_path_without_rounding(scale):
    img = RNG.random((21, 17, 3)) * 255
    h, w = (int(np.ceil(n * scale)) for n in img.shape[:2])
    expected = np.stack([dense_pass(dense_pass(img[..., c], 0, h, scale), 1, w, scale) for c in range(3)], axis=-1)
    out = imresize(img, scale)
    assert out.dtype == np.float64
    assert np.allclose(out, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bi_degrade_equals_matlab_lr_images_byte_for_byte(shared_data, tmp_path, scale):
    # EDSR's benchmark LR_bicubic: MATLAB's imresize(HR, 1/s, 'bicubic') on the uint8, modcropped HR.
    from bsr.cli import main

    out = tmp_path / f"x{scale}"
    assert main(["degrade", "--hr", str(shared_data / "Set5" / "HR"), "--out", str(out), "--scale", str(scale),
                 "--kind", "BI"]) == 0
    matlab = sorted((shared_data / "Set5" / "LR_bicubic" / f"X{scale}").glob("*.png"))
    assert len(matlab) == 5
    for path in matlab:
        ours = read_image(out / f"{path.stem[:-len(f'x{scale}')]}.png")
        assert ours.dtype == np.uint8 and ours.shape == read_image(path).shape
        assert (ours == read_image(path)).all(), path.name


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
