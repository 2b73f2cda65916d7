"""The trained model outside the run folder: logged and registered in MLflow (loaded back by alias, served), and
exported to ONNX. Every store is a sqlite file in tmp_path, named explicitly, never the user's default."""
import json
import os

import numpy as np
import pytest
import torch

from bsr import BsrError
from bsr.cli import main
from bsr.config import check_pipeline, resolve_experiment
from bsr.degrade import degrade
from bsr.images import read_image
from bsr.train import CHECKPOINT, FINAL_MODEL, METRICS, SUMMARY, train
from bsr.upscale import load_model, load_model_folder
from tests.conftest import tiny_experiment, tiny_pipeline_config

CPU = torch.device("cpu")


def registered_experiment(tmp_path, data, **train_settings) -> dict:
    cfg = tiny_experiment(tmp_path, data, iterations=3, **train_settings)
    cfg["tracking"] = {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "tests",
                       "registered_model": "bsr-BI-x2", "model_alias": "paper"}
    return cfg


def lr_input(data) -> torch.Tensor:
    """A real LR image, not square and unlike the logged input example in size: Set5's woman at BI x2."""
    lr = degrade(read_image(data / "Set5" / "HR" / "woman.png"), 2, "BI")
    return torch.from_numpy(lr).permute(2, 0, 1)[None].float().div(255)


def trained_output(run_dir, x: torch.Tensor) -> np.ndarray:
    model, _ = load_model_folder(run_dir, CPU)
    with torch.no_grad():
        return model(x).numpy()


@pytest.fixture(scope="module")
def registered_run(shared_data, tmp_path_factory):
    """A tiny training logged and registered as bsr-BI-x2@paper: (run folder, tracking URI, summary). Trained
    channels_last, as on CUDA: the logged copy must not depend on the training's memory format."""
    tmp_path = tmp_path_factory.mktemp("registered")
    cfg = registered_experiment(tmp_path, shared_data, channels_last=True)
    summary = train(cfg, tmp_path / "run")
    return tmp_path / "run", cfg["tracking"]["uri"], summary


def test_the_model_loads_back_by_alias_and_gives_the_trained_output(shared_data, registered_run, monkeypatch):
    import mlflow
    from mlflow.models import get_model_info

    from bsr.tracking import process_wide_store

    run_dir, uri, summary = registered_run
    assert summary["mlflow_model_uri"] == "models:/bsr-BI-x2/1"
    assert json.loads((run_dir / SUMMARY).read_text())["mlflow_model_uri"] == "models:/bsr-BI-x2/1"
    before = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI")
    with process_wide_store(uri):
        info = get_model_info("models:/bsr-BI-x2@paper")
    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"),
            os.environ.get("MLFLOW_REGISTRY_URI")) == before  # nothing of the store is left set
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded, scale = load_model("models:/bsr-BI-x2@paper", CPU)
    assert scale == 2 and set(info.flavors) == {"bsr"}
    x = lr_input(shared_data)
    with torch.no_grad():
        out = loaded(x).numpy()
    assert out.shape == (1, 3, 2 * x.shape[2], 2 * x.shape[3])
    assert np.abs(out - trained_output(run_dir, x)).max() <= 1e-6
    assert info.flavors["bsr"]["scale"] == 2 and info.flavors["bsr"]["degradation"] == "BI"


def test_rewriting_a_finished_training_registers_nothing_new_and_training_on_does(shared_data, tmp_path):
    """The pipeline deletes a job's outputs and reruns it; `write_outputs` then runs again from the finished
    checkpoint: the same run, the same weights, so the model logged and registered before."""
    from mlflow import MlflowClient

    cfg = registered_experiment(tmp_path, shared_data)
    first = train(cfg, tmp_path / "run")
    for name in (FINAL_MODEL, SUMMARY, METRICS):
        (tmp_path / "run" / name).unlink()
    again = train(cfg, tmp_path / "run", resume="auto")
    client = MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"])
    experiment = client.get_experiment_by_name("tests").experiment_id
    assert again["mlflow_run_id"] == first["mlflow_run_id"]
    assert again["mlflow_model_uri"] == first["mlflow_model_uri"] == "models:/bsr-BI-x2/1"
    assert len(client.search_logged_models([experiment])) == 1
    assert [int(v.version) for v in client.search_model_versions("name = 'bsr-BI-x2'")] == [1]

    longer = {**cfg, "train": {**cfg["train"], "iterations": 5}}  # resumable: new weights, the same run
    assert train(longer, tmp_path / "run", resume="auto")["mlflow_model_uri"] == "models:/bsr-BI-x2/2"
    assert len(client.search_logged_models([experiment])) == 2
    assert int(client.get_model_version_by_alias("bsr-BI-x2", "paper").version) == 2
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["step"] == 5


def test_registry_names_come_from_the_pipeline_config(shared_data):
    cfg = check_pipeline(tiny_pipeline_config(shared_data))
    assert {k: v for k, v in resolve_experiment(cfg, "BI_x2")["tracking"].items()
            if k in ("registered_model", "model_alias")} == {"registered_model": "bsr-BI_x2", "model_alias": "bsr-tiny"}
    cfg["registry"] = {"model": "sr-{experiment}-v", "alias": "paper"}
    assert resolve_experiment(cfg, "BD_x3")["tracking"]["registered_model"] == "sr-BD_x3-v"
    assert resolve_experiment(cfg, "BD_x3")["tracking"]["model_alias"] == "paper"
    cfg["registry"] = {"model": None}
    assert resolve_experiment(cfg, "BI_x2")["tracking"]["registered_model"] is None
    for registry, key in [({"model": "bsr-BI-x2"}, "registry.model"), ({"alias": "latest"}, "registry.alias"),
                          ({"alias": "v2"}, "registry.alias"), ({"model": "a/{experiment}"}, "registry.model")]:
        with pytest.raises(BsrError, match=f"^config: {key}: "):
            check_pipeline({**tiny_pipeline_config(shared_data), "registry": registry})


def test_onnx_export_runs_in_onnxruntime_as_in_pytorch(shared_data, registered_run, tmp_path, capsys):
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is a dev dependency: pip install -e '.[dev]'")
    run_dir = registered_run[0]
    out = tmp_path / "bsr.onnx"
    assert main(["export", "--model", str(run_dir), "--onnx", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: ONNX")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bsr.onnx"]  # one file, no external data
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = lr_input(shared_data)
    for batch in (x, torch.cat([x, x.flip(3)])):  # batch size, height and width are all free
        sr = session.run(["sr"], {"lr": batch.numpy()})[0]
        difference = np.abs(sr[:1] - trained_output(run_dir, x)).max()
        assert sr.shape == (len(batch), 3, 2 * x.shape[2], 2 * x.shape[3]) and difference <= 1e-4
    print(f"ONNX Runtime vs PyTorch on Set5 woman x2: max difference {difference:.2e}")


def test_export_errors_are_one_line_naming_the_file(shared_data, registered_run, tmp_path, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    with monkeypatch.context() as without_onnxscript:
        without_onnxscript.setattr(importlib.util, "find_spec", lambda name: None if name == "onnxscript" else
                                   find_spec(name))
        assert main(["export", "--model", str(registered_run[0]), "--onnx", str(tmp_path / "a.onnx")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bsr: error: {tmp_path / 'a.onnx'}: ONNX export needs the onnxscript package(s): install "
                   f"bsr's export extra (pip install -e '.[export]' in the checkout)"]
    missing = tmp_path / "missing"
    assert main(["export", "--model", str(missing), "--onnx", str(tmp_path / "a.onnx")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bsr: error: {missing}: no such run folder")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("someone's")
    assert main(["export", "--model", str(registered_run[0]), "--onnx", str(tmp_path / "taken")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bsr: error: {tmp_path / 'taken'}: is a folder; the output is a file")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "someone's"
    assert not (tmp_path / "a.onnx").exists()


def test_a_rerun_evaluation_replaces_its_mlflow_run_instead_of_piling_up(shared_data, registered_run, tmp_path):
    from mlflow.tracking import MlflowClient

    from bsr.evaluate import evaluate_run

    run_dir, uri, trained = registered_run
    hr = shared_data / "Set5" / "HR"
    first, second = (evaluate_run(run_dir, hr, None, "Set5", tmp_path / "Set5.json", device="cpu") for _ in "ab")
    client = MlflowClient(uri)
    old = client.get_run(first["mlflow_run_id"])
    assert old.info.lifecycle_stage == "deleted" and old.data.tags["bsr.superseded_by"] == second["mlflow_run_id"]
    live = client.search_runs([old.info.experiment_id], f"tags.mlflow.parentRunId = '{trained['mlflow_run_id']}' "
                                                        f"and attributes.run_name = '{old.info.run_name}'")
    assert [r.info.run_id for r in live] == [second["mlflow_run_id"]]
