import json

import pytest
import torch

from bsr import BsrError
from bsr.cli import main
from bsr.train import CHECKPOINT, FINAL_MODEL, METRICS, train
from tests.conftest import tiny_experiment


def weights(run_dir):
    return torch.load(run_dir / FINAL_MODEL, weights_only=False)["model"]


def test_resume_is_bit_identical(shared_data, tmp_path):
    cfg = tiny_experiment(tmp_path, shared_data)
    train(cfg, tmp_path / "straight")
    half = {**cfg, "train": {**cfg["train"], "iterations": 3}}
    train(half, tmp_path / "resumed")
    train(cfg, tmp_path / "resumed", resume="yes")
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

    def curve(run):  # step, loss and lr; samples/s is a timing
        return [line.split(",")[:3] for line in (tmp_path / run / METRICS).read_text().splitlines()]

    assert curve("straight") == curve("resumed") and len(curve("straight")) == 7


def test_refuses_to_overwrite_or_resume_nothing(shared_data, tmp_path):
    cfg = tiny_experiment(tmp_path, shared_data, iterations=3)
    with pytest.raises(BsrError, match="nothing to resume"):
        train(cfg, tmp_path / "run", resume="yes")
    train(cfg, tmp_path / "run")
    with pytest.raises(BsrError, match="pass --resume"):
        train(cfg, tmp_path / "run")


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(shared_data, tmp_path, capsys):
    # An absurd learning rate blows the weights up after the first step.
    cfg = tiny_experiment(tmp_path, shared_data, lr=1e30, ckpt_every=1, iterations=20)
    (tmp_path / "exp.yaml").write_text(json.dumps(cfg))
    assert main(["train", "--config", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("bsr: error: non-finite loss") and CHECKPOINT in err
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)
    assert state["step"] >= 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "run" / FINAL_MODEL).exists()


def test_logs_params_curves_and_checkpoint_to_mlflow(shared_data, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_experiment(tmp_path, shared_data, iterations=4, val_every=2)
    cfg["data"]["val_hr"] = str(shared_data / "Set5" / "HR")
    cfg["tracking"] = {"uri": uri, "experiment": "tests"}
    summary = train(cfg, tmp_path / "run")
    client = MlflowClient(uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.channels"] == "8" and run.data.params["sampling.rfs"] == "True"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4]
    assert len(client.get_metric_history(run.info.run_id, "val_psnr")) == 2
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {FINAL_MODEL, METRICS, "config.yaml"}


def test_learns_to_beat_bicubic_on_set5_x2(shared_data, tmp_path):
    """A demo-size BSR, well under 5 minutes of CPU training on T91, against bicubic on Set5 x2."""
    from bsr.evaluate import eval_bicubic

    cfg = tiny_experiment(tmp_path, shared_data, n_images=91, iterations=150, lr=5e-4, log_every=50,
                          val_every=150, threads=2, lr_step_epochs=100, iters_per_epoch=1000)
    cfg["model"] = {"n_fmg": 2, "channels": 24, "res_scale": 1.0, "skip_connections": True}
    cfg["sampling"]["patch"] = 32
    cfg["train"]["batch"] = 16
    cfg["data"]["val_hr"] = str(shared_data / "Set5" / "HR")
    summary = train(cfg, tmp_path / "run")
    bicubic = eval_bicubic(shared_data / "Set5" / "HR", 2, "BI", tmp_path / "bicubic.json")["psnr"]
    print(f"Set5 x2 Y-PSNR: BSR (150 iterations, {summary['seconds_this_session']:.0f} s) "
          f"{summary['val_psnr']:.2f} dB, bicubic {bicubic:.2f} dB")
    assert summary["val_psnr"] > bicubic + 0.3


def test_auto_resume_continues_a_matching_checkpoint_and_replaces_a_stale_one(shared_data, tmp_path, capsys):
    cfg = tiny_experiment(tmp_path, shared_data, iterations=3)
    train(cfg, tmp_path / "run")
    longer = {**cfg, "train": {**cfg["train"], "iterations": 6}}
    assert train(longer, tmp_path / "run", resume="auto")["iterations"] == 6
    changed = {**cfg, "loss": {**cfg["loss"], "l1": 0.0}}
    with pytest.raises(BsrError, match="differs in loss.l1"):
        train(changed, tmp_path / "run", resume="yes")
    train(changed, tmp_path / "run", resume="auto")
    assert "differs in loss.l1); training afresh" in capsys.readouterr().err
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)["step"] == 3
