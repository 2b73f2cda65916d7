"""`bsr train`: the training loop, with exact resume.

Adam (fused) at `lr`, multiplied by `lr_gamma` every `lr_step_epochs` epochs of `iters_per_epoch` iterations.
`amp` (bf16 autocast), `channels_last` and `compile` (torch.compile) are each `auto` (on CUDA only), true (on
any device: CPU autocast runs bf16 and inductor compiles for the CPU, which is how the tests run these paths)
or false.
A checkpoint holds the model, optimizer, scheduler, sampler and RNG states and the iteration, so that
`--resume` continues bit for bit. The loss is checked for NaN/inf at every log step and before every
checkpoint, so a checkpoint on disk never holds weights that saw a non-finite loss.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from bsr import BsrError, layout
from bsr.config import check_experiment, flatten
from bsr.evaluate import model_upscaler, score_set
from bsr.files import atomic_path, exclusive_lock, read_torch_file, write_text
from bsr.losses import check_loss_config, hybrid_loss
from bsr.model import build_model
from bsr.sampling import PatchSampler, TrainingSet, load_training_set
from bsr.tracking import Tracker, provenance, resolve_uri

CHECKPOINT, FINAL_MODEL, METRICS = layout.RUN_CHECKPOINT, layout.RUN_MODEL, layout.RUN_METRICS
SUMMARY, CONFIG = layout.RUN_SUMMARY, layout.RUN_CONFIG
METRIC_COLUMNS = ("step", "loss", "lr", "samples_per_s", "val_psnr")


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise BsrError("train.device is 'cuda' but no CUDA device is available")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                        "cpu" if name == "auto" else name)


def to_device(batch: np.ndarray, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 NHWC from the sampler -> float NCHW in [0, 1]; the conversion runs on the device."""
    x = torch.from_numpy(batch)
    if device.type == "cuda":
        # Pinned (through PyTorch's caching host allocator), the copy is asynchronous: the next batch is
        # sampled on the CPU while the GPU still works on this one.
        x = x.pin_memory()
    x = x.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def switch(setting, device: torch.device) -> bool:
    """A config switch: true or false, or 'auto' for on CUDA only."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def make_sampler(cfg: dict, training_set: TrainingSet | None = None) -> PatchSampler:
    """The config's sampler over its training data (or over `training_set`, which the benches build)."""
    s, data = cfg["sampling"], cfg["data"]
    if training_set is None:
        training_set = load_training_set(data["train_hr"], data["train_lr"], cfg["scale"], s["patch"],
                                         s["pic_reduce"], data.get("train_pic"))
    return PatchSampler(training_set, cfg["train"]["batch"], cfg["train"]["seed"], rfs=s["rfs"],
                        intervals=s["intervals"], candidates=s["candidates"], max_rounds=s["max_rounds"],
                        quota_weights=s.get("quota"), range_quantiles=tuple(s["range_quantiles"]),
                        augment=s["augment"], rfs_images=s["rfs_images"])


def make_train_step(model, optimizer, scheduler, cfg: dict, device: torch.device):
    """One optimisation step on a uint8 batch, with the config's amp, channels_last and compile switches;
    returns the loss as a device tensor (no host sync)."""
    t, loss_cfg = cfg["train"], cfg["loss"]
    channels_last = switch(t["channels_last"], device)
    forward = torch.compile(model) if switch(t["compile"], device) else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=switch(t["amp"], device))

    def train_step(lr_batch: np.ndarray, hr_batch: np.ndarray) -> torch.Tensor:
        lr_t, hr_t = to_device(lr_batch, device, channels_last), to_device(hr_batch, device, channels_last)
        with autocast:
            sr = forward(lr_t)
        loss = hybrid_loss(sr, hr_t, loss_cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss.detach()

    return train_step


def rng_states(device: torch.device) -> dict:
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict, device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


# Settings that may change between a checkpoint and its resumption: they do not change the weights' path.
# (With a cosine schedule the iteration count shapes the lr curve, so changing it is not a resumable change.)
RESUMABLE_CHANGES = {"tracking": None, "data": ("val_hr", "val_lr"),
                     "train": ("iterations", "log_every", "val_every", "ckpt_every", "compile", "threads")}


def trajectory_config(cfg: dict) -> dict:
    """The part of a config that a resumed run must share with its checkpoint."""
    kept = {}
    for key, value in cfg.items():
        if key in RESUMABLE_CHANGES:
            ignored = RESUMABLE_CHANGES[key]
            if ignored is None:
                continue
            value = {k: v for k, v in value.items()
                     if k not in ignored or (k == "iterations" and value.get("lr_schedule") == "cosine")}
        kept[key] = value
    return kept


def save_checkpoint(path: Path, cfg, step, model, optimizer, scheduler, sampler, device, run_id,
                    metric_log: list[dict]) -> None:
    """Every state, plus the metric history up to `step`: the pipeline deletes metrics.csv before a rerun."""
    state = {"config": trajectory_config(cfg), "step": step, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "sampler": sampler.state(),
             "rng": rng_states(device), "mlflow_run_id": run_id, "metric_log": metric_log}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def validate_psnr(model, cfg: dict, device) -> float | None:
    data = cfg["data"]
    if not data.get("val_hr"):
        return None
    model.eval()
    scores = score_set(data["val_hr"], cfg["scale"], cfg["degradation"], model_upscaler(model, device),
                       lr_dir=data.get("val_lr"))
    model.train()
    return float(scores["psnr"].mean())


CHECKPOINT_KEYS = ("config", "step", "model", "optimizer", "scheduler", "sampler", "rng", "mlflow_run_id",
                   "metric_log")


def resume_state(cfg: dict, ckpt_path: Path, resume: str) -> dict | None:
    """The checkpoint to resume, or None to start afresh. `resume` is 'no', 'yes' (a checkpoint must exist,
    be readable and match) or 'auto' (resume a matching checkpoint; start afresh over one from another config,
    which is then replaced, or over an unreadable one, which is kept aside as `.corrupt`)."""
    if not ckpt_path.is_file():
        if resume == "yes":
            raise BsrError(f"{ckpt_path}: nothing to resume from")
        return None
    if resume == "no":
        raise BsrError(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")
    try:
        state = read_torch_file(ckpt_path, "checkpoint", CHECKPOINT_KEYS)
    except BsrError as err:
        if resume == "yes":
            raise
        aside = ckpt_path.with_name(ckpt_path.name + ".corrupt")
        os.replace(ckpt_path, aside)
        print(f"bsr: {err}; kept it as {aside} and training afresh", file=sys.stderr)
        return None
    saved, wanted = flatten(state["config"]), flatten(trajectory_config(cfg))
    changed = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
    iterations = cfg["train"]["iterations"]
    if changed:
        reason = f"{ckpt_path} was trained with another config (differs in {', '.join(changed)})"
    elif state["step"] > iterations:
        reason = f"{ckpt_path} is at iteration {state['step']}, past train.iterations = {iterations}"
    else:
        return state
    if resume == "yes":
        raise BsrError(f"{reason}: move it away to train afresh")
    print(f"bsr: {reason}; training afresh (it is replaced)", file=sys.stderr)
    return None


def build(cfg: dict, device: torch.device, training_set: TrainingSet | None = None):
    """Sampler, model, optimizer and scheduler, freshly initialised from the config's seed."""
    t = cfg["train"]
    torch.manual_seed(t["seed"])
    sampler = make_sampler(cfg, training_set)
    model = build_model(cfg["model"], cfg["scale"]).to(device)
    if switch(t["channels_last"], device):
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=t["lr"], betas=tuple(t["betas"]), fused=True)
    return sampler, model, optimizer, lr_scheduler(optimizer, t)


def lr_scheduler(optimizer, t: dict):
    """Stepped once per iteration: the paper's step decay, or cosine annealing over the whole run."""
    if t.get("lr_schedule", "step") == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, t["iterations"])
    return torch.optim.lr_scheduler.StepLR(optimizer, t["lr_step_epochs"] * t["iters_per_epoch"], t["lr_gamma"])


def restore(state: dict, device, model, optimizer, scheduler, sampler) -> tuple[int, str | None, list[dict]]:
    """Load every state of a checkpoint (read onto the CPU; each state moves to where it lives); return its
    iteration, MLflow run id and metric history."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.load_state(state["sampler"])
    set_rng_states(state["rng"], device)
    return state["step"], state["mlflow_run_id"], state["metric_log"]


def open_tracker(cfg: dict, run_id: str | None) -> Tracker:
    """The run's MLflow run: a new one with the config as params, or the checkpoint's, reopened."""
    tracking = cfg.get("tracking", {})
    tracker = Tracker(resolve_uri(tracking.get("uri"), tracking.get("default_uri")),
                      tracking.get("experiment") or cfg["name"], cfg["name"], run_id=run_id)
    if tracker.reopened:
        tracker.mark_running()
    else:
        tracker.log_params({**flatten({k: v for k, v in cfg.items() if k != "tracking"}), **provenance()})
    return tracker


def write_metric_log(path: Path, rows: list[dict]) -> None:
    write_text(path, ",".join(METRIC_COLUMNS) + "\n"
               + "".join(",".join(str(row.get(c, "")) for c in METRIC_COLUMNS) + "\n" for row in rows))


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's cancel, Snakemake stopping its jobs), raised wherever training is."""

    exit_code = 143  # 128 + SIGTERM, as a shell reports a process that SIGTERM ended


@contextlib.contextmanager
def sigterm_raises():
    def handler(signum, frame):
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def train(cfg: dict, out_dir, resume: str = "no") -> dict:
    """Train one experiment into `out_dir`; a held lock keeps a second training out of the folder. The MLflow
    run ends FINISHED, or FAILED on an error, or KILLED on Ctrl-C or SIGTERM, never RUNNING."""
    out_dir = Path(out_dir)
    check_experiment(cfg, f"experiment {cfg.get('name')!r}")
    check_loss_config(cfg["loss"])
    if out_dir.exists() and not out_dir.is_dir():
        raise BsrError(f"{out_dir}: is a file; --out is a run folder")
    holder = f"bsr train {cfg['name']} (pid {os.getpid()} on {socket.gethostname()}, since {time.ctime()})"
    with sigterm_raises(), exclusive_lock(out_dir / layout.RUN_LOCK, holder):
        state = resume_state(cfg, out_dir / CHECKPOINT, resume)
        if state is None or state["step"] < cfg["train"]["iterations"]:
            # The final outputs describe a finished run, and a checkpoint not resumed is replaced: nothing of
            # another run may sit beside the training that goes on here, where evaluation would find it.
            stale = (FINAL_MODEL, SUMMARY, CONFIG, METRICS) + ((CHECKPOINT,) if state is None else ())
            for name in stale:
                (out_dir / name).unlink(missing_ok=True)
        if cfg["train"].get("threads"):
            torch.set_num_threads(cfg["train"]["threads"])
        device = pick_device(cfg["train"]["device"])
        sampler, model, optimizer, scheduler = build(cfg, device)
        step, run_id, log_rows = restore(state, device, model, optimizer, scheduler, sampler) if state else (0, None, [])
        del state
        tracker = open_tracker(cfg, run_id)
        try:
            started = time.perf_counter()
            train_loop(cfg, out_dir, device, step, log_rows, sampler, model, optimizer, scheduler, tracker)
            summary = write_outputs(cfg, out_dir, device, log_rows, sampler, model, tracker,
                                    seconds=time.perf_counter() - started)
        except BaseException as err:
            tracker.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
        tracker.finish()
        return summary


def train_loop(cfg, out_dir, device, step, log_rows, sampler, model, optimizer, scheduler, tracker) -> None:
    """Iterate from `step` to `train.iterations`, logging, validating and checkpointing; appends to `log_rows`.
    A checkpoint at the last iteration makes a later resume write the outputs without training."""
    t, ckpt_path = cfg["train"], out_dir / CHECKPOINT
    train_step = make_train_step(model, optimizer, scheduler, cfg, device)
    # Summed on the device, read at log steps only: no host sync per iteration.
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    loss_sum = torch.zeros((), device=device)
    window_steps = window_samples = 0
    window_start = time.perf_counter()

    def check_finite():
        if nonfinite.item():
            raise BsrError(f"non-finite loss before iteration {step}: training stopped; "
                           f"the last good checkpoint is {ckpt_path if ckpt_path.is_file() else 'none yet'}")

    with tqdm(total=t["iterations"], initial=step, desc=cfg["name"], unit="it", dynamic_ncols=True,
              mininterval=0.5 if sys.stderr.isatty() else 30) as bar:
        model.train()
        while step < t["iterations"]:
            lr_batch, hr_batch = sampler.next_batch()
            loss = train_step(lr_batch, hr_batch)
            step += 1
            window_steps += 1
            window_samples += len(lr_batch)
            nonfinite |= ~torch.isfinite(loss)
            loss_sum += loss
            bar.update()
            last = step == t["iterations"]
            if step % t["log_every"] == 0 or last:
                check_finite()
                metrics = {"loss": loss_sum.item() / window_steps, "lr": scheduler.get_last_lr()[0],
                           "samples_per_s": window_samples / (time.perf_counter() - window_start)}
                if step % t["val_every"] == 0 or last:
                    val_psnr = validate_psnr(model, cfg, device)
                    if val_psnr is not None:
                        metrics["val_psnr"] = val_psnr
                log_rows.append({"step": step, **metrics})
                tracker.log_metrics({**metrics, "fallback_patches": sampler.fallback_patches}, step)
                bar.set_postfix(loss=f"{metrics['loss']:.4g}", samples_s=f"{metrics['samples_per_s']:.0f}")
                loss_sum.zero_()
                window_steps = window_samples = 0
                window_start = time.perf_counter()
            if step % t["ckpt_every"] == 0 or last:
                check_finite()
                save_checkpoint(ckpt_path, cfg, step, model, optimizer, scheduler, sampler, device,
                                tracker.run_id, log_rows)
                write_metric_log(out_dir / METRICS, log_rows)


def write_outputs(cfg, out_dir, device, log_rows, sampler, model, tracker, seconds: float) -> dict:
    """The final model, metric log, summary and config, all from the trained state (which may be a finished
    checkpoint: the pipeline deletes a job's outputs before it reruns it)."""
    t = cfg["train"]
    write_metric_log(out_dir / METRICS, log_rows)
    with atomic_path(out_dir / FINAL_MODEL) as tmp:
        torch.save({"model": model.state_dict(), "model_config": cfg["model"], "scale": cfg["scale"],
                    "degradation": cfg["degradation"], "name": cfg["name"]}, tmp)
    validated = [row["val_psnr"] for row in log_rows if "val_psnr" in row]
    summary = {"name": cfg["name"], "iterations": t["iterations"], "val_psnr": validated[-1] if validated else None,
               "fallback_patches": sampler.fallback_patches, "excluded_images": sampler.excluded,
               "device": str(device),
               "engine": {key: switch(t[key], device) for key in ("amp", "channels_last", "compile")},
               "mlflow_run_id": tracker.run_id, "tracking_uri": tracker.uri,
               "tracking_experiment": tracker.experiment}
    # Nothing of this session goes into the file: rewriting a finished run gives the same bytes, so DVC and
    # Snakemake do not rerun the evaluations downstream.
    write_text(out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    write_text(out_dir / CONFIG, yaml.safe_dump(cfg, sort_keys=False))
    for name in (CONFIG, FINAL_MODEL, METRICS):
        tracker.log_artifact(out_dir / name)
    return {**summary, "seconds_this_session": seconds}
