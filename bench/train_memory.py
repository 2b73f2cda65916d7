"""Peak memory and start-up time of training at DIV2K size: 800 images of 2040x1356, x2, the paper model.

The training set is synthetic (no download) and built once into --dir: HR PNGs with smooth and textured
regions, their x2 LR PNGs (OpenCV's area resize: this bench measures memory and time, not image quality) and
their PIC summed-area tables, written by `bsr pic`'s code. A fresh process then does what `bsr train` does
before its first iteration (read every image and table, build the RFS sampler), builds the paper model and
runs a few fp32 CPU iterations. It prints the start-up time and the process's peak RSS, next to what the
summed-area-table sampler held on top (every int64 table, plus a flat copy of them).

Targets: peak RSS <= 12 GB and start-up <= 2 minutes on 2 cores. The peak after start-up is what training
holds on the host (images, the sampler's interval map, the model); CPU iterations add the activations of the
paper model at batch 16, which live in GPU memory when training runs on a GPU. Needs about 12 GB of free disk
in --dir (the set is built once, in about 5 minutes).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import REPO

IMAGES, WIDTH, HEIGHT, SCALE = 800, 2040, 1356, 2


def synthetic_image(rng: np.random.Generator) -> np.ndarray:
    """Smooth colour fields with a few textured patches: PICs spread over the intervals as in photos."""
    image = cv2.resize(rng.integers(0, 256, (HEIGHT // 64, WIDTH // 64, 3), dtype=np.uint8), (WIDTH, HEIGHT),
                       interpolation=cv2.INTER_CUBIC).astype(np.int16)
    for _ in range(6):
        h, w = rng.integers(100, 500, 2)
        y, x = rng.integers(0, HEIGHT - h), rng.integers(0, WIDTH - w)
        image[y:y + h, x:x + w] += rng.integers(-rng.integers(5, 60), 60, (h, w, 3), dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def build(root: Path) -> None:
    from bsr.pic import write_tables

    if (root / "done").is_file():
        return
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for sub in ("hr", "lr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(IMAGES):
        hr = synthetic_image(rng)
        lr = cv2.resize(hr, (WIDTH // SCALE, HEIGHT // SCALE), interpolation=cv2.INTER_AREA)
        for sub, image in (("hr", hr), ("lr", lr)):
            cv2.imwrite(str(root / sub / f"{i:04d}.png"), image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    write_tables(root / "lr", root / "pic", "sum")
    (root / "done").write_text("")
    print(f"built {IMAGES} synthetic {WIDTH}x{HEIGHT} images, x{SCALE} LR and PIC tables in "
          f"{time.perf_counter() - start:.0f} s", flush=True)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(root: Path, iterations: int) -> dict:
    """Run in a fresh process, so that the peak RSS is training's alone."""
    import torch

    from bsr.config import load_yaml, resolve_experiment
    from bsr.train import build as build_engine, make_train_step

    cfg = resolve_experiment(load_yaml(REPO / "config" / "config.yaml"), "BI_x2")
    cfg["data"].update(train_hr=[str(root / "hr")], train_lr=[str(root / "lr")], train_pic=[str(root / "pic")])
    cfg["train"].update(device="cpu", threads=2)
    torch.set_num_threads(2)
    start = time.perf_counter()
    sampler, model, optimizer, scheduler = build_engine(cfg, torch.device("cpu"))
    startup = time.perf_counter() - start
    startup_peak = peak_rss_gb()
    step = make_train_step(model, optimizer, scheduler, cfg, torch.device("cpu"))
    start = time.perf_counter()
    for _ in range(iterations):
        loss = float(step(*sampler.next_batch()))
    positions = int(sampler.positions.prod(axis=1).sum())
    table_bytes = sum((h + sampler.patch - 2) * (w + sampler.patch - 2) * 8 for h, w in sampler.positions)
    return {"startup_s": startup, "iteration_s": (time.perf_counter() - start) / iterations, "loss": loss,
            "startup_peak_rss_gb": startup_peak, "peak_rss_gb": peak_rss_gb(),
            "interval_map_gb": positions / 2**30, "tables_and_flat_copy_gb": 2 * table_bytes / 2**30,
            "batch": cfg["train"]["batch"], "patch": cfg["sampling"]["patch"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "bsr_div2k_synthetic")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.dir, args.iterations)))
        return
    build(args.dir)
    out = subprocess.run([sys.executable, "-m", "bench.train_memory", "--measure", "--dir", str(args.dir),
                          "--iterations", str(args.iterations)], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr[-3000:])
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"DIV2K-sized x{SCALE} training set: {IMAGES} images of {WIDTH}x{HEIGHT}, paper BSR, "
          f"batch {r['batch']}, {r['patch']}x{r['patch']} LR patches, 2 threads")
    print(f"start-up (read images and PIC tables, build the RFS sampler): {r['startup_s']:.0f} s (target <= 120 s)")
    print(f"peak RSS: after start-up {r['startup_peak_rss_gb']:.2f} GB; after {args.iterations} fp32 CPU "
          f"iterations ({r['iteration_s']:.1f} s each) {r['peak_rss_gb']:.2f} GB (target <= 12 GB)")
    print(f"the sampler's interval map: {r['interval_map_gb']:.2f} GB; the summed-area-table sampler also held "
          f"{r['tables_and_flat_copy_gb']:.2f} GB of int64 tables and their flat copy")


if __name__ == "__main__":
    main()
