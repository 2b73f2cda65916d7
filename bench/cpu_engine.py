"""Which training switches are fastest on a CPU, for the study's BSR (config/study.yaml): fp32 eager against
channels_last, bf16 autocast and torch.compile, each timed in the same run with the study's threads, batch and
patch, on T91 at x2. Compile time is printed apart: a short run must win it back.

    python -m bench.cpu_engine [--steps 40] [--threads 1]
"""
import argparse
import time

import torch

from bench.common import REPO, training_set
from bsr.config import load_pipeline, resolve_experiment
from bsr.train import build, make_train_step

VARIANTS = {"fp32 eager": {}, "channels_last": {"channels_last": True}, "bf16 autocast": {"amp": True},
            "torch.compile": {"compile": True}, "bf16 + channels_last": {"amp": True, "channels_last": True},
            "bf16 + compile": {"amp": True, "compile": True}}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = resolve_experiment(load_pipeline(REPO / "config" / "study.yaml"), "ablation_baseline")
    data = training_set(2, base["sampling"]["patch"])
    device = torch.device("cpu")
    print(f"study BSR (n_fmg={base['model']['n_fmg']}, {base['model']['channels']} ch), x2, batch "
          f"{base['train']['batch']}, {base['sampling']['patch']}x{base['sampling']['patch']} LR, "
          f"{args.threads} thread(s)")
    plain = None
    for name, switches in VARIANTS.items():
        cfg = {**base, "train": {**base["train"], "amp": False, "channels_last": False, "compile": False, **switches}}
        sampler, model, optimizer, scheduler = build(cfg, device, data)
        step = make_train_step(model, optimizer, scheduler, cfg, device)
        start = time.perf_counter()
        for _ in range(args.warmup):
            step(*sampler.next_batch())
        warmup = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.steps):
            float(step(*sampler.next_batch()))
        rate = args.steps * cfg["train"]["batch"] / (time.perf_counter() - start)
        plain = plain or rate
        print(f"{name:20s}: {rate:6.1f} samples/s ({rate / plain:.2f}x fp32 eager); first {args.warmup} steps "
              f"{warmup:.1f} s")


if __name__ == "__main__":
    main()
