import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from bsr import BsrError
from bsr.cli import main
from bsr.images import read_image, write_image
from tests.conftest import REPO


def test_gray_file_stays_single_channel(shared_data):
    assert read_image(shared_data / "Set14" / "HR" / "bridge.png").ndim == 2
    assert read_image(shared_data / "T91" / "HR" / "t1.bmp").shape[2] == 3


def test_rgba_alpha_dropped_only_when_opaque(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    assert (read_image(tmp_path / "opaque.png") == rgba[..., :3]).all()
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    with pytest.raises(BsrError, match="clear.png.*transparent"):
        read_image(tmp_path / "clear.png")


def test_write_image_roundtrip_leaves_no_temp(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", img)
    assert (read_image(tmp_path / "a.png") == img).all()
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


# Bad input: each case must give a one-line error naming the file, a non-zero exit, and no output at all.

def _hr_dir(tmp_path, n=3, size=(24, 24)):
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(hr / f"img{i}.png")
    return hr


def truncated_png(path):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])


def png_16bit(path):
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")


def text_as_png(path):
    path.write_text("not an image\n")


def tiny_png(path):
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(path)


def bomb_png(path):
    """A valid 8x8 PNG whose header claims 100000 x 100000 pixels (CRC fixed, so only the size is wrong)."""
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def jpeg_as_png(path):
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(path, format="JPEG")


def gif_as_png(path):
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(path, format="GIF")


@pytest.mark.parametrize("make_bad,message", [
    (truncated_png, "truncated"),
    (png_16bit, "not 8-bit"),
    (text_as_png, "not an image"),
    (tiny_png, "smaller than scale 4"),
    (bomb_png, "header claims too many pixels"),
    (jpeg_as_png, "holds JPEG data, not PNG"),
    (gif_as_png, "holds GIF data, not PNG"),
])
@pytest.mark.parametrize("verb", ["degrade", "eval-bicubic"])
def test_bad_image_fails_cleanly(tmp_path, capsys, make_bad, message, verb):
    hr = _hr_dir(tmp_path)
    make_bad(hr / "img1_bad.png")
    out = tmp_path / ("lr" if verb == "degrade" else "bicubic.json")
    assert main([verb, "--hr", str(hr), "--out", str(out), "--scale", "4", "--kind", "BI"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "img1_bad.png" in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr"]


def test_empty_directory_fails_cleanly(tmp_path):
    (tmp_path / "hr").mkdir()
    result = subprocess.run([sys.executable, "-m", "bsr.cli", "degrade", "--hr", str(tmp_path / "hr"),
                             "--out", str(tmp_path / "lr"), "--scale", "2", "--kind", "BI"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip() == f"bsr: error: {tmp_path / 'hr'}: no PNG or BMP images found"
    assert not (tmp_path / "lr").exists()


def test_degrade_cli_writes_same_names(tmp_path):
    hr = _hr_dir(tmp_path, size=(25, 31))
    assert main(["degrade", "--hr", str(hr), "--out", str(tmp_path / "lr"), "--scale", "3", "--kind", "BD"]) == 0
    lr = sorted((tmp_path / "lr").glob("*.png"))
    assert [p.name for p in lr] == ["img0.png", "img1.png", "img2.png"]
    assert read_image(lr[0]).shape == (8, 10, 3)


def test_an_image_too_small_for_ssim_is_refused_not_scored_nan(tmp_path, capsys):
    hr = _hr_dir(tmp_path, size=(16, 16))  # x4: 8 x 8 pixels are left after shaving, SSIM's window is 11 x 11
    assert main(["eval-bicubic", "--hr", str(hr), "--out", str(tmp_path / "b.json"), "--scale", "4", "--kind", "BI"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "img0.png: 16x16 pixels leave 8x8 after shaving 4" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr"]


def test_pic_refuses_a_patch_without_pixels(tmp_path, capsys):
    hr = _hr_dir(tmp_path)
    assert main(["pic", "--lr", str(hr), "--out", str(tmp_path / "pic"), "--patch", "0", "--plot",
                 str(tmp_path / "p.png")]) == 1
    assert capsys.readouterr().err.strip() == ("bsr: error: patch size 0: a PIC patch needs at least 3x3 pixels "
                                               "(Sobel's valid region)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr"]


@pytest.mark.parametrize("verb", ["degrade", "pic"])
def test_an_output_folder_never_replaces_its_input_or_a_folder_bsr_did_not_write(tmp_path, capsys, verb):
    hr = _hr_dir(tmp_path)
    (tmp_path / "notes.txt").write_text("unrelated")
    flag = "--hr" if verb == "degrade" else "--lr"
    extra = ["--scale", "2", "--kind", "BI"] if verb == "degrade" else []
    for out, message in ((hr, "is the input"), (tmp_path, "holds the input")):
        assert main([verb, flag, str(hr), "--out", str(out), *extra]) == 1
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in hr.iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert (tmp_path / "notes.txt").read_text() == "unrelated"
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "thesis.tex").write_text("keep me")
    assert main([verb, flag, str(hr), "--out", str(tmp_path / "theirs"), *extra]) == 1
    assert "was not written by bsr" in capsys.readouterr().err and (tmp_path / "theirs" / "thesis.tex").is_file()
    for _ in range(2):  # a folder bsr wrote is replaced on a rerun
        assert main([verb, flag, str(hr), "--out", str(tmp_path / "ours"), *extra]) == 0


@pytest.mark.parametrize("argv,target_kind", [
    (["degrade", "--hr", "{hr}", "--scale", "2", "--kind", "BI", "--out", "{target}"], "file"),
    (["degrade", "--hr", "{hr}", "--scale", "2", "--kind", "BI", "--out", "{target}"], "link"),
    (["pic", "--lr", "{hr}", "--out", "{target}"], "file"),
    (["pic", "--lr", "{hr}", "--out", "{target}"], "link"),
    (["eval-bicubic", "--hr", "{hr}", "--scale", "2", "--kind", "BI", "--out", "{target}/x.json"], "file"),
    (["train", "--config", "{hr}/none.yaml", "--out", "{target}"], "file"),
])
def test_an_output_that_is_a_file_or_a_link_is_one_line(tmp_path, capsys, argv, target_kind):
    """A folder output never replaces a file or a link; nothing is written below a file."""
    hr = _hr_dir(tmp_path)
    target = tmp_path / "user.txt"
    if target_kind == "file":
        target.write_text("mine")
    else:
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")
    if argv[0] == "train":
        (hr / "none.yaml").write_text((REPO / "config" / "demo.yaml").read_text())
    assert main([a.format(hr=hr, target=target) for a in argv]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("bsr: error:") and "user.txt" in err
    assert target.is_symlink() or target.read_text() == "mine"


def test_a_refused_summary_is_refused_before_scoring_and_writes_no_csv(tmp_path, capsys):
    hr = _hr_dir(tmp_path)
    (tmp_path / "d.json").mkdir()
    (tmp_path / "d.json" / "mine.txt").write_text("mine")
    assert main(["eval-bicubic", "--hr", str(hr), "--scale", "2", "--kind", "BI", "--out", str(tmp_path / "d.json")]) == 1
    assert "is a folder; the output is a file" in capsys.readouterr().err and not (tmp_path / "d.csv").exists()


def test_pic_checks_the_plot_patch_before_writing_tables(tmp_path, capsys):
    hr = _hr_dir(tmp_path)
    assert main(["pic", "--lr", str(hr), "--out", str(tmp_path / "pic"), "--patch", "100000", "--plot",
                 str(tmp_path / "p.png")]) == 1
    assert "--patch 100000: larger than every image" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr"]
