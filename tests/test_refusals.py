"""What bsr refuses, as a new user or an attacker would try it: code from model files, outputs over inputs or
over folders that another verb wrote, unbounded waits and expansions, colliding labels, malformed records. Each
refusal is one line naming the file or key, and leaves every input as it was."""
import hashlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bsr import BsrError
from bsr.cli import main
from bsr.config import check_experiment, check_pipeline, load_pipeline, load_yaml
from bsr.train import train
from tests.conftest import REPO, command_env, tiny_experiment, tiny_pipeline_config


def tree_digest(path: Path) -> str:
    """One digest of every file below `path` (or of the file), by relative name."""
    digest = hashlib.sha256()
    for f in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
        digest.update(str(f.relative_to(path if path.is_dir() else path.parent)).encode() + f.read_bytes())
    return digest.hexdigest()


def one_line_error(capsys) -> str:
    """The error bsr printed last, checked to be one line, with no traceback before it (progress bars may be)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1].startswith("bsr: error: "), err
    return err.splitlines()[-1]


@pytest.fixture(scope="module")
def project(shared_data, tmp_path_factory):
    """A downloaded test set (HR, written by `bsr download`), its degraded LR, and a trained run folder."""
    tmp = tmp_path_factory.mktemp("refusals")
    assert main(["download", "--name", "Set5", "--source", (shared_data / "Set5" / "HR").as_uri(), "--images", "5",
                 "--lock", str(tmp / "datasets.lock"), "--cache", str(tmp / "downloads"), "--out",
                 str(tmp / "hr")]) == 0
    assert main(["degrade", "--hr", str(tmp / "hr"), "--out", str(tmp / "lr"), "--scale", "2", "--kind", "BI"]) == 0
    train(tiny_experiment(tmp, shared_data, iterations=3), tmp / "run")
    return {"hr": tmp / "hr", "lr": tmp / "lr", "run": tmp / "run"}


# ---- 1. no code from an MLflow model ---------------------------------------------------------------------

class Payload(torch.nn.Module):
    """A module whose unpickling runs a shell command, as a crafted `data/model.pth` would."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def forward(self, x):
        return x

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


@pytest.mark.parametrize("verb", ["upscale", "export"])
def test_a_pickled_mlflow_model_is_refused_before_it_runs_code(project, tmp_path, capsys, verb):
    import mlflow.pytorch

    marker = tmp_path / "pwned"
    mlflow.pytorch.save_model(Payload(str(marker)), tmp_path / "model", serialization_format="pickle",
                              pip_requirements=["torch"])
    assert (tmp_path / "model" / "data" / "model.pth").is_file() and not marker.exists()
    uri = (tmp_path / "model").as_uri()
    out = ["--in", str(project["hr"]), "--out", str(tmp_path / "sr")] if verb == "upscale" else \
        ["--onnx", str(tmp_path / "model.onnx")]
    assert main([verb, "--model", uri, *out]) == 1
    assert "which bsr no longer loads (its format can run code)" in one_line_error(capsys)
    assert not marker.exists()


def test_a_model_that_ships_code_is_refused(tmp_path, capsys, project):
    from bsr.upscale import load_model

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "model.pt2").write_bytes(b"")
    (tmp_path / "MLmodel").write_text(yaml.safe_dump({"flavors": {"pytorch": {"model_data": "data", "code": "code"}}}))
    with pytest.raises(BsrError, match="which bsr no longer loads"):
        load_model(tmp_path.as_uri(), torch.device("cpu"))


# ---- 2, 3, 4. outputs never replace inputs, nor folders ------------------------------------------------------

@pytest.mark.parametrize("argv,refusal", [
    # 2. a file output where a folder is
    (["export", "--model", "{run}", "--onnx", "{hr}"], "{hr}: is a folder; the output is a file"),
    (["eval-bicubic", "--hr", "{hr}", "--scale", "2", "--kind", "BI", "--out", "{tmp}/b.json", "--sample", "{lr}"],
     "{lr}: is a folder; the output is a file"),
    (["dvc-yaml", "--config", "{config}", "--out", "{hr}"], "{hr}: is a folder; the output is a file"),
    (["pic", "--lr", "{lr}", "--out", "{tmp}/pic", "--plot", "{hr}"], "{hr}: is a folder; the output is a file"),
    # 3. a file output over one of the verb's inputs, or a file inside an input folder
    (["eval-bicubic", "--hr", "{hr}", "--scale", "2", "--kind", "BI", "--out", "{tmp}/b.json", "--sample",
      "{hr}/baby.png"], "{hr}/baby.png: refused as an output, it lies inside the input {hr}"),
    (["evaluate", "--run", "{run}", "--hr", "{hr}", "--lr", "{lr}", "--dataset", "Set5", "--out", "{tmp}/e.json",
      "--sample", "{run}/model.pt"], "{run}/model.pt: refused as an output, it lies inside the input {run}"),
    (["export", "--model", "{run}", "--onnx", "{run}/model.pt"], "{run}/model.pt: refused as an output, it lies inside"),
    (["export", "--model", "{run}/model.pt", "--onnx", "{run}/model.pt"], "{run}/model.pt: refused as an output, it is"),
    (["export", "--model", "{run}/model.pt", "--onnx", "{run}/checkpoint.pt"],
     "{run}: was written by `bsr train`; `bsr export` refuses to write into it"),
    (["eval-bicubic", "--hr", "{hr}", "--scale", "2", "--kind", "BI", "--out", "{tmp}/b.json", "--sample",
      "{tmp}/b.json"], "{tmp}/b.json: named for two outputs"),
    # 4. a folder that another verb wrote
    (["upscale", "--model", "{run}", "--in", "{lr}", "--out", "{hr}"],
     "{hr}: was written by `bsr download`; `bsr upscale` refuses to write into it"),
    (["degrade", "--hr", "{lr}", "--out", "{hr}", "--scale", "2", "--kind", "BI"],
     "{hr}: was written by `bsr download`; `bsr degrade` refuses"),
    (["train", "--config", "{tmp}/exp.yaml", "--out", "{hr}"], "{hr}: was written by `bsr download`; `bsr train` refuses"),
])
def test_no_output_replaces_an_input_or_a_folder_it_did_not_write(shared_data, project, tmp_path, capsys, argv,
                                                                  refusal):
    fill = {"tmp": tmp_path, "config": REPO / "config" / "demo.yaml", **project}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(tiny_experiment(tmp_path, shared_data)))
    before = {key: tree_digest(path) for key, path in project.items()}
    assert main([arg.format(**fill) for arg in argv]) == 1
    assert one_line_error(capsys).startswith(f"bsr: error: {refusal.format(**fill)}")
    assert {key: tree_digest(path) for key, path in project.items()} == before


def test_a_verb_rewrites_its_own_folder(project, tmp_path, capsys):
    out = tmp_path / "sr"
    for _ in range(2):
        assert main(["upscale", "--model", str(project["run"]), "--in", str(project["lr"]), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([".bsr-output", *(p.name for p in project["lr"].glob("*.png"))])
    assert "bsr upscale" in (out / ".bsr-output").read_text()


# ---- 5. a tracking server that does not answer ----------------------------------------------------------

CLOSED_PORT = "http://127.0.0.1:1/"


def test_an_unreachable_tracking_server_fails_at_once_naming_it(shared_data, tmp_path):
    """bsr train and bsr upscale against a closed local port: one line naming the URI, well within 30 s."""
    exp = tiny_experiment(tmp_path, shared_data)
    exp["tracking"] = {"uri": CLOSED_PORT, "experiment": "tiny"}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    env = {**command_env(), "MLFLOW_TRACKING_URI": CLOSED_PORT}
    commands = {"train": ["bsr", "train", "--config", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "run")],
                "upscale": ["bsr", "upscale", "--model", "models:/bsr-tiny@paper", "--in", str(tmp_path / "lr"),
                            "--out", str(tmp_path / "sr")]}
    for verb, command in commands.items():
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        seconds = time.perf_counter() - start
        print(f"{verb} against a closed port: {seconds:.1f} s")
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 1 and seconds < 30, (seconds, result.stderr[-2000:])
        assert last.startswith("bsr: error: http://127.0.0.1:1/: the MLflow tracking server does not answer"), last
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_training_logs_to_a_real_tracking_server_and_its_model_loads_back(shared_data, tmp_path):
    """A real `mlflow server` on 127.0.0.1 (sqlite backend, artifacts in a temp folder), stopped by its pid."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "artifacts")], stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"),
        start_new_session=True, env=command_env())
    try:
        for _ in range(120):
            try:
                import urllib.request
                urllib.request.urlopen(f"{uri}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
        exp = tiny_experiment(tmp_path, shared_data)
        exp["tracking"] = {"uri": uri, "experiment": "served", "registered_model": "bsr-served",
                           "model_alias": "served"}
        summary = train(exp, tmp_path / "run")
        assert summary["mlflow_model_uri"] == "models:/bsr-served/1" and summary["tracking_uri"] == uri
        env = {**command_env(), "MLFLOW_TRACKING_URI": uri}
        result = subprocess.run(["bsr", "upscale", "--model", "models:/bsr-served@served", "--in",
                                 str(tmp_path / "lr"), "--out", str(tmp_path / "sr")],
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert main(["upscale", "--model", str(tmp_path / "run"), "--in", str(tmp_path / "lr"), "--out",
                     str(tmp_path / "sr_local")]) == 0
        from bsr.images import read_image
        for png in sorted((tmp_path / "sr").glob("*.png")):  # the served model is the trained one
            assert np.abs(read_image(png).astype(int) - read_image(tmp_path / "sr_local" / png.name)).max() <= 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# ---- 6. labels that cannot collide ----------------------------------------------------------------------

def test_labels_that_would_collide_in_the_report_are_refused(shared_data):
    cfg = tiny_pipeline_config(shared_data)
    cfg["experiments"]["edsr"] = {"scale": 2, "degradation": "BI", "method": "EDSR"}
    with pytest.raises(BsrError, match=r"^config: experiments.edsr.method: 'EDSR' is a row of the paper's tables"):
        check_pipeline(cfg)
    cfg = tiny_pipeline_config(shared_data)
    cfg["experiments"]["ablation_wo_rfs"]["ablation"] = "Baseline"
    with pytest.raises(BsrError, match=r"^config: experiments.ablation_baseline.ablation and "
                                       r"experiments.ablation_wo_rfs.ablation are both 'Baseline'"):
        check_pipeline(cfg)


# ---- 8. YAML aliases that expand without bound ------------------------------------------------------------

def test_a_billion_laughs_config_is_refused_at_once(tmp_path):
    text, previous = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n', "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        previous = name
    (tmp_path / "laughs.yaml").write_text(text)
    start = time.perf_counter()
    with pytest.raises(BsrError, match="laughs.yaml: its aliases expand to over 100,000 values"):
        load_yaml(tmp_path / "laughs.yaml")
    assert time.perf_counter() - start < 1
    (tmp_path / "anchors.yaml").write_text("a: &x {b: 1}\nc: *x\n")  # ordinary anchors still load
    assert load_yaml(tmp_path / "anchors.yaml") == {"a": {"b": 1}, "c": {"b": 1}}


# ---- 9, 10. malformed records: one line, never a traceback, never a NaN rendered -------------------------------

@pytest.mark.parametrize("text,problem", [
    ('{"psnr": 30.1, "ssim": 0.9', "not readable JSON"),
    ('{"ssim": 0.9, "n": 5, "space": "y"}', "psnr is missing, expected a finite number"),
    ('[30.1, 0.9]', "a JSON list, not a mapping"),
    ('{"psnr": NaN, "ssim": 0.9, "n": 5, "space": "y"}', "not readable JSON: NaN is not a number JSON allows"),
    ('{"psnr": Infinity, "ssim": 0.9, "n": 5, "space": "y"}', "not readable JSON: Infinity is not a number JSON allows"),
    ('{"psnr": 1e999, "ssim": 0.9, "n": 5, "space": "y"}', "psnr is inf, expected a finite number"),
    ('{"psnr": 30.1, "ssim": 0.9, "n": 0, "space": "y"}', "n is 0, expected a positive whole number"),
])
def test_a_malformed_eval_json_is_one_line_naming_it(tmp_path, text, problem):
    from bsr.scores import read_record

    (tmp_path / "Set5.json").write_text(text)
    with pytest.raises(BsrError) as err:
        read_record(tmp_path / "Set5.json")
    assert str(err.value).startswith(f"{tmp_path / 'Set5.json'}: not what bsr writes there ({problem}")


@pytest.mark.parametrize("change,problem", [
    ({"scale": 5}, "scale is 5, expected 2, 3 or 4"),
    ({"model_config": {"channels": 8}}, "model_config: <top level>: 'n_fmg' is a required property"),
    ({"format": "pickle"}, "model.json is not a bsr model record"),
    ({"model_config": {"arch": "transformer"}}, "model_config: arch: 'transformer' is not one of ['bsr', 'edsr']"),
    ({"model_config": {"n_fmg": 100000}}, "model_config: n_fmg: 100000 is greater than the maximum of 64"),
])
def test_a_malformed_model_file_is_one_line_naming_it(project, tmp_path, capsys, change, problem):
    import json
    import shutil

    (tmp_path / "model").mkdir()
    shutil.copy(project["run"] / "model.safetensors", tmp_path / "model")
    saved = json.loads((project["run"] / "model.json").read_text())
    if "model_config" in change and "channels" not in change["model_config"]:
        change = {"model_config": {**saved["model_config"], **change["model_config"]}}
    (tmp_path / "model" / "model.json").write_text(json.dumps({**saved, **change}))
    assert main(["upscale", "--model", str(tmp_path / "model"), "--in", str(project["lr"]), "--out",
                 str(tmp_path / "sr")]) == 1
    assert one_line_error(capsys).startswith(f"bsr: error: {tmp_path / 'model'}: {problem}")


@pytest.mark.parametrize("train_change,problem", [
    ({"seed": 2**63}, "train.seed: 9223372036854775808 is greater than the maximum"),
    ({"seed": -1}, "train.seed: -1 is less than the minimum of 0"),
    ({"batch": 1e8}, "train.batch: 100000000.0 is greater than the maximum of 4096"),
])
def test_out_of_range_training_values_are_refused_by_the_schema(shared_data, tmp_path, train_change, problem):
    exp = tiny_experiment(tmp_path, shared_data)
    with pytest.raises(BsrError, match=f"^tiny: {problem}"):
        check_experiment({**exp, "train": {**exp["train"], **train_change}}, "tiny")


@pytest.mark.parametrize("name", ["bsr-demo\n", "..", "."])
def test_names_with_a_trailing_newline_or_dots_only_are_refused(shared_data, name):
    with pytest.raises(BsrError, match="^config: name: .* does not match"):
        check_pipeline({**tiny_pipeline_config(shared_data), "name": name})
    cfg = tiny_pipeline_config(shared_data)
    cfg["datasets"]["Set5\n"] = cfg["datasets"].pop("Set5")
    with pytest.raises(BsrError, match="does not match"):
        check_pipeline(cfg)


# ---- 11. leftovers and messages ----------------------------------------------------------------------------

def test_a_models_uri_without_a_store_names_it_and_creates_none(project, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["upscale", "--model", "models:/bsr-tiny@paper", "--in", str(project["lr"]), "--out", "sr"]) == 1
    err = one_line_error(capsys)
    assert "models:/bsr-tiny@paper: no MLflow store to look it up in" in err and str(tmp_path / "mlflow.db") in err
    assert not (tmp_path / "mlflow.db").exists()


def test_sigterm_during_upscale_leaves_no_partial_png(project, tmp_path, capsys, monkeypatch):
    """SIGTERM in the middle of writing a PNG: bsr exits 143, and no temporary file or folder is left."""
    from PIL import Image

    save = Image.Image.save

    def save_then_sigterm(self, fp, *args, **kwargs):
        save(self, fp, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # the PNG is written, not yet renamed into place
    monkeypatch.setattr(Image.Image, "save", save_then_sigterm)
    out = tmp_path / "sr"
    assert main(["upscale", "--model", str(project["run"]), "--in", str(project["lr"]), "--out", str(out)]) == 143
    assert sorted(p.name for p in out.iterdir()) == [".bsr-output"]
    assert "stopped by SIGTERM" in capsys.readouterr().err


def test_a_bad_image_of_a_manual_dataset_is_named_where_the_user_put_it(shared_data, tmp_path, capsys):
    placed = tmp_path / "manual" / "Mine"
    placed.mkdir(parents=True)
    (placed / "good.png").write_bytes((shared_data / "Set5" / "HR" / "baby.png").read_bytes())
    (placed / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["download", "--name", "Mine", "--source", f"manual://{placed}", "--images", "2", "--lock",
                 str(tmp_path / "lock"), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "hr")]) == 1
    assert one_line_error(capsys).startswith(f"bsr: error: {placed / 'bad.png'}: ")


def test_report_errors_say_to_regenerate_dvc_yaml_and_where_paths_start(shared_data, tmp_path, monkeypatch):
    from bsr.dvc_stages import dvc_yaml
    from bsr.report import check_inputs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    cfg = tiny_pipeline_config(shared_data)
    (tmp_path / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(BsrError, match=f"paths are relative to the project folder, and bsr runs in {tmp_path}"):
        check_inputs(load_pipeline("config/tiny.yaml"), "config/tiny.yaml")
    (tmp_path / "config" / "tiny").mkdir()
    (tmp_path / "config" / "tiny" / "dvc.yaml").write_text(dvc_yaml(load_pipeline("config/tiny.yaml"), "config/tiny.yaml"))
    cfg["experiments"]["BI_x4"] = {"scale": 4, "degradation": "BI"}
    (tmp_path / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(BsrError, match=r"config/tiny/dvc.yaml does not list data/tiny/eval/BI_x4/Set5.json: the config "
                                       r"gained a dataset or experiment since it was generated; regenerate it with "
                                       r"`bsr dvc-yaml --config config/tiny.yaml`"):
        check_inputs(load_pipeline("config/tiny.yaml"), "config/tiny.yaml")


# ---- 12. the GPU, said up front ----------------------------------------------------------------------------

def test_a_cpu_machine_is_warned_before_the_paper_trainings_start(monkeypatch):
    from bsr import stages

    monkeypatch.setattr(stages, "gpu_here", lambda: False)
    warning = stages.cpu_training_warning(load_pipeline(REPO / "config" / "config.yaml"))
    assert warning.startswith("no GPU on this machine: 20 training(s) of this config ask for one")
    assert "up to 300,000 iterations each" in warning and "--configfile config/demo.yaml" in warning
    assert stages.cpu_training_warning(load_pipeline(REPO / "config" / "demo.yaml")) is None
    monkeypatch.setattr(stages, "gpu_here", lambda: True)
    assert stages.cpu_training_warning(load_pipeline(REPO / "config" / "config.yaml")) is None


def test_train_says_its_device_first(shared_data, tmp_path, capsys):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(tiny_experiment(tmp_path, shared_data, iterations=2)))
    assert main(["train", "--config", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "run")]) == 0
    first = capsys.readouterr().err.strip().splitlines()[0]
    assert first.startswith("bsr train tiny: training on the CPU"), first


def test_several_gpus_on_a_cpu_machine_need_device_cpu(monkeypatch):
    from bsr.train import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(BsrError, match="train.gpus is 2 with train.device auto, but no CUDA device is available: "
                                       "set train.device: cpu"):
        pick_device("auto", local_rank=0)
    assert pick_device("cpu", local_rank=0).type == "cpu"


def test_evaluations_reserve_the_gpu_they_use():
    from bsr import stages

    paper = load_pipeline(REPO / "config" / "config.yaml")
    job = stages.job(paper, "config/config.yaml", "evaluate", {"experiment": "BI_x2", "dataset": "Set5"})
    assert job.resources == {"gpu": 1} and "--device" not in job.args
    demo = load_pipeline(REPO / "config" / "demo.yaml")
    job = stages.job(demo, "config/demo.yaml", "evaluate", {"experiment": "BI_x2", "dataset": "demo_test"})
    assert job.resources == {"gpu": 0} and job.args[-2:] == ["--device", "cpu"]


def test_another_verbs_out_never_replaces_an_evaluation(shared_data, project, tmp_path, capsys):
    """`bsr eval-bicubic --out` or `bsr score --out` onto a run's evaluation exits 1 and leaves it as it was: the
    evaluation's folder is marked as `bsr evaluate`'s; evaluations of other sets still land beside it."""
    from bsr.evaluate import eval_bicubic

    hr, lr, out = str(shared_data / "Set5" / "HR"), tmp_path / "lr", tmp_path / "eval" / "run" / "Set5.json"
    assert main(["degrade", "--hr", hr, "--out", str(lr), "--scale", "2", "--kind", "BI"]) == 0
    evaluate = ["evaluate", "--run", str(project["run"]), "--hr", hr, "--lr", str(lr), "--device", "cpu"]
    assert main([*evaluate, "--dataset", "Set5", "--out", str(out), "--sample", str(out.with_suffix(".png"))]) == 0
    assert yaml.safe_load(out.read_text())["verb"] == "evaluate"
    before = tree_digest(out.parent)
    for argv in (["eval-bicubic", "--hr", hr, "--scale", "2", "--kind", "BI", "--out", str(out)],
                 ["score", "--sr", hr, "--hr", hr, "--scale", "2", "--method", "RCAN", "--out", str(out)]):
        assert main(argv) == 1
        assert one_line_error(capsys) == (f"bsr: error: {out.parent}: was written by `bsr evaluate`; `bsr {argv[0]}` "
                                          "refuses to write into it: choose another output")
    with pytest.raises(BsrError, match="was written by `bsr evaluate`"):
        eval_bicubic(hr, 2, "BI", out)
    assert tree_digest(out.parent) == before
    assert main([*evaluate, "--dataset", "Set5b", "--out", str(out.with_name("Set5b.json"))]) == 0
    # a folder of other files is not claimed: `--out results.json` in a project folder leaves it anyone's
    assert main(["eval-bicubic", "--hr", hr, "--scale", "2", "--kind", "BI", "--out", str(tmp_path / "b.json")]) == 0
    assert not (tmp_path / ".bsr-output").exists()
