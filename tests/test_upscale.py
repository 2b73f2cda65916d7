"""`bsr upscale` and the inference it shares with `bsr evaluate`: tiles, the ×8 self-ensemble, and models from
run folders, model.pt files and MLflow, on real images through a tiny BSR trained here."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from bsr import BsrError
from bsr.cli import main
from bsr.degrade import degrade, modcrop, to_uint8
from bsr.evaluate import evaluate_run
from bsr.images import read_image
from bsr.train import train
from bsr.upscale import load_model, load_model_folder, model_upscaler, receptive_radius, upscale_files
from tests.conftest import tiny_experiment

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory):
    """A run folder of a tiny BSR (1 FMG of 8 channels) trained for a few iterations at x2."""
    tmp = tmp_path_factory.mktemp("upscale")
    train(tiny_experiment(tmp, shared_data, iterations=6), tmp / "run")
    return tmp / "run"


@pytest.fixture(scope="module")
def model(run):
    return load_model_folder(run, CPU)[0]


def lr_of(shared_data, dataset: str, name: str) -> np.ndarray:
    return degrade(modcrop(read_image(shared_data / dataset / "HR" / name), 2), 2, "BI")


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("scale,arch", [(2, {"n_fmg": 1}), (3, {"n_fmg": 2}), (4, {"n_fmg": 1}),
                                        (2, {"arch": "edsr", "n_blocks": 3})])
def test_receptive_radius_is_how_far_the_network_sees(scale, arch):
    """A huge change to one LR pixel reaches the outputs of the LR pixel `radius` away, and not one further (it
    must be huge: along the longest path its effect shrinks below float resolution). Seeded, because a random
    net may have every ReLU on that path off; with 16 channels that is rare."""
    from bsr.model import build_model

    torch.manual_seed(0)
    model_cfg = {"channels": 16, "res_scale": 1.0, "skip_connections": True, **arch}
    radius = receptive_radius(model_cfg)
    net = build_model(model_cfg, scale).eval()
    x = torch.rand(1, 3, 1, 2 * radius + 3)
    centre = slice(0, scale), slice(scale * (radius + 1), scale * (radius + 2))  # outputs of LR pixel radius + 1

    def changes(column):
        bumped = x.clone()
        bumped[..., column] += 1e25
        with torch.no_grad():
            return bool((net(bumped) != net(x))[0, :, centre[0], centre[1]].any())

    assert changes(2 * radius + 1) and not changes(2 * radius + 2)


@pytest.mark.parametrize("name", ["comic.png", "bridge.png"])  # RGB, gray
def test_tiled_equals_untiled_within_one_level(shared_data, run, model, name):
    lr = lr_of(shared_data, "Set14", name)
    radius = receptive_radius(load_model_folder(run, CPU)[1]["model_config"])
    assert radius == 14  # 3x3 convs: 10 in the FMG, then shallow, fusion, upsampling and the HR one
    whole = model_upscaler(model, CPU)(lr)
    tiled = model_upscaler(model, CPU, tile=64, overlap=radius)(lr)  # 20 tiles or more, 36x36 cores
    assert tiled.shape == whole.shape == (lr.shape[0] * 2, lr.shape[1] * 2) + lr.shape[2:]
    assert max_diff(tiled, whole) <= 1  # float sums in another order can round a pixel the other way
    print(f"{name}: tiled vs untiled, max difference {max_diff(tiled, whole)} level(s) of 255, "
          f"{np.mean(tiled != whole):.2e} of the values differ")
    # With no overlap the seams show: the comparison can tell tiles that lack context.
    assert max_diff(model_upscaler(model, CPU, tile=64, overlap=0)(lr), whole) > 1


def ensemble_by_hand(model, lr: np.ndarray) -> np.ndarray:
    outputs = []
    for k in range(4):
        for flip in (False, True):
            x = np.rot90(lr[:, ::-1] if flip else lr, k)
            with torch.no_grad():
                y = model(torch.from_numpy(x.copy()).permute(2, 0, 1)[None].float() / 255)
            y = np.rot90(y[0].permute(1, 2, 0).double().numpy(), -k)
            outputs.append(y[:, ::-1] if flip else y)
    return to_uint8(np.mean(outputs, axis=0) * 255)


def test_self_ensemble_is_the_mean_of_the_8_transforms_and_invariant_under_them(shared_data, model):
    lr = lr_of(shared_data, "Set5", "bird.png")[30:70, 40:95]  # not square: rotations change the shape
    ensemble = model_upscaler(model, CPU, ensemble=True)
    sr = ensemble(lr)
    assert max_diff(sr, ensemble_by_hand(model, lr)) <= 1
    assert max_diff(sr, model_upscaler(model, CPU)(lr)) > 1  # it is not the plain output
    assert max_diff(ensemble(lr[:, ::-1]), sr[:, ::-1]) <= 1
    assert max_diff(ensemble(lr[::-1]), sr[::-1]) <= 1
    assert max_diff(ensemble(np.rot90(lr)), np.rot90(sr)) <= 1
    # Tiled and ensembled together: each tile is ensembled, the stitched image is still the whole one's.
    assert max_diff(model_upscaler(model, CPU, tile=36, overlap=14, ensemble=True)(lr), sr) <= 1


def test_mlflow_runs_uri_round_trip_on_a_sqlite_store(shared_data, run, model, tmp_path, monkeypatch):
    """A model folder logged as `bsr train` logs it (flavour bsr) loads back by its runs:/ URI, and gives the
    same images as the run folder's."""
    from bsr.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracker = Tracker(uri, "upscale", "logged")
    tracker.log_model(run, "sha", {"scale": 2})
    loaded, scale = load_model(f"runs:/{tracker.run_id}/model", CPU)
    assert scale == 2 and loaded is not model
    lr = lr_of(shared_data, "Set5", "head.png")
    assert np.array_equal(model_upscaler(loaded, CPU, tile=48, overlap=14)(lr),
                          model_upscaler(model, CPU, tile=48, overlap=14)(lr))
    with pytest.raises(BsrError, match="^runs:/0123456789abcdef/model: cannot load this MLflow model"):
        load_model("runs:/0123456789abcdef/model", CPU)


def test_gray_rgba_and_palette_follow_the_image_rules_and_16_bit_is_refused(shared_data, run, model, tmp_path):
    rgb = read_image(shared_data / "Set5" / "HR" / "butterfly.png")[:60, :70]
    gray = read_image(shared_data / "Set14" / "HR" / "bridge.png")[:60, :70]
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(gray).save(folder / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(folder / "opaque.png")
    Image.fromarray(rgb).quantize(64).save(folder / "palette.png")
    Image.fromarray(rgb).save(folder / "rgb.bmp")
    upscale_files(str(run), folder, tmp_path / "out", tile=0)
    upscale = model_upscaler(model, CPU)
    out = {p.stem: Image.open(p) for p in (tmp_path / "out").glob("*.png")}
    assert sorted(out) == ["gray", "opaque", "palette", "rgb"]
    assert out["gray"].mode == "L" and np.array_equal(np.array(out["gray"]), upscale(gray))
    assert out["opaque"].mode == "RGB" and np.array_equal(np.array(out["opaque"]), np.array(out["rgb"]))
    # a palette image is an input to upscale (expanded to RGB), never scored
    assert np.array_equal(np.array(out["palette"]), upscale(read_image(folder / "palette.png", photo=True)))
    # a photo: JPEG, upscaled as a viewer shows it (EXIF orientation 6: rotated 90° clockwise), never scored
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    upscale_files(str(run), tmp_path / "photo.jpg", tmp_path / "photos", tile=0)
    shown = read_image(tmp_path / "photo.jpg", photo=True)
    assert shown.shape == (70, 60, 3)
    assert np.array_equal(np.array(Image.open(tmp_path / "photos" / "photo.png")), upscale(shown))
    with pytest.raises(BsrError, match="photo.jpg: JPEG is lossy, so it is read only as an input to upscale"):
        read_image(tmp_path / "photo.jpg")
    deep = tmp_path / "deep.png"
    Image.fromarray(gray.astype(np.uint16) * 257).save(deep)
    with pytest.raises(BsrError, match=f"^{deep}: I;16 image is not 8-bit"):
        upscale_files(str(run), deep, tmp_path / "out")


def test_cli_upscales_a_folder_tiled_with_progress_and_reruns_into_its_output(shared_data, run, tmp_path, capsys):
    out = tmp_path / "sr"
    hr = shared_data / "Set5" / "HR"
    argv = ["upscale", "--model", str(run), "--in", str(hr), "--out", str(out), "--tile", "128", "--overlap", "14"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"wrote 5 images into {out}"
    assert "image" in captured.err and "tile" in captured.err  # the bars go to stderr
    for path in sorted(hr.iterdir()):
        sr = Image.open(out / f"{path.stem}.png")
        assert sr.size == tuple(2 * s for s in Image.open(path).size)
    assert sorted(p.name for p in out.iterdir()) == [".bsr-output", "baby.png", "bird.png", "butterfly.png",
                                                     "head.png", "woman.png"]
    one = hr / "bird.png"
    assert main(["upscale", "--model", str(run / "model.safetensors"), "--in", str(one), "--out", str(out),
                 "--self-ensemble", "--device", "cpu"]) == 0  # a model file, one image, the same folder again
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("argv,message", [
    (["--model", "{tmp}/nowhere"], "{tmp}/nowhere: no such run folder or model folder, nor an MLflow model URI"),
    (["--model", "{tmp}/empty"], "{tmp}/empty: no model.json"),
    (["--model", "{tmp}/garbage.pt"], "{tmp}/garbage.pt: not a model folder"),
    (["--in", "{tmp}/missing"], "{tmp}/missing: no such file or folder (--in expects a PNG, BMP or JPEG image"),
    (["--in", "{tmp}/photo.gif"], "{tmp}/photo.gif: --in expects a PNG, BMP or JPEG image"),
    (["--tile", "20", "--overlap", "10"], "--tile 20 must be more than twice --overlap 10"),
    (["--tile", "-1"], "--tile -1 --overlap 32: both must be >= 0"),
    (["--out", "{tmp}"], "{tmp}: exists and was not written by bsr"),
    (["--out", "{hr}"], "{hr}: refused as an output, it is the input"),
])
def test_errors_are_one_line_naming_the_file_or_flag(shared_data, run, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.pt").write_bytes(b"garbage" * 10)
    (tmp_path / "photo.gif").write_bytes(b"GIF89a")
    hr = shared_data / "Set5" / "HR"
    given = dict(zip(argv[::2], argv[1::2]))
    options = {"--model": str(run), "--in": str(hr), "--out": str(tmp_path / "out"), **given}
    fill = {"tmp": tmp_path, "hr": hr}
    assert main(["upscale", *(s.format(**fill) for pair in options.items() for s in pair)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"bsr: error: {message.format(**fill)}")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_without_a_gpu_is_one_line(run, tmp_path, shared_data, capsys):
    assert main(["upscale", "--model", str(run), "--in", str(shared_data / "Set5" / "HR"), "--out",
                 str(tmp_path / "out"), "--device", "cuda"]) == 1
    assert capsys.readouterr().err == "bsr: error: --device cuda: no CUDA device is available here\n"


def test_evaluate_tiles_without_changing_scores_and_scores_the_self_ensemble(shared_data, run, tmp_path):
    hr = shared_data / "Set5" / "HR"
    whole = evaluate_run(run, hr, None, "Set5", tmp_path / "whole.json", tile=0)
    default = evaluate_run(run, hr, None, "Set5", tmp_path / "default.json")
    tiled = evaluate_run(run, hr, None, "Set5", tmp_path / "tiled.json", tile=64)  # 36x36 cores
    plus = evaluate_run(run, hr, None, "Set5", tmp_path / "plus.json", self_ensemble=True)
    assert (tmp_path / "whole.csv").read_bytes() == (tmp_path / "default.csv").read_bytes()
    assert tiled["psnr"] == pytest.approx(whole["psnr"], abs=2e-3) and tiled["ssim"] == pytest.approx(whole["ssim"],
                                                                                                      abs=1e-5)
    assert "self_ensemble" not in whole and json.loads((tmp_path / "plus.json").read_text())["self_ensemble"] is True
    assert plus["psnr"] != whole["psnr"]
    with pytest.raises(BsrError, match=r"^--tile 28: expected 0 \(no tiling\) or more than 28 LR pixels"):
        evaluate_run(run, hr, None, "Set5", tmp_path / "bad.json", tile=28)
