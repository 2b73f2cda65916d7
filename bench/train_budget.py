"""A time-budgeted x2 training on T91 plus a BSD200 subset, then Set5 x2 Y-PSNR against bicubic.

The GPU check of the training engine (reference: a plain-PyTorch EDSR-baseline trained 240 s on the same data
reached 37.37 dB). Cosine lr over the iterations that fit the budget, estimated after compile and warm-up.
On a CPU, try: --seconds 30 --bsd200 5 --n-fmg 1 --channels 16
"""
import argparse
import math
import time

import torch

from bench.common import REPO, dataset, training_set
from bsr.config import load_yaml, resolve_experiment
from bsr.evaluate import eval_bicubic, model_upscaler, score_set
from bsr.images import list_images
from bsr.model import build_model
from bsr.sampling import PatchSampler
from bsr.train import make_train_step, pick_device


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--bsd200", type=int, default=110, help="how many BSD200 images join T91")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--n-fmg", type=int)
    parser.add_argument("--channels", type=int)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    cfg = resolve_experiment(load_yaml(REPO / "config" / "config.yaml"), "BI_x2")
    cfg["model"].update({k: v for k, v in (("n_fmg", args.n_fmg), ("channels", args.channels)) if v})
    device = pick_device("auto")
    files = list_images(dataset("T91")) + list_images(dataset("BSD200"))[:args.bsd200]
    sampler = PatchSampler(training_set(2, files), cfg["sampling"]["patch"], args.batch, seed=0)
    torch.manual_seed(0)
    model = build_model(cfg["model"], 2).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, fused=cuda or None)
    total = [math.inf]  # set once the throughput is known
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * min(i / total[0], 1.0))))
    step_fn = make_train_step(model, optimizer, schedule, cfg["loss"], device, amp=True, channels_last=cuda,
                              compile=not args.no_compile)
    steps, loss, warmup_end = 0, None, None
    start = time.perf_counter()  # the budget is training time: compile included, data loading not
    while time.perf_counter() - start < args.seconds:
        loss = step_fn(*sampler.next_batch())
        steps += 1
        if steps == 50:
            float(loss)
            warmup_end = (time.perf_counter(), steps)
        if steps == 150:
            float(loss)
            rate = 100 / (time.perf_counter() - warmup_end[0])
            total[0] = steps + rate * (args.seconds - (time.perf_counter() - start))
            print(f"{rate:.1f} it/s ({rate * args.batch:.0f} samples/s); planning {total[0]:.0f} iterations")
    float(loss)
    trained = time.perf_counter() - start
    model.eval()
    set5 = dataset("Set5")
    ours = score_set(set5, 2, "BI", model_upscaler(model, device))["psnr"].mean()
    bicubic = eval_bicubic(set5, 2, "BI", "/tmp/bsr_bench_bicubic.json")["psnr"]
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"{name}: {steps} iterations of batch {args.batch} in {trained:.0f} s "
          f"(T91 + {args.bsd200} BSD200, BSR n_fmg={cfg['model']['n_fmg']} x {cfg['model']['channels']} ch)")
    print(f"Set5 x2 Y-PSNR: BSR {ours:.2f} dB, bicubic {bicubic:.2f} dB (target >= 37.40 on an H100)")


if __name__ == "__main__":
    main()
