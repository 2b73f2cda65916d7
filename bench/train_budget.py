"""A time-budgeted x2 training on T91 plus a BSD200 subset, then Set5 x2 Y-PSNR against bicubic.

The GPU check of the training engine (reference: a plain-PyTorch EDSR-baseline trained 240 s on the same data
reached 37.37 dB on an H100). The paper config's BI_x2 experiment (model, loss, sampler, amp/channels_last/
compile switches), Adam at --lr with a cosine schedule over elapsed time: the lr reaches 0 exactly when the
budget ends, whatever the throughput. The budget is training time from the first step, compile included.
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
from bsr.train import build, make_train_step, pick_device


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
    cfg["train"].update(batch=args.batch, lr=args.lr, **({"compile": False} if args.no_compile else {}))
    device = pick_device("auto")
    files = list_images(dataset("T91")) + list_images(dataset("BSD200"))[:args.bsd200]
    sampler, model, optimizer, _ = build(cfg, device, training_set(2, cfg["sampling"]["patch"], files))
    start = None

    def cosine(_):
        elapsed = 0.0 if start is None else time.perf_counter() - start
        return 0.5 * (1 + math.cos(math.pi * min(elapsed / args.seconds, 1.0)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    step_fn = make_train_step(model, optimizer, schedule, cfg, device)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        loss = step_fn(*sampler.next_batch())
        steps += 1
        if steps % 500 == 0:
            print(f"{time.perf_counter() - start:.0f} s: iteration {steps}, loss {float(loss):.4f}, "
                  f"lr {schedule.get_last_lr()[0]:.2e}", flush=True)
    float(loss)
    trained = time.perf_counter() - start
    model.eval()
    set5 = dataset("Set5")
    ours = score_set(set5, 2, "BI", model_upscaler(model, device))["psnr"].mean()
    bicubic = eval_bicubic(set5, 2, "BI", "/tmp/bsr_bench_bicubic.json")["psnr"]
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}: {steps} iterations of batch {args.batch} in {trained:.0f} s "
          f"({steps * args.batch / trained:.0f} samples/s, compile included; T91 + {args.bsd200} BSD200, "
          f"BSR n_fmg={cfg['model']['n_fmg']} x {cfg['model']['channels']} ch)")
    print(f"Set5 x2 Y-PSNR: BSR {ours:.2f} dB, bicubic {bicubic:.2f} dB (target >= 37.40 after 240 s on an H100)")


if __name__ == "__main__":
    main()
