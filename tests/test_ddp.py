"""Multi-GPU training (DDP under torchrun), run on the CPU: two gloo processes, started by the real torchrun."""
import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from bsr import BsrError
from bsr.train import CHECKPOINT, FINAL_MODEL, METRICS, build, make_sampler, make_train_step, train
from tests.conftest import command_env, tiny_experiment


def torchrun(cfg: dict, run_dir, *args: str, wait: bool = True, check: bool = True, **popen):
    """`bsr train` as the pipeline launches it on 2 GPUs (here 2 CPU processes, with gloo): finished (and
    successful, with `check`), or started (not `wait`)."""
    config = run_dir.parent / f"{run_dir.name}-{cfg['train']['iterations']}.yaml"
    config.write_text(json.dumps(cfg))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--no-python", "bsr", "train", "--config", str(config), "--out", str(run_dir), *args]
    if not wait:
        return subprocess.Popen(command, env=command_env(), text=True, **popen)
    job = subprocess.run(command, env=command_env(), capture_output=True, text=True, timeout=120)
    assert job.returncode == 0 or not check, job.stderr[-3000:]
    return job


def weights(run_dir) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / FINAL_MODEL)


def curve(run_dir) -> list[list[str]]:
    """step, loss and lr of metrics.csv (samples/s is a timing)."""
    return [line.split(",")[:3] for line in (run_dir / METRICS).read_text().splitlines()]


def test_ranks_share_the_interval_edges_and_draw_their_own_batches(shared_data, tmp_path):
    cfg = tiny_experiment(tmp_path, shared_data)
    rank0, rank1 = make_sampler(cfg, rank=0), make_sampler(cfg, rank=1)
    # Rank 0 samples as a plain launch does: its stream is the config's seed itself.
    assert rank0.rng.bit_generator.state == np.random.default_rng(cfg["train"]["seed"]).bit_generator.state
    assert np.array_equal(rank0.edges, rank1.edges)
    assert not np.array_equal(rank0.next_batch()[0], rank1.next_batch()[0])


def test_train_gpus_must_match_the_launch(shared_data, tmp_path, monkeypatch):
    cfg = tiny_experiment(tmp_path, shared_data, gpus=2)
    with pytest.raises(BsrError, match=r"train.gpus is 2: .*`torchrun --standalone --nproc-per-node 2 --no-python"):
        train(cfg, tmp_path / "run")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(BsrError, match="train.gpus is 2 but torchrun started 3 processes"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_ranks_train_as_one_process_on_their_joined_batches(shared_data, tmp_path):
    """DDP averages the ranks' gradients of their mean losses: the gradient of the mean loss over both batches.
    The reference is one process training on rank 0's and rank 1's batches concatenated (drawn here from the
    two ranks' seeds), with bsr's own build and step. Float sums in another order: equal within tolerance."""
    iterations = 4
    cfg = tiny_experiment(tmp_path, shared_data, gpus=2, iterations=iterations)
    torchrun(cfg, tmp_path / "ddp")

    cpu = torch.device("cpu")
    rank0, model, optimizer, scheduler = build(cfg, cpu)
    samplers = (rank0, make_sampler(cfg, rank=1))
    step = make_train_step(model, optimizer, scheduler, cfg, cpu)
    losses = []
    for _ in range(iterations):
        batches = [sampler.next_batch() for sampler in samplers]
        losses.append(step(*(np.concatenate(parts) for parts in zip(*batches))).item())

    ddp = weights(tmp_path / "ddp")
    assert ddp.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ddp[name], value, atol=1e-5, rtol=1e-4, msg=name)
    logged = [float(row[1]) for row in curve(tmp_path / "ddp")[1:]]
    assert logged == pytest.approx(losses, rel=1e-5)
    summary = json.loads((tmp_path / "ddp" / "train.json").read_text())
    assert summary["world_size"] == 2


@pytest.mark.slow
def test_a_resumed_ddp_run_is_bit_identical_to_a_straight_one(shared_data, tmp_path):
    """Every rank's sampler and RNG state is in the checkpoint, and the gradient all-reduce of two ranks adds
    the same two numbers in any order: the resumed run repeats the straight one bit for bit."""
    cfg = tiny_experiment(tmp_path, shared_data, gpus=2, iterations=6, ckpt_every=3)
    torchrun(cfg, tmp_path / "straight")
    torchrun({**cfg, "train": {**cfg["train"], "iterations": 3}}, tmp_path / "resumed")
    torchrun(cfg, tmp_path / "resumed", "--resume", "yes")
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert curve(tmp_path / "straight") == curve(tmp_path / "resumed") and len(curve(tmp_path / "straight")) == 7
    # The world size is part of the trajectory: one process may not continue what two trained.
    with pytest.raises(BsrError, match=r"trained with another config \(differs in train.gpus\)"):
        train({**cfg, "train": {**cfg["train"], "gpus": 1}}, tmp_path / "resumed", resume="yes")


@pytest.mark.slow
def test_every_rank_stops_with_the_same_error(shared_data, tmp_path):
    """Rank 0's start-up error (here: nothing to resume) and a non-finite loss (all-reduced at log and checkpoint
    steps) reach every rank: both print the same one line, and no rank hangs in a collective."""
    cfg = tiny_experiment(tmp_path, shared_data, gpus=2)
    job = torchrun(cfg, tmp_path / "run", "--resume", "yes", check=False)
    assert job.returncode != 0 and job.stderr.count(f"{CHECKPOINT}: nothing to resume from") == 2

    cfg = tiny_experiment(tmp_path, shared_data, gpus=2, lr=1e30, ckpt_every=1, log_every=5, iterations=20)
    job = torchrun(cfg, tmp_path / "run", check=False)
    errors = re.findall(r"bsr: error: (non-finite loss before iteration \d+)", job.stderr)
    assert job.returncode != 0 and len(errors) == 2 and errors[0] == errors[1], job.stderr[-3000:]
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "run" / FINAL_MODEL).exists()


@pytest.mark.slow
def test_compile_bf16_and_channels_last_run_under_ddp(shared_data, tmp_path):
    """The CUDA engine's switches (DDP around the compiled module), on two CPU ranks."""
    cfg = tiny_experiment(tmp_path, shared_data, gpus=2, iterations=3, amp=True, channels_last=True, compile=True)
    summary = json.loads(torchrun(cfg, tmp_path / "run").stdout.strip().splitlines()[-1])
    assert summary["engine"] == {"amp": True, "channels_last": True, "compile": True} and summary["world_size"] == 2
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "run").values())


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["kill rank 1", "terminate torchrun"])
def test_a_dead_or_stopped_rank_stops_every_rank_and_closes_the_mlflow_run(shared_data, tmp_path, stop):
    """A rank killed outright (out of memory, a lost node), or torchrun stopped by the scheduler: the launch
    ends at once, naming the dead rank, and rank 0 closes its MLflow run (FAILED when a collective fails
    first, KILLED when its SIGTERM does)."""
    import psutil
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_experiment(tmp_path, shared_data, gpus=2, iterations=100_000, ckpt_every=20, log_every=20)
    cfg["tracking"] = {"uri": uri, "experiment": "tests"}
    with open(tmp_path / "torchrun.err", "w+") as err:
        job = torchrun(cfg, tmp_path / "run", wait=False, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.time() + 60
            while not (tmp_path / "run" / CHECKPOINT).exists() and time.time() < deadline:
                time.sleep(0.2)
            assert job.poll() is None, "the training ended before it could be stopped"
            if stop == "kill rank 1":
                next(p for p in psutil.Process(job.pid).children() if p.environ().get("RANK") == "1").kill()
            else:
                job.send_signal(signal.SIGTERM)
            stopped = time.time()
            job.wait(timeout=60)
        finally:
            if job.poll() is None:
                job.kill()
        took = time.time() - stopped
        err.seek(0)
        output = err.read()
    assert job.returncode != 0 and took < 60
    if stop == "kill rank 1":
        assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)\s+exitcode\s*:\s*-9", output), output[-3000:]
    else:
        assert "bsr: stopped by SIGTERM" in output
    run_id = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["mlflow_run_id"]
    assert MlflowClient(uri).get_run(run_id).info.status in ("KILLED", "FAILED")
