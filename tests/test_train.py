import json

import pytest
import torch

from bsr import BsrError
from bsr.cli import main
from bsr.train import CHECKPOINT, FINAL_MODEL, METRICS, train
from tests.conftest import tiny_experiment


def weights(run_dir):
    from safetensors.torch import load_file

    return load_file(run_dir / FINAL_MODEL)


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


@pytest.mark.slow
@pytest.mark.parametrize("n_fmg,channels,iterations,batch", [(2, 24, 150, 16), (16, 16, 300, 8)])
def test_learns_to_beat_bicubic_on_set5_x2(shared_data, tmp_path, n_fmg, channels, iterations, batch):
    """A demo-size BSR, and one of the paper's depth (16 FMGs x 5 blocks) but narrow: each about a minute of
    CPU training on T91 or less, scored against bicubic on Set5 x2."""
    from bsr.evaluate import eval_bicubic

    cfg = tiny_experiment(tmp_path, shared_data, n_images=91, iterations=iterations, lr=5e-4, log_every=50,
                          val_every=iterations, threads=2, lr_step_epochs=100, iters_per_epoch=1000, batch=batch)
    cfg["model"] = {"n_fmg": n_fmg, "channels": channels, "res_scale": 1.0, "skip_connections": True}
    cfg["sampling"]["patch"] = 32
    cfg["data"]["val_hr"] = str(shared_data / "Set5" / "HR")
    summary = train(cfg, tmp_path / "run")
    bicubic = eval_bicubic(shared_data / "Set5" / "HR", 2, "BI", tmp_path / "bicubic.json")["psnr"]
    print(f"Set5 x2 Y-PSNR: BSR {n_fmg} FMGs x {channels} ch ({iterations} iterations, "
          f"{summary['seconds_this_session']:.0f} s) {summary['val_psnr']:.2f} dB, bicubic {bicubic:.2f} dB")
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


@pytest.mark.slow
def test_bf16_channels_last_and_compile_forced_on_cpu_train_resume_and_evaluate(shared_data, tmp_path):
    """The CUDA configuration's code paths (bf16 autocast, channels_last, torch.compile, fused Adam), run on
    the CPU: train, checkpoint, resume in a new compile, evaluate."""
    from torch._dynamo.utils import counters

    from bsr.evaluate import evaluate_run

    cfg = tiny_experiment(tmp_path, shared_data, iterations=4, ckpt_every=2, amp=True, channels_last=True,
                          compile=True)
    counters.clear()
    train({**cfg, "train": {**cfg["train"], "iterations": 2}}, tmp_path / "run")
    summary = train(cfg, tmp_path / "run", resume="yes")
    assert summary["iterations"] == 4 and counters["stats"]["unique_graphs"] >= 1
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())
    scores = evaluate_run(tmp_path / "run", shared_data / "Set5" / "HR", None, "Set5", tmp_path / "eval.json")
    assert 10 < scores["psnr"] < 60


def test_amp_and_channels_last_switches_reach_the_step(shared_data, tmp_path):
    from bsr.train import build, make_train_step, switch

    cfg = tiny_experiment(tmp_path, shared_data, amp=True, channels_last=True)
    cpu = torch.device("cpu")
    assert switch("auto", cpu) is False and switch(True, cpu) and switch("auto", torch.device("cuda"))
    sampler, model, optimizer, scheduler = build(cfg, cpu)
    assert model.shallow.weight.is_contiguous(memory_format=torch.channels_last)
    dtypes = []
    model.shallow.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    step = make_train_step(model, optimizer, scheduler, cfg, cpu)
    assert torch.isfinite(step(*sampler.next_batch()))
    assert dtypes == [torch.bfloat16]


def test_checkpoint_states_are_read_onto_the_cpu_whatever_the_device(shared_data, tmp_path, monkeypatch):
    """On CUDA, a checkpoint read straight onto the GPU hands torch.set_rng_state a CUDA tensor, which it
    refuses. Here the 'meta' device stands in for any device that is not the CPU."""
    import bsr.train as engine

    cfg = tiny_experiment(tmp_path, shared_data, iterations=3)
    train(cfg, tmp_path / "run")
    handed = []
    monkeypatch.setattr(engine, "set_rng_states", lambda states, device: handed.append(states))
    state = engine.resume_state(cfg, tmp_path / "run" / CHECKPOINT, "yes")
    sampler, model, optimizer, scheduler = engine.build(cfg, torch.device("cpu"))
    assert engine.restore(state, torch.device("meta"), model, optimizer, scheduler, sampler)[0] == 3
    rng = handed[0]["torch"]
    assert rng.device.type == "cpu" and rng.dtype == torch.uint8


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("target", [CHECKPOINT, FINAL_MODEL])
def test_a_crafted_pickle_runs_no_code(shared_data, tmp_path, target):
    from bsr.evaluate import load_trained_model

    cfg = tiny_experiment(tmp_path, shared_data, iterations=3)
    train(cfg, tmp_path / "run")
    marker = tmp_path / "pwned"
    torch.save({"config": {}, "model": _Exploit(marker)}, tmp_path / "run" / target)
    # the model is data only: a pickle in its place is refused for not being the weights its record names
    expected = f"{target}: not a readable" if target == CHECKPOINT else f"{target} is not the weights that model.json"
    with pytest.raises(BsrError, match=expected):
        if target == CHECKPOINT:
            train(cfg, tmp_path / "run", resume="yes")
        else:
            load_trained_model(tmp_path / "run", torch.device("cpu"))
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, "truncated"])
def test_an_unreadable_checkpoint_is_named_and_kept_aside_by_auto_resume(shared_data, tmp_path, capsys, content):
    cfg = tiny_experiment(tmp_path, shared_data, iterations=3)
    train(cfg, tmp_path / "run")
    ckpt = tmp_path / "run" / CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:2000] if content == "truncated" else content)
    with pytest.raises(BsrError, match=f"{CHECKPOINT}: not a readable checkpoint"):
        train(cfg, tmp_path / "run", resume="yes")
    assert train(cfg, tmp_path / "run", resume="auto")["iterations"] == 3
    assert "training afresh" in capsys.readouterr().err
    assert (tmp_path / "run" / (CHECKPOINT + ".corrupt")).is_file()


def mlflow_status(uri: str, run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri).get_run(run_id).info.status


def metric_steps(run_dir) -> list[int]:
    return [int(line.split(",")[0]) for line in (run_dir / METRICS).read_text().splitlines()[1:]]


def test_a_finished_run_whose_outputs_were_deleted_rewrites_them_from_its_checkpoint(shared_data, tmp_path):
    """Snakemake and DVC delete a job's outputs before rerunning it (after a log_every change, -R train, or a
    kill after the final checkpoint); resuming the finished checkpoint must write them all again."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_experiment(tmp_path, shared_data)
    cfg["tracking"] = {"uri": uri, "experiment": "tests"}
    first = train(cfg, tmp_path / "run")
    before = (tmp_path / "run" / METRICS).read_text()
    for name in (FINAL_MODEL, METRICS, "train.json"):
        (tmp_path / "run" / name).unlink()
    again = train({**cfg, "train": {**cfg["train"], "log_every": 2}}, tmp_path / "run", resume="auto")
    assert (tmp_path / "run" / METRICS).read_text() == before and metric_steps(tmp_path / "run") == [1, 2, 3, 4, 5, 6]
    assert torch.equal(weights(tmp_path / "run")["shallow.weight"],
                       torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["model"]["shallow.weight"])
    assert again["mlflow_run_id"] == first["mlflow_run_id"] and again["iterations"] == 6
    assert mlflow_status(uri, again["mlflow_run_id"]) == "FINISHED"


def test_fewer_iterations_than_the_checkpoint_train_afresh_or_are_refused(shared_data, tmp_path, capsys):
    cfg = tiny_experiment(tmp_path, shared_data)
    train(cfg, tmp_path / "run")
    shorter = {**cfg, "train": {**cfg["train"], "iterations": 4}}
    with pytest.raises(BsrError, match="at iteration 6, past train.iterations = 4"):
        train(shorter, tmp_path / "run", resume="yes")
    assert train(shorter, tmp_path / "run", resume="auto")["iterations"] == 4
    assert "past train.iterations = 4; training afresh" in capsys.readouterr().err
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["step"] == 4
    assert metric_steps(tmp_path / "run") == [1, 2, 3, 4]


def test_resuming_keeps_the_whole_metric_history(shared_data, tmp_path):
    cfg = tiny_experiment(tmp_path, shared_data)
    train({**cfg, "train": {**cfg["train"], "iterations": 3}}, tmp_path / "run")  # a kill after checkpoint 3
    (tmp_path / "run" / METRICS).unlink()
    train(cfg, tmp_path / "run", resume="auto")
    assert metric_steps(tmp_path / "run") == [1, 2, 3, 4, 5, 6]


def test_an_unreadable_model_is_one_line_naming_the_file(shared_data, tmp_path, capsys):
    cfg = tiny_experiment(tmp_path, shared_data, iterations=3)
    train(cfg, tmp_path / "run")
    capsys.readouterr()
    for content in (b"", b"\x00garbage" * 50, (tmp_path / "run" / FINAL_MODEL).read_bytes()[:3000]):
        (tmp_path / "run" / FINAL_MODEL).write_bytes(content)
        code = main(["evaluate", "--run", str(tmp_path / "run"), "--hr", str(shared_data / "Set5" / "HR"),
                     "--dataset", "Set5", "--out", str(tmp_path / "eval.json")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and f"{FINAL_MODEL} is not the weights that model.json records" in err[0]
    assert not (tmp_path / "eval.json").exists()


def test_a_second_training_on_one_folder_fails_at_once_naming_the_holder(shared_data, tmp_path):
    from bsr import layout
    from bsr.files import exclusive_lock

    cfg = tiny_experiment(tmp_path, shared_data, iterations=3)
    with exclusive_lock(tmp_path / "run" / layout.RUN_LOCK, "bsr train tiny (pid 4242 on node7)"):
        with pytest.raises(BsrError, match=r"run is in use by bsr train tiny \(pid 4242 on node7\)"):
            train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / CHECKPOINT).exists()
    train(cfg, tmp_path / "run")  # released


def test_a_failed_training_closes_its_mlflow_run_as_failed(shared_data, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_experiment(tmp_path, shared_data, iterations=6, val_every=3)
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "broken.png").write_text("not a PNG")
    cfg["data"]["val_hr"] = str(tmp_path / "val")  # validation fails at iteration 3
    cfg["tracking"] = {"uri": uri, "experiment": "tests"}
    with pytest.raises(BsrError, match="broken.png"):
        train(cfg, tmp_path / "run")
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("tests").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


@pytest.mark.slow
def test_sigterm_stops_training_and_closes_the_mlflow_run_as_killed(shared_data, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_experiment(tmp_path, shared_data, iterations=100_000, ckpt_every=20, log_every=20)
    cfg["tracking"] = {"uri": uri, "experiment": "tests"}
    (tmp_path / "exp.yaml").write_text(json.dumps(cfg))
    job = subprocess.Popen([sys.executable, "-m", "bsr.cli", "train", "--config", str(tmp_path / "exp.yaml"),
                            "--out", str(tmp_path / "run")], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "run" / CHECKPOINT).exists() and time.time() < deadline:
        time.sleep(0.2)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 143 and err.strip().splitlines()[-1].startswith("bsr: stopped by SIGTERM")
    run_id = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["mlflow_run_id"]
    assert mlflow_status(uri, run_id) == "KILLED"


def test_a_relative_sqlite_uri_is_recorded_absolute(shared_data, tmp_path, monkeypatch):
    """Evaluation from another folder finds the training's run instead of creating a stray database."""
    from bsr.evaluate import evaluate_run

    cfg = tiny_experiment(tmp_path, shared_data, iterations=3)
    cfg["tracking"] = {"uri": "sqlite:///mlflow.db", "experiment": "tests"}
    (tmp_path / "project").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    summary = train(cfg, tmp_path / "run")
    assert summary["tracking_uri"] == f"sqlite:///{tmp_path / 'project' / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path / "elsewhere")
    evaluate_run(tmp_path / "run", shared_data / "Set5" / "HR", None, "Set5", tmp_path / "eval.json")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_fresh_start_removes_the_finished_outputs_it_replaces(shared_data, tmp_path):
    """Starting afresh over a finished run (another config) and failing midway must not leave the old model
    beside the new checkpoint, where evaluation would score it."""
    cfg = tiny_experiment(tmp_path, shared_data)
    train(cfg, tmp_path / "run")
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "broken.png").write_text("not a PNG")
    changed = {**cfg, "train": {**cfg["train"], "lr": 1e-3, "val_every": 3},
               "data": {**cfg["data"], "val_hr": str(tmp_path / "val")}}
    with pytest.raises(BsrError, match="broken.png"):
        train(changed, tmp_path / "run", resume="auto")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".bsr-output", ".lock"]  # it failed before checkpoint 3


def test_a_run_missing_from_the_tracking_store_is_logged_anew_not_a_traceback(shared_data, tmp_path, capsys):
    from bsr.evaluate import evaluate_run

    cfg = tiny_experiment(tmp_path, shared_data, iterations=3)
    cfg["tracking"] = {"uri": f"sqlite:///{tmp_path / 'first.db'}", "experiment": "tests"}
    first = train(cfg, tmp_path / "run")
    (tmp_path / "run" / FINAL_MODEL).unlink()
    moved = {**cfg, "tracking": {**cfg["tracking"], "uri": f"sqlite:///{tmp_path / 'second.db'}"}}
    again = train(moved, tmp_path / "run", resume="auto")  # a tracking change is resumable
    assert f"MLflow run {first['mlflow_run_id']} is not in" in capsys.readouterr().err
    assert again["mlflow_run_id"] != first["mlflow_run_id"]
    assert mlflow_status(moved["tracking"]["uri"], again["mlflow_run_id"]) == "FINISHED"
    summary = json.loads((tmp_path / "run" / "train.json").read_text())  # as if the run moved to another machine
    summary["tracking_uri"] = f"sqlite:///{tmp_path / 'third.db'}"
    (tmp_path / "run" / "train.json").write_text(json.dumps(summary))
    scores = evaluate_run(tmp_path / "run", shared_data / "Set5" / "HR", None, "Set5", tmp_path / "eval.json")
    assert "logging without it" in capsys.readouterr().err
    assert mlflow_status(summary["tracking_uri"], scores["mlflow_run_id"]) == "FINISHED"


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "mlruns"])
def test_a_file_store_tracking_uri_is_one_line_naming_the_key(shared_data, tmp_path, uri):
    """MLflow 3 refuses its file store with a traceback; bsr says so before training, naming the config key."""
    cfg = tiny_experiment(tmp_path, shared_data, iterations=2)
    cfg["tracking"] = {"uri": uri, "experiment": "tests"}
    with pytest.raises(BsrError, match=r"^tracking_uri: .*mlruns is MLflow's file store, which MLflow 3 no longer "
                                       r"opens; expected sqlite:///PATH/mlflow\.db or an http\(s\)://"):
        train(cfg, tmp_path / "run")
