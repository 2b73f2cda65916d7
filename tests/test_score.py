"""`bsr score`: another method's SR folder scored as evaluation scores ours, on the real benchmark images, and every
way a released folder can be scored wrong refused in one line. Each of the 9 cells prints its largest difference
from `bsr eval-bicubic` (`pytest -n 0 -s tests/test_score.py -k equals`; BSD100's are marked slow)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bsr import BsrError
from bsr.cli import main
from bsr.degrade import degrade, upscale_bicubic
from bsr.evaluate import score_set
from bsr.images import list_images, read_image, write_image
from bsr.score import looks_like, pair_outputs, score_outputs

PATTERN = "{stem}_BIC_x{scale}"  # as released folders name their files (RCAN: {stem}_RCAN_x{scale})


def write_bicubic_outputs(hr_dir: Path, sr_dir: Path, scale: int, pattern: str = PATTERN) -> Path:
    """The bicubic baseline's SR image of every HR image, made as `bsr eval-bicubic` makes it, in a released-style
    folder: known scores, bit for bit."""
    sr_dir.mkdir(parents=True)
    for path in list_images(hr_dir):
        lr = degrade(read_image(path), scale, "BI", name=str(path))
        write_image(sr_dir / f"{pattern.format(stem=path.stem, scale=scale)}.png", upscale_bicubic(lr, scale))
    return sr_dir


def one_line_error(capsys) -> str:
    """The error bsr printed last, checked to be one line with no traceback (a progress bar may come before it)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1].startswith("bsr: error: "), err
    return err.splitlines()[-1]


# ---- scores: equal to the bicubic baseline's, image by image ------------------------------------------------

# On 2 cores a cell takes about 8 s on BSD100's 100 images, 2 to 5 s on Set14, 1 s on Set5.
CELLS = [pytest.param(dataset, scale, marks=[pytest.mark.slow] if dataset == "BSD100" else [])
         for dataset in ("Set5", "Set14", "BSD100") for scale in (2, 3, 4)]


@pytest.mark.parametrize("dataset,scale", CELLS)
def test_score_equals_eval_bicubic(dataset, scale, shared_data, tmp_path, capsys):
    hr = shared_data / dataset / "HR"
    sr = write_bicubic_outputs(hr, tmp_path / "sr", scale)
    assert main(["eval-bicubic", "--hr", str(hr), "--scale", str(scale), "--kind", "BI",
                 "--out", str(tmp_path / "bicubic.json")]) == 0
    assert main(["score", "--sr", str(sr), "--hr", str(hr), "--scale", str(scale), "--match", PATTERN,
                 "--dataset", dataset, "--method", "Bicubic", "--out", str(tmp_path / "score.json")]) == 0
    bicubic, scored = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("bicubic", "score"))
    assert scored["n"] == bicubic["n"] == len(list_images(hr))
    assert (scored["verb"], bicubic["verb"]) == ("score", "eval-bicubic")
    assert {key: scored[key] for key in bicubic if key not in ("psnr", "ssim", "verb")} == \
        {key: bicubic[key] for key in bicubic if key not in ("psnr", "ssim", "verb")}
    csv = {name: pd.read_csv(tmp_path / f"{name}.csv", dtype={"image": str}) for name in ("bicubic", "score")}
    assert list(csv["score"]["image"]) == list(csv["bicubic"]["image"])
    # The CSVs hold 6 decimals; image by image at full precision, from the functions the verbs call.
    expected = score_set(hr, scale, "BI", lambda lr: upscale_bicubic(lr, scale))
    got = score_outputs(sr, hr, scale, PATTERN)
    assert list(got["image"]) == list(expected["image"])
    diff = {metric: max(np.abs(got[metric] - expected[metric]).max(), abs(scored[metric] - bicubic[metric]),
                        np.abs(csv["score"][metric] - csv["bicubic"][metric]).max()) for metric in ("psnr", "ssim")}
    with capsys.disabled():
        print(f"\n{dataset} x{scale}: {bicubic['psnr']:.4f}/{bicubic['ssim']:.4f}, largest |psnr diff| "
              f"{diff['psnr']:.3g}, |ssim diff| {diff['ssim']:.3g}")
    assert diff["psnr"] <= 1e-6 and diff["ssim"] <= 1e-6


def test_summary_records_the_protocol(shared_data, tmp_path):
    sr = write_bicubic_outputs(shared_data / "Set5" / "HR", tmp_path / "sr", 3, "{stem}x{scale}_SR")
    assert main(["score", "--sr", str(sr), "--hr", str(shared_data / "Set5" / "HR"), "--scale", "3", "--match",
                 "{stem}x{scale}_SR", "--space", "rgb", "--out", str(tmp_path / "score.json")]) == 0
    summary = json.loads((tmp_path / "score.json").read_text())
    assert {key: summary[key] for key in summary if key not in ("psnr", "ssim")} == {
        "n": 5, "verb": "score", "scale": 3, "kind": "BI", "space": "rgb", "method": None, "dataset": "HR", "shave": 3,
        "crop": "HR cropped to a multiple of the scale", "match": "{stem}x{scale}_SR", "sr": str(sr),
        "hr": str(shared_data / "Set5" / "HR")}


def test_pairs_by_name_not_sorted_order(shared_data, tmp_path):
    """`a` sorts before `a_b`, but `a_b_x2` before `a_x2`: pairing by sorted order would swap them."""
    hr, sr = tmp_path / "hr", tmp_path / "sr"
    hr.mkdir()
    sources = list_images(shared_data / "Set5" / "HR")[:2]
    for name, source in zip(("a", "a_b"), sources):
        shutil.copy(source, hr / f"{name}.png")
    write_bicubic_outputs(hr, sr, 2, "{stem}_x{scale}")
    assert [p.name for p in list_images(sr)] == ["a_b_x2.png", "a_x2.png"]
    assert [(h.name, s.name) for h, s in pair_outputs(sr, hr, "{stem}_x{scale}", 2)] == \
        [("a.png", "a_x2.png"), ("a_b.png", "a_b_x2.png")]
    assert score_outputs(sr, hr, 2, "{stem}_x{scale}")["psnr"].gt(25).all()  # mispaired images score far lower


# ---- refusals: one line naming the files, and nothing written -----------------------------------------------

@pytest.fixture(scope="module")
def released(shared_data, tmp_path_factory):
    """Set5's HR images and their bicubic x2 and x3 outputs, as released folders name them."""
    tmp = tmp_path_factory.mktemp("released")
    hr = tmp / "hr"
    shutil.copytree(shared_data / "Set5" / "HR", hr)
    return {"hr": hr, 2: write_bicubic_outputs(hr, tmp / "x2", 2), 3: write_bicubic_outputs(hr, tmp / "x3", 3)}


@pytest.fixture
def sr(released, tmp_path):
    """A copy of the x2 folder, for a test to spoil."""
    return Path(shutil.copytree(released[2], tmp_path / "sr"))


def refused(capsys, tmp_path, sr, hr, *extra, scale=2) -> str:
    """The one-line error of `bsr score` on `sr`, checked to leave no summary, CSV or temporary file."""
    out = tmp_path / "out"
    code = main(["score", "--sr", str(sr), "--hr", str(hr), "--scale", str(scale), "--match", PATTERN,
                 "--out", str(out / "score.json"), *extra])
    assert code == 1
    assert not out.exists() or not any(out.iterdir())
    return one_line_error(capsys)


def test_refuses_shaved_sr(released, sr, tmp_path, capsys):
    img = read_image(sr / "bird_BIC_x2.png")
    write_image(sr / "bird_BIC_x2.png", img[2:-2, 2:-2])  # shaved by the scale, as some tools save
    err = refused(capsys, tmp_path, sr, released["hr"])
    assert "bird_BIC_x2.png: SR image is 284x284 pixels" in err and "is 288x288" in err
    assert "looks shaved by 2 px per side" in err


def test_refuses_padded_sr(released, sr, tmp_path, capsys):
    img = read_image(sr / "head_BIC_x2.png")
    write_image(sr / "head_BIC_x2.png", np.pad(img, ((3, 3), (3, 3), (0, 0)), mode="edge"))
    err = refused(capsys, tmp_path, sr, released["hr"])
    assert "head_BIC_x2.png: SR image is 286x286 pixels" in err and "is 280x280" in err
    assert "looks padded by 3 px per side" in err


def test_refuses_missing_sr(released, sr, tmp_path, capsys):
    (sr / "butterfly_BIC_x2.png").unlink()
    err = refused(capsys, tmp_path, sr, released["hr"])
    assert "no SR file" in err and "1 HR image(s)" in err and "butterfly.png (expected butterfly_BIC_x2.png" in err


def test_refuses_extra_sr(released, sr, tmp_path, capsys):
    shutil.copy(sr / "baby_BIC_x2.png", sr / "baby_BIC_x3.png")
    err = refused(capsys, tmp_path, sr, released["hr"])
    assert "1 image(s) match no HR image" in err and err.endswith("baby_BIC_x3.png; remove them or score another "
                                                                   "folder")


def test_refuses_many_extra_sr_naming_a_few(released, sr, tmp_path, capsys):
    for i in range(6):
        shutil.copy(sr / "baby_BIC_x2.png", sr / f"other{i}.png")
    err = refused(capsys, tmp_path, sr, released["hr"])
    assert "6 image(s) match no HR image" in err and "other0.png, other1.png, other2.png and 3 more" in err


def test_refuses_two_sr_for_one_hr(released, sr, tmp_path, capsys):
    Image.open(sr / "baby_BIC_x2.png").save(sr / "baby_BIC_x2.bmp", format="BMP")
    err = refused(capsys, tmp_path, sr, released["hr"])
    assert "more than one SR file" in err and "baby_BIC_x2.bmp and baby_BIC_x2.png (for baby.png)" in err


def test_refuses_two_hr_of_one_stem(released, sr, tmp_path, capsys):
    hr = Path(shutil.copytree(released["hr"], tmp_path / "hr"))
    Image.open(hr / "bird.png").save(hr / "bird.bmp", format="BMP")
    err = refused(capsys, tmp_path, sr, hr)
    assert "HR images of one stem" in err and err.endswith("bird.bmp and bird.png")


def test_refuses_sr_of_another_scale(released, tmp_path, capsys):
    """A x3 run's outputs, named as x2 ones, scored with --scale 2: baby is 510x510 instead of 512x512."""
    sr = tmp_path / "sr"
    sr.mkdir()
    for path in list_images(released[3]):
        shutil.copy(path, sr / path.name.replace("_x3", "_x2"))
    err = refused(capsys, tmp_path, sr, released["hr"])
    assert "baby_BIC_x2.png: SR image is 510x510 pixels" in err and "is 512x512" in err
    assert "looks like an output of an x3," in err


@pytest.mark.parametrize("pattern,why", [
    ("baby_x{scale}", "has no {stem}"), ("{stem}_{name}", "has {name}"), ("{stem", "not a pattern"),
    ("{stem}_{0}", "has {0}"), ("{stem!r}", "has {stem!r}"), ("{stem}_{scale:02d}", "has {scale:02d}"),
    ("{stem}_x{scale}.png", "a pattern of the file's stem, without folder"), ("x2/{stem}", "a pattern of")])
def test_refuses_bad_match_pattern(released, sr, tmp_path, capsys, pattern, why):
    err = refused(capsys, tmp_path, sr, released["hr"], "--match", pattern)
    assert err.startswith(f"bsr: error: --match {pattern!r}: {why}")


def test_refuses_channel_mismatch(released, sr, tmp_path, capsys):
    write_image(sr / "woman_BIC_x2.png", read_image(sr / "woman_BIC_x2.png")[..., 1])  # saved gray
    err = refused(capsys, tmp_path, sr, released["hr"])
    assert "woman_BIC_x2.png: SR image is gray (1 channel), but its HR" in err and "colour (3 channels)" in err


def test_refuses_output_over_an_input(released, sr, capsys):
    for out in (released["hr"] / "score.json", sr / "score.json"):
        assert main(["score", "--sr", str(sr), "--hr", str(released["hr"]), "--scale", "2", "--match", PATTERN,
                     "--out", str(out)]) == 1
        assert "refused as an output, it lies inside the input" in one_line_error(capsys)
        assert not out.exists() and not out.with_suffix(".csv").exists()


def test_looks_like_names_each_cause():
    hr = (321, 481)  # a BSD100 image: cropped to 320x480 at x2
    assert "like the uncropped HR" in looks_like(hr, hr, 2)
    assert "like an output of an x3 run" in looks_like((321, 480), hr, 2)
    assert "like an LR image (the HR's size divided by 2)" in looks_like((160, 240), hr, 2)
    assert looks_like((316, 476), hr, 2) == "it looks shaved by 2 px per side"
    assert looks_like((320, 470), hr, 2) == "it looks cropped (0 rows and 10 columns fewer)"
    assert looks_like((330, 470), hr, 2) == "it looks resized"


def test_python_api_refuses_unknown_kind(released, tmp_path):
    from bsr.score import score

    with pytest.raises(BsrError, match="unknown degradation kind 'XY'"):
        score(released[2], released["hr"], 2, tmp_path / "s.json", PATTERN, kind="XY")


def test_a_rescored_cell_shows_beside_the_published_one_marked_only_when_they_differ():
    from bsr.report import RESCORED_MARK, literature_text

    close = literature_text((38.27, ""), {"psnr": 38.274168, "ssim": 0.961445}, "psnr", "bold")
    assert (close.text, close.flag, close.style) == ("38.27 (38.27)", "", "bold")
    far = literature_text((0.9614, "†"), {"psnr": 38.2, "ssim": 0.9605}, "ssim", "")
    assert (far.text, far.flag) == ("0.9614 (0.9605)", "†" + RESCORED_MARK)


@pytest.mark.slow
def test_a_pipeline_rescores_released_outputs_beside_their_published_cells(shared_data, tmp_path):
    """Two released-style folders of our own: the bicubic baseline (the paper's Bi-cubic row) and a copy shifted
    by one pixel (named as another method's)."""
    import yaml

    from tests.conftest import project_copy, snakemake, tiny_pipeline_config

    good = write_bicubic_outputs(shared_data / "Set5" / "HR", tmp_path / "released" / "good", 2)
    shifted = tmp_path / "released" / "shifted"
    shifted.mkdir()
    for path in sorted(good.iterdir()):
        write_image(shifted / f"{path.name.split('_BIC_')[0]}x2_SR.png", np.roll(read_image(path), 1, axis=1))
    project = project_copy(tmp_path / "project")
    cfg = tiny_pipeline_config(shared_data)
    cfg["experiments"] = {"BI_x2": cfg["experiments"]["BI_x2"]}
    cfg["published"] = {
        "Bi-cubic": [{"dataset": "Set5", "degradation": "BI", "scale": 2, "source": good.as_uri(), "match": PATTERN}],
        "SRCNN": [{"dataset": "Set5", "degradation": "BI", "scale": 2, "source": shifted.as_uri(),
                   "match": "{stem}x{scale}_SR"}]}
    (project / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(project, "all", "--cores", "2", "--configfile", "tiny.yaml")
    bicubic = json.loads((project / "data" / "tiny" / "bicubic" / "Set5" / "BIx2.json").read_text())
    rescored = json.loads((project / "data" / "tiny" / "rescored" / "Bi-cubic" / "Set5" / "BIx2.json").read_text())
    assert (rescored["psnr"], rescored["ssim"]) == (bicubic["psnr"], bicubic["ssim"])
    table2 = (project / "reports" / "bsr-tiny" / "tables.md").read_text().split("## Table 2.")[1].split("## Table 3")[0]
    bicubic_row = next(line for line in table2.splitlines() if line.startswith("| Bi-cubic | ×2 |"))
    assert f"33.66 ({bicubic['psnr']:.2f})" in bicubic_row  # 33.67: 0.013 dB off the paper's, so marked
    srcnn_row = next(line for line in table2.splitlines() if line.startswith("| SRCNN | ×2 |"))
    shifted_psnr = json.loads((project / "data" / "tiny" / "rescored" / "SRCNN" / "Set5" / "BIx2.json").read_text())
    assert shifted_psnr["psnr"] < bicubic["psnr"] - 1 and f"({shifted_psnr['psnr']:.2f})‡" in srcnn_row
    assert "re-scored: Bi-cubic Set5 ×2 from file://" in table2 and "‡: ours differs from the published value" in table2
    print("\n" + "\n".join([bicubic_row, srcnn_row]))


def test_a_very_long_match_pattern_is_echoed_shortened(released, sr, tmp_path, capsys):
    err = refused(capsys, tmp_path, sr, released["hr"], "--match", "x" * 100_000)
    assert "has no {stem}" in err and "(100000 characters)" in err and len(err) < 400


@pytest.mark.parametrize("target,what", [("missing.png", "a symbolic link to a missing file"),
                                         ("/dev/zero", "not a regular file")])
def test_an_sr_file_that_is_a_broken_or_special_link_says_what_it_is(released, sr, tmp_path, capsys, target, what):
    (sr / "bird_BIC_x2.png").unlink()
    (sr / "bird_BIC_x2.png").symlink_to(target if target.startswith("/") else tmp_path / target)
    err = refused(capsys, tmp_path, sr, released["hr"])
    assert f"bird_BIC_x2.png: {what}" in err and "no SR file" not in err


def test_a_palette_sr_image_is_refused_as_lossy(released, sr, tmp_path, capsys):
    Image.open(sr / "bird_BIC_x2.png").quantize(256).save(sr / "bird_BIC_x2.png")
    err = refused(capsys, tmp_path, sr, released["hr"])
    assert "bird_BIC_x2.png: a palette image" in err and "lossy" in err


def test_an_sr_header_of_the_wrong_size_is_refused_before_it_is_decoded(released, sr, tmp_path, capsys):
    """A 100 KB PNG whose header says 10000×10000: refused on its header, with no 100 MB array decoded."""
    import tracemalloc
    import zlib

    from bsr.score import read_pair

    rows = zlib.compress(b"\0" * (10_000 * 10_001), 9)  # gray, filter byte 0 on each row
    chunk = lambda kind, data: (len(data).to_bytes(4, "big") + kind + data +  # noqa: E731
                                zlib.crc32(kind + data).to_bytes(4, "big"))
    png = sr / "bird_BIC_x2.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", (10_000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0]))
                    + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    tracemalloc.start()
    with pytest.raises(BsrError, match="bird_BIC_x2.png: SR image is 10000x10000 pixels"):
        read_pair(released["hr"] / "bird.png", png, 2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 << 20, f"{peak / 2**20:.0f} MiB traced"
