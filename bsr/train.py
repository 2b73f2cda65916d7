"""`bsr train`: the training loop, with exact resume.

Adam (fused) at `lr`, multiplied by `lr_gamma` every `lr_step_epochs` epochs of `iters_per_epoch` iterations.
`amp` (bf16 autocast), `channels_last` and `compile` (torch.compile) are each `auto` (on CUDA only), true (on
any device: CPU autocast runs bf16 and inductor compiles for the CPU, which is how the tests run these paths)
or false.
A checkpoint holds the model, optimizer, scheduler, sampler and RNG states and the iteration, so that
`--resume` continues bit for bit. The loss is checked for NaN/inf at every log step and before every
checkpoint, so a checkpoint on disk never holds weights that saw a non-finite loss.

Several GPUs (`train.gpus`): `torchrun --standalone --nproc-per-node N --no-python bsr train ...` starts one
process per GPU, and each trains a DistributedDataParallel replica. Both are PyTorch's own: DDP averages the
gradients while the backward pass runs, torchrun gives each process its rank and stops them all when one fails,
and neither adds a dependency. `train.batch` is per process (the global batch is N x batch); each rank draws
its own RFS batches, rank 0 from the config's seed, so that one process trains exactly as without torchrun.
Rank 0 alone writes the run folder and talks to MLflow; its checkpoints hold every rank's sampler and RNG state.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from bsr import BsrError, layout
from bsr.config import check_experiment, flatten
from bsr.evaluate import model_upscaler, score_set
from bsr.files import (atomic_path, check_writer, exclusive_lock, mark_folder, read_torch_file, sigterm_raises,
                       write_text)
from bsr.losses import check_loss_config, hybrid_loss
from bsr.model import build_model
from bsr.model_files import write_model_folder
from bsr.sampling import PatchSampler, TrainingSet, load_training_set
from bsr.tracking import Tracker, provenance, resolve_uri

CHECKPOINT, FINAL_MODEL, METRICS = layout.RUN_CHECKPOINT, layout.RUN_MODEL, layout.RUN_METRICS
SUMMARY, CONFIG = layout.RUN_SUMMARY, layout.RUN_CONFIG
METRIC_COLUMNS = ("step", "loss", "lr", "samples_per_s", "val_psnr")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "the CPU (no GPU: slow at the paper's scale)" if not torch.cuda.is_available() else "the CPU"


def distributed_context() -> tuple[int, int, int]:
    """(rank, world size, local rank), as torchrun sets them; (0, 1, 0) for a plain launch."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """Rank 0: the process that owns the run folder and the MLflow run (the only process of a plain launch)."""
    return distributed_context()[0] == 0


def check_launch(gpus: int, world_size: int) -> None:
    """As many processes as train.gpus: the world size sets the global batch, so it is part of the config."""
    if world_size == gpus:
        return
    if world_size == 1:
        raise BsrError(f"train.gpus is {gpus}: launch one process per GPU, with "
                       f"`torchrun --standalone --nproc-per-node {gpus} --no-python bsr train ...`")
    raise BsrError(f"train.gpus is {gpus} but torchrun started {world_size} processes: "
                   f"launch it with --nproc-per-node {gpus}, or set train.gpus: {world_size}")


def pick_device(name: str, local_rank: int | None = None) -> torch.device:
    """The config's device; under torchrun (`local_rank`) a GPU is the rank's own, made the current device so
    that NCCL and the caching allocator use it."""
    if name == "cuda" and not torch.cuda.is_available():
        raise BsrError("train.device is 'cuda' but no CUDA device is available")
    if name == "auto" and local_rank is not None and not torch.cuda.is_available():
        raise BsrError(f"train.gpus is {distributed_context()[1]} with train.device auto, but no CUDA device is "
                       "available: set train.device: cpu to train that many CPU processes (gloo) on purpose")
    device = torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                          "cpu" if name == "auto" else name)
    if device.type == "cuda" and local_rank is not None:
        if local_rank >= torch.cuda.device_count():
            raise BsrError(f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(device: torch.device, world_size: int):
    """torchrun's processes joined in one group (none for a plain launch), left again however training ends:
    NCCL between GPUs, gloo between CPU processes (which is how the tests run DDP)."""
    if world_size == 1:
        yield
        return
    cuda = device.type == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    try:
        yield
        # The other ranks finish while rank 0 still writes the model: they wait for it, so that no rank tears
        # its connections down under a peer that still holds them (a gloo rank that left early aborted once in CI).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def summed_over_ranks(values, device: torch.device) -> list[float]:
    """Each value (a device tensor or a number) summed over the ranks, or as it is in one process, read back on
    the host: one all-reduce and one sync for all of them. float64 keeps counts exact."""
    totals = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in values])
    if dist.is_initialized():
        dist.all_reduce(totals)
    return totals.tolist()


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


def rank_seed(seed: int, rank: int):
    """The seed of a rank's batches. Rank 0 takes the config's seed, so that one process samples as without
    torchrun; rank r > 0 the r-th child of the seed's SeedSequence, numpy's way of deriving independent streams
    for parallel workers, which no plain integer seed (below 2**128) gives: it repeats no other run's batches."""
    return seed if rank == 0 else np.random.SeedSequence(seed, spawn_key=(rank,))


def make_sampler(cfg: dict, training_set: TrainingSet | None = None, rank: int = 0) -> PatchSampler:
    """The config's sampler of `rank` over its training data (or over `training_set`, which the benches build)."""
    s, data, t = cfg["sampling"], cfg["data"], cfg["train"]
    if training_set is None:
        training_set = load_training_set(data["train_hr"], data["train_lr"], cfg["scale"], s["patch"],
                                         s["pic_reduce"], data.get("train_pic"))
    return PatchSampler(training_set, t["batch"], t["seed"], rfs=s["rfs"],
                        intervals=s["intervals"], candidates=s["candidates"], max_rounds=s["max_rounds"],
                        quota_weights=s.get("quota"), range_quantiles=tuple(s["range_quantiles"]),
                        augment=s["augment"], rfs_images=s["rfs_images"], batch_seed=rank_seed(t["seed"], rank))


def make_train_step(model, optimizer, scheduler, cfg: dict, device: torch.device):
    """One optimisation step on a uint8 batch, with the config's amp, channels_last and compile switches;
    returns the loss as a device tensor (no host sync). Under torchrun the gradients are averaged over the ranks
    (DDP; its constructor is a collective, so every rank builds its step at the same point)."""
    t, loss_cfg = cfg["train"], cfg["loss"]
    channels_last = switch(t["channels_last"], device)
    forward = torch.compile(model) if switch(t["compile"], device) else model
    if dist.is_initialized():
        # DDP around the compiled module, as PyTorch's guide to torch.compile advises (dynamo then splits the
        # graph at DDP's gradient buckets). The model's one buffer is a constant: no broadcast at every forward.
        forward = DistributedDataParallel(forward, device_ids=[device] if device.type == "cuda" else None,
                                          forward_sync_buffers=False)
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
    # Checkpoints from before train.gpus trained one process, and one process leaves the key out: they still match.
    kept["train"] = {k: v for k, v in kept["train"].items() if not (k == "gpus" and v == 1)}
    return kept


def gather_rank_states(sampler: PatchSampler, device: torch.device) -> list[dict] | None:
    """Every rank's sampler and RNG states, in rank order, on rank 0 (None on the others); a collective that
    every rank joins at every checkpoint."""
    own = {"sampler": sampler.state(), "rng": rng_states(device)}
    if not dist.is_initialized():
        return [own]
    gathered = [None] * dist.get_world_size() if is_main() else None
    dist.gather_object(own, gathered)
    return gathered


def save_checkpoint(path: Path, cfg, step, model, optimizer, scheduler, rank_states: list[dict], run_id,
                    metric_log: list[dict]) -> None:
    """Every state, plus the metric history up to `step`: the pipeline deletes metrics.csv before a rerun.
    Rank 0's sampler and RNG states stand where a one-process checkpoint has them (checkpoints from before
    multi-GPU training hold no `other_ranks` and still resume)."""
    state = {"config": trajectory_config(cfg), "step": step, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "sampler": rank_states[0]["sampler"], "rng": rank_states[0]["rng"], "other_ranks": rank_states[1:],
             "mlflow_run_id": run_id, "metric_log": metric_log}
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


def build(cfg: dict, device: torch.device, training_set: TrainingSet | None = None, rank: int = 0):
    """Sampler (of `rank`), model, optimizer and scheduler, freshly initialised from the config's seed."""
    t = cfg["train"]
    torch.manual_seed(t["seed"])
    sampler = make_sampler(cfg, training_set, rank)
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


def restore(state: dict, device, model, optimizer, scheduler, sampler,
            rank: int = 0) -> tuple[int, str | None, list[dict]]:
    """Load every state of a checkpoint (read onto the CPU; each state moves to where it lives), the sampler and
    RNG states of `rank`; return its iteration, MLflow run id and metric history."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    own = state if rank == 0 else state["other_ranks"][rank - 1]
    sampler.load_state(own["sampler"])
    set_rng_states(own["rng"], device)
    return state["step"], state["mlflow_run_id"], state["metric_log"]


def open_tracker(cfg: dict, run_id: str | None, world_size: int) -> Tracker:
    """The run's MLflow run: a new one with the config and world size as params, or the checkpoint's, reopened."""
    tracking = cfg.get("tracking", {})
    tracker = Tracker(resolve_uri(tracking.get("uri"), tracking.get("default_uri")),
                      tracking.get("experiment") or cfg["name"], cfg["name"], run_id=run_id)
    if tracker.reopened:
        tracker.mark_running()
    else:
        tracker.log_params({**flatten({k: v for k, v in cfg.items() if k != "tracking"}), "world_size": world_size})
        tracker.set_tags({**replicate_tags(cfg), **provenance(tracking)})
    return tracker


def replicate_tags(cfg: dict) -> dict:
    """Which experiment a run trains, as which replicate and with which seed: MLflow tags to group runs by."""
    replicate = cfg.get("replicate", {})
    return {"bsr.experiment": replicate.get("experiment", cfg["name"]), "bsr.replicate": replicate.get("index", 0),
            "bsr.seed": cfg["train"]["seed"]}


def write_metric_log(path: Path, rows: list[dict]) -> None:
    write_text(path, ",".join(METRIC_COLUMNS) + "\n"
               + "".join(",".join(str(row.get(c, "")) for c in METRIC_COLUMNS) + "\n" for row in rows))


def train(cfg: dict, out_dir, resume: str = "no") -> dict | None:
    """Train one experiment into `out_dir`, in this process or as one rank of a torchrun launch; return the
    summary (None on ranks other than 0). A held lock keeps a second training out of the folder. The MLflow
    run ends FINISHED, or FAILED on an error, or KILLED on Ctrl-C or SIGTERM, never RUNNING."""
    out_dir = Path(out_dir)
    check_experiment(cfg, f"experiment {cfg.get('name')!r}")
    check_loss_config(cfg["loss"])
    rank, world_size, local_rank = distributed_context()
    check_launch(cfg["train"]["gpus"], world_size)
    if out_dir.exists() and not out_dir.is_dir():
        raise BsrError(f"{out_dir}: is a file; --out is a run folder")
    check_writer(out_dir, "train")
    with sigterm_raises(), contextlib.ExitStack() as held:
        if cfg["train"].get("threads"):
            torch.set_num_threads(cfg["train"]["threads"])
        device = pick_device(cfg["train"]["device"], local_rank if world_size > 1 else None)
        if is_main():  # first, so that a run that would take days on the CPU is seen at once
            print(f"bsr train {cfg['name']}: training on {device_name(device)}", file=sys.stderr, flush=True)
        held.enter_context(process_group(device, world_size))
        state = agree_on_start(cfg, out_dir, resume, held)
        sampler, model, optimizer, scheduler = build(cfg, device, rank=rank)
        step, run_id, log_rows = restore(state, device, model, optimizer, scheduler, sampler, rank) if state \
            else (0, None, [])
        del state
        tracker = open_tracker(cfg, run_id, world_size) if is_main() else None
        try:
            started = time.perf_counter()
            train_loop(cfg, out_dir, device, step, log_rows, sampler, model, optimizer, scheduler, tracker)
            fallback_patches = int(summed_over_ranks([sampler.fallback_patches], device)[0])
            if tracker is None:
                return None
            summary = write_outputs(cfg, out_dir, device, log_rows, sampler, model, tracker, world_size,
                                    fallback_patches, seconds=time.perf_counter() - started)
        except BaseException as err:
            if tracker is not None:
                # When one rank fails, torchrun sends the others SIGTERM: it must not cut this closing short.
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                tracker.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
        tracker.finish()
        return summary


def agree_on_start(cfg: dict, out_dir: Path, resume: str, held: contextlib.ExitStack) -> dict | None:
    """The checkpoint that every rank resumes, or None to start afresh. Rank 0 alone takes the run folder's lock
    (until `held` closes), decides (resume_state may set an unreadable checkpoint aside) and removes what a fresh
    start replaces; the other ranks learn its decision, or its error, and then read the checkpoint themselves."""
    state = message = None
    if is_main():
        holder = f"bsr train {cfg['name']} (pid {os.getpid()} on {socket.gethostname()}, since {time.ctime()})"
        try:
            held.enter_context(exclusive_lock(out_dir / layout.RUN_LOCK, holder))
            mark_folder(out_dir, "train")
            state = resume_state(cfg, out_dir / CHECKPOINT, resume)
        except BsrError as err:
            message = str(err)
        else:
            if state is None or state["step"] < cfg["train"]["iterations"]:
                # The final outputs describe a finished run, and a checkpoint not resumed is replaced: nothing of
                # another run may sit beside the training that goes on here, where evaluation would find it.
                stale = (FINAL_MODEL, layout.RUN_MODEL_RECORD, SUMMARY, CONFIG, METRICS) + ((CHECKPOINT,) if state is None else ())
                for name in stale:
                    (out_dir / name).unlink(missing_ok=True)
    decision = [state is not None, message]
    if dist.is_initialized():
        dist.broadcast_object_list(decision)
    resumed, message = decision
    if message is not None:
        raise BsrError(message)  # on every rank: all stop together, with one message
    if resumed and state is None:
        state = read_torch_file(out_dir / CHECKPOINT, "checkpoint", CHECKPOINT_KEYS)
    return state


def train_loop(cfg, out_dir, device, step, log_rows, sampler, model, optimizer, scheduler, tracker) -> None:
    """Iterate from `step` to `train.iterations`, logging, validating and checkpointing on rank 0 (`tracker` is
    None on the other ranks); appends to `log_rows`. A checkpoint at the last iteration makes a later resume
    write the outputs without training."""
    t, ckpt_path = cfg["train"], out_dir / CHECKPOINT
    main, world_size = is_main(), distributed_context()[1]
    train_step = make_train_step(model, optimizer, scheduler, cfg, device)
    # Summed on the device, read at log and checkpoint steps only: no host sync per iteration.
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    loss_sum = torch.zeros((), device=device)
    window_steps = window_samples = 0
    window_start = time.perf_counter()

    with tqdm(total=t["iterations"], initial=step, desc=cfg["name"], unit="it", dynamic_ncols=True,
              mininterval=0.5 if sys.stderr.isatty() else 30, disable=not main) as bar:
        model.train()
        while step < t["iterations"]:
            lr_batch, hr_batch = sampler.next_batch()
            loss = train_step(lr_batch, hr_batch)
            step += 1
            window_steps += 1
            window_samples += len(lr_batch) * world_size
            nonfinite |= ~torch.isfinite(loss)
            loss_sum += loss
            bar.update()
            last = step == t["iterations"]
            log_now, ckpt_now = step % t["log_every"] == 0 or last, step % t["ckpt_every"] == 0 or last
            if log_now or ckpt_now:
                # Summed over the ranks, so that every rank logs the same loss and all stop together, with one
                # error, when any saw a non-finite loss.
                loss_total, nonfinite_ranks, fallback_patches = summed_over_ranks(
                    [loss_sum, nonfinite, sampler.fallback_patches], device)
                if nonfinite_ranks:
                    raise BsrError(f"non-finite loss before iteration {step}: training stopped; the last good "
                                   f"checkpoint is {ckpt_path if ckpt_path.is_file() else 'none yet'}")
            if log_now and main:
                metrics = {"loss": loss_total / (window_steps * world_size), "lr": scheduler.get_last_lr()[0],
                           "samples_per_s": window_samples / (time.perf_counter() - window_start)}
                if step % t["val_every"] == 0 or last:
                    val_psnr = validate_psnr(model, cfg, device)
                    if val_psnr is not None:
                        metrics["val_psnr"] = val_psnr
                log_rows.append({"step": step, **metrics})
                tracker.log_metrics({**metrics, "fallback_patches": fallback_patches}, step)
                bar.set_postfix(loss=f"{metrics['loss']:.4g}", samples_s=f"{metrics['samples_per_s']:.0f}")
            if log_now:
                loss_sum.zero_()
                window_steps = window_samples = 0
                window_start = time.perf_counter()
            if ckpt_now:
                rank_states = gather_rank_states(sampler, device)
                if main:
                    save_checkpoint(ckpt_path, cfg, step, model, optimizer, scheduler, rank_states,
                                    tracker.run_id, log_rows)
                    write_metric_log(out_dir / METRICS, log_rows)


def write_outputs(cfg, out_dir, device, log_rows, sampler, model, tracker, world_size: int, fallback_patches: int,
                  seconds: float) -> dict:
    """The final model, metric log, summary and config, all from the trained state (which may be a finished
    checkpoint: the pipeline deletes a job's outputs before it reruns it); `fallback_patches` of all ranks."""
    t = cfg["train"]
    write_metric_log(out_dir / METRICS, log_rows)
    write_model_folder(out_dir, model.state_dict(), model_record(cfg))
    validated = [row["val_psnr"] for row in log_rows if "val_psnr" in row]
    summary = {"name": cfg["name"], **{key.removeprefix("bsr."): value for key, value in replicate_tags(cfg).items()},
               "iterations": t["iterations"], "val_psnr": validated[-1] if validated else None,
               "fallback_patches": fallback_patches, "excluded_images": sampler.excluded,
               "device": str(device), "world_size": world_size,
               "engine": {key: switch(t[key], device) for key in ("amp", "channels_last", "compile")},
               "mlflow_run_id": tracker.run_id, "tracking_uri": tracker.uri,
               "tracking_experiment": tracker.experiment, "mlflow_model_uri": log_final_model(cfg, model, tracker)}
    # Nothing of this session goes into the file: rewriting a finished run gives the same bytes (the MLflow model
    # too, which a rerun finds rather than logs again), so DVC and Snakemake do not rerun the evaluations
    # downstream.
    write_text(out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    write_text(out_dir / CONFIG, yaml.safe_dump(cfg, sort_keys=False))
    for name in (CONFIG, FINAL_MODEL, layout.RUN_MODEL_RECORD, METRICS):
        tracker.log_artifact(out_dir / name)
    return {**summary, "seconds_this_session": seconds}


def weights_sha256(model: torch.nn.Module) -> str:
    """A digest of every tensor of the state dict, by name: equal for equal weights, whatever the device."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_record(cfg: dict) -> dict:
    """What a model folder records of the network besides its weights (bsr.model_files)."""
    return {"model_config": cfg["model"], "scale": cfg["scale"], "degradation": cfg["degradation"], "name": cfg["name"]}


def log_final_model(cfg: dict, model, tracker: Tracker) -> str | None:
    """The trained network in MLflow: logged on the training's run, and registered as a version of
    `tracking.registered_model` under `tracking.model_alias` when the config names one. Returns the models:/ URI
    of that version (else of the logged model), or None when nothing is tracked.

    The logged model is a model folder (model.safetensors and model.json, bsr.model_files) under MLflow's
    flavour `bsr`: data only, which `bsr upscale`/`bsr export` load by building the network with bsr's code,
    for float32 RGB NCHW in [0, 1] of any size, on any device (the weights are float32 on the CPU)."""
    if not tracker.enabled:
        return None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bsr-model-") as folder:
        write_model_folder(folder, model.state_dict(), model_record(cfg))
        model_id = tracker.log_model(Path(folder), weights_sha256(model), {
            "scale": cfg["scale"], "degradation": cfg["degradation"], "experiment": cfg["name"],
            "input": "float32 RGB NCHW in [0, 1]",
            "output": f"float32 RGB NCHW at x{cfg['scale']} the height and width, about [0, 1]"})
    name = cfg.get("tracking", {}).get("registered_model")
    if name is None:
        return f"models:/{model_id}"
    return tracker.register_model(model_id, name, cfg["tracking"].get("model_alias"))
