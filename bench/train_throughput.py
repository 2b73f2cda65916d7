"""End-to-end training throughput (sampler, augmentation, step) of the paper BSR at x2 with 48x48 LR patches
on T91: the bsr engine against a plain fp32 eager loop (batch 16, no AMP, default Adam), in the same run.

The engine is the paper config's: on CUDA bf16 autocast, channels_last, fused Adam and torch.compile; on a CPU
its switches are off (`auto`), so expect a ratio near 1 there (use --steps small: the paper model is slow).
"""
import argparse
import time

import torch

from bench.common import REPO, training_set
from bsr.config import load_yaml, resolve_experiment
from bsr.losses import hybrid_loss
from bsr.model import build_model
from bsr.sampling import PatchSampler
from bsr.train import build, make_train_step, pick_device


def samples_per_second(step, sampler, device, warmup, steps):
    for _ in range(warmup):
        step(*sampler.next_batch())
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(*sampler.next_batch())
    float(loss)  # waits for the device
    return steps * sampler.batch / (time.perf_counter() - start)


def plain_step(cfg, device):
    torch.manual_seed(0)
    model = build_model(cfg["model"], cfg["scale"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)

    def step(lr, hr):
        lr = torch.from_numpy(lr).to(device).permute(0, 3, 1, 2).float() / 255
        hr = torch.from_numpy(hr).to(device).permute(0, 3, 1, 2).float() / 255
        loss = hybrid_loss(model(lr), hr, cfg["loss"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64, help="engine batch size (plain loop: 16)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    cfg = resolve_experiment(load_yaml(REPO / "config" / "config.yaml"), "BI_x2")
    cfg["train"].update(batch=args.batch, **({"compile": False} if args.no_compile else {}))
    device = pick_device("auto")
    patch = cfg["sampling"]["patch"]
    data = training_set(2, patch)
    plain = samples_per_second(plain_step(cfg, device), PatchSampler(data, 16, 0), device, args.warmup, args.steps)
    sampler, model, optimizer, scheduler = build(cfg, device, data)
    ours = samples_per_second(make_train_step(model, optimizer, scheduler, cfg, device), sampler, device,
                              args.warmup, args.steps)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}: BSR x2 (n_fmg={cfg['model']['n_fmg']}, {cfg['model']['channels']} ch), {patch}x{patch} LR")
    print(f"plain fp32 eager, batch 16: {plain:.1f} samples/s")
    print(f"bsr engine, batch {args.batch}: {ours:.1f} samples/s; {ours / plain:.2f}x "
          f"(targets on an H100/H200: >= 1200 samples/s and >= 7x)")


if __name__ == "__main__":
    main()
