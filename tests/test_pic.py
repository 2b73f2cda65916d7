import numpy as np
import pytest

from bsr import BsrError
from bsr.cli import main
from bsr.pic import all_crop_pics, load_table, pic_direct, pic_from_table, summed_area_table, write_tables
from bsr.images import as_rgb, read_image


@pytest.mark.parametrize("reduce", ["sum", "max"])
def test_table_pic_equals_direct_sobel_for_random_and_border_crops(reduce):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    table = summed_area_table(img, reduce)
    for size in (5, 16, 48):
        corners = [(0, 0), (70 - size, 90 - size), (0, 90 - size), (70 - size, 0)]
        corners += [(rng.integers(0, 71 - size), rng.integers(0, 91 - size)) for _ in range(40)]
        for y, x in corners:
            assert pic_from_table(table, y, x, size) == pic_direct(img[y:y + size, x:x + size], reduce)
        every = all_crop_pics(table, size)
        assert every.shape == (71 - size, 91 - size)
        assert every[3, 7] == pic_direct(img[3:3 + size, 7:7 + size], reduce)


def test_pic_is_sobel_absolute_sum():
    # A vertical step edge of height 10: Sobel Gx is 4·10 on the two columns beside the step, Gy is 0.
    img = np.zeros((6, 6), np.uint8)
    img[:, 3:] = 10
    assert pic_direct(img) == 4 * 4 * 10 * 2  # 4 valid rows x 2 columns x |Gx| = 40
    rgb = np.stack([img, img * 2, img], axis=2)
    assert pic_direct(rgb, "sum") == 320 + 640 + 320
    assert pic_direct(rgb, "max") == 640


def test_tables_saved_and_checked(shared_data, tmp_path):
    assert main(["pic", "--lr", str(shared_data / "Set5" / "HR"), "--out", str(tmp_path / "pic"),
                 "--plot", str(tmp_path / "balance.png"), "--patch", "32"]) == 0
    img = as_rgb(read_image(shared_data / "Set5" / "HR" / "bird.png"))
    table = load_table(tmp_path / "pic", "bird", "sum", img.shape)
    assert (table == summed_area_table(img)).all()
    assert (tmp_path / "balance.png").stat().st_size > 1000
    with pytest.raises(BsrError, match="reduce='sum', the config asks for 'max'"):
        load_table(tmp_path / "pic", "bird", "max", img.shape)
    with pytest.raises(BsrError, match="does not fit"):
        load_table(tmp_path / "pic", "bird", "sum", (10, 10, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["balance.png", "pic"]
    write_tables(shared_data / "Set5" / "HR", tmp_path / "pic", "max")  # replaces the directory whole
    assert load_table(tmp_path / "pic", "bird", "max", img.shape).shape == table.shape
