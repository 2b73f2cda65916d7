"""Peak memory and time of `bsr upscale` on a 4000x3000 RGB photo at x2 with the paper model (16 FMGs of 64
channels; random weights, since memory and time do not depend on them), on the CPU with 2 threads.

Each figure comes from a fresh process, so that its peak RSS is its own:
- tiled, with the CPU's default tile and overlap: what it holds is the photo, the SR output and one tile's
  activations. `--tiles K` stops after K tiles and scales the time up to the whole photo (every tile is the same
  size, so the first one reaches the peak); a 2-core CPU takes hours over all of them;
- untiled, on a --untiled-size crop: the bytes per LR pixel that one whole-image forward pass holds, and from
  them what the whole photo would need. The whole photo is run untiled only where that fits in free memory.
Reading and writing the PNGs is left out (Pillow holds one copy of the output while it encodes).
"""
import argparse
import json
import subprocess
import sys
import time

import numpy as np

from bench.common import REPO
from bench.train_memory import peak_rss_gb

SCALE = 2


class EnoughTiles(Exception):
    """Raised by the forward pass after --tiles tiles, to stop the tiled run early."""


def measure(width: int, height: int, tile: int, max_tiles: int) -> dict:
    """Super-resolve a random `width`×`height` RGB image; run in a fresh process (see main)."""
    import torch

    from bsr.config import load_yaml, resolve_experiment
    from bsr.model import build_model
    from bsr.upscale import DEFAULT_OVERLAP, exact_forward, tile_windows, upscale_tiled

    torch.set_num_threads(2)
    model = build_model(resolve_experiment(load_yaml(REPO / "config" / "config.yaml"), "BI_x2")["model"], SCALE)
    model.eval()
    lr = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    before = peak_rss_gb()
    forward, done = exact_forward(model), []

    def counted(x):
        if len(done) == max_tiles:
            raise EnoughTiles
        done.append(x.shape)
        return forward(x)

    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        upscale_tiled(lr, counted, torch.device("cpu"), tile, DEFAULT_OVERLAP)
    except EnoughTiles:
        pass
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    tiles = len(tile_windows(height, tile, DEFAULT_OVERLAP)) * len(tile_windows(width, tile, DEFAULT_OVERLAP)) \
        if tile else 1
    return {"peak_rss_gb": peak_rss_gb(), "before_gb": before, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "tiles_run": len(done),
            "tiles": tiles, "overlap": DEFAULT_OVERLAP}


def in_fresh_process(width: int, height: int, tile: int, max_tiles: int = 0) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.upscale_memory", "--measure", f"{width}x{height}",
                          "--tile", str(tile), "--tiles", str(max_tiles)], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def free_memory_gb() -> float:
    with open("/proc/meminfo") as info:
        fields = dict(line.split(":", 1) for line in info)
    return int(fields["MemAvailable"].split()[0]) / 2**20


def size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=size, default=(4000, 3000), help="LR photo, WxH (default 4000x3000)")
    parser.add_argument("--tiles", type=int, default=0, help="stop the tiled run after K tiles (default: all)")
    parser.add_argument("--untiled-size", type=size, default=(320, 240), help="crop run untiled (default 320x240)")
    parser.add_argument("--measure", type=size, help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure, args.tile, args.tiles or sys.maxsize)))
        return
    from bsr.upscale import DEFAULT_TILE

    (width, height), (crop_w, crop_h) = args.size, args.untiled_size
    print(f"paper BSR (16 FMGs x 64 channels, random weights), x{SCALE}, {width}x{height} RGB, 2 threads, CPU")
    tiled = in_fresh_process(width, height, DEFAULT_TILE["cpu"], args.tiles)
    per_tile = tiled["seconds"] / tiled["tiles_run"]
    print(f"tiled (tile {DEFAULT_TILE['cpu']}, overlap {tiled['overlap']}): peak RSS {tiled['peak_rss_gb']:.2f} GB "
          f"({tiled['before_gb']:.2f} GB with the model and the photo, before the first tile); "
          f"{tiled['tiles_run']} of {tiled['tiles']} tiles in {tiled['seconds']:.0f} s "
          f"({tiled['cpu_seconds']:.0f} CPU-s: under 2 per second means other processes shared the cores), "
          f"{per_tile:.1f} s a tile: {per_tile * tiled['tiles'] / 60:.0f} min for the photo")
    crop = in_fresh_process(crop_w, crop_h, 0)
    per_pixel = (crop["peak_rss_gb"] - crop["before_gb"]) * 2**30 / (crop_w * crop_h)
    whole_gb = crop["before_gb"] + per_pixel * width * height / 2**30
    print(f"untiled {crop_w}x{crop_h}: peak RSS {crop['peak_rss_gb']:.2f} GB in {crop['seconds']:.0f} s, "
          f"{per_pixel / 1024:.1f} KiB per LR pixel: the whole {width}x{height} would need about {whole_gb:.0f} GB")
    if whole_gb < 0.8 * free_memory_gb():
        whole = in_fresh_process(width, height, 0)
        print(f"untiled {width}x{height}: peak RSS {whole['peak_rss_gb']:.2f} GB in {whole['seconds']:.0f} s")
    else:
        print(f"untiled {width}x{height}: not run, {free_memory_gb():.1f} GB free")


if __name__ == "__main__":
    main()
