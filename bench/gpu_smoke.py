"""The smoke stage of bench/gpu_check.sh: the paper model (BI_x2, 16 FMGs x 64 channels) through the real CLI
on CUDA with bf16 autocast, channels_last, fused Adam and torch.compile (the paper config's `auto`):
train -> checkpoint -> resume in a new process -> evaluate. Ends with one line: SMOKE OK or SMOKE FAILED.

Tracking is off (no URI), since the GPU image has no MLflow. On a CPU, --cpu runs the same path with the
switches forced on and a 1-FMG model (a check of this script, not of CUDA).
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import REPO, dataset
from bsr.config import load_yaml, resolve_experiment
from bsr.images import list_images


def bsr(*args) -> str:
    result = subprocess.run([sys.executable, "-m", "bsr.cli", *map(str, args)], capture_output=True, text=True,
                            cwd=REPO)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"SMOKE FAILED: bsr {args[0]}: {tail}")
    return result.stdout.strip().splitlines()[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpu", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bsr_gpu_smoke_") as work:
        smoke(Path(work), args.cpu, start)


def smoke(work: Path, cpu: bool, start: float) -> None:
    hr = work / "hr"
    hr.mkdir()
    for path in list_images(dataset("T91"))[:20]:
        (hr / path.name).symlink_to(path.resolve())
    bsr("degrade", "--hr", hr, "--out", work / "lr", "--scale", 2, "--kind", "BI")
    cfg = resolve_experiment(load_yaml(REPO / "config" / "config.yaml"), "BI_x2")
    cfg["data"] = {"train_hr": [str(hr)], "train_lr": [str(work / "lr")], "train_pic": None,
                   "val_hr": str(dataset("Set5")), "val_lr": None}
    cfg["tracking"] = {"uri": None, "default_uri": None, "experiment": None}
    cfg["train"].update(iterations=10, log_every=5, ckpt_every=10, val_every=1000, device="cuda")
    if cpu:
        cfg["model"]["n_fmg"] = 1
        cfg["train"].update(device="cpu", amp=True, channels_last=True, compile=True)
    for iterations, resume in ((10, "no"), (20, "yes")):
        cfg["train"]["iterations"] = iterations
        (work / "exp.yaml").write_text(yaml.safe_dump(cfg))
        summary = json.loads(bsr("train", "--config", work / "exp.yaml", "--out", work / "run", "--resume", resume))
        print(f"train to {iterations} (resume={resume}): device {summary['device']}, engine {summary['engine']}, "
              f"val PSNR {summary['val_psnr']:.2f} dB, {summary['seconds_this_session']:.0f} s", flush=True)
    if summary["iterations"] != 20 or not all(summary["engine"].values()):
        sys.exit(f"SMOKE FAILED: expected 20 iterations with amp, channels_last and compile on: {summary}")
    scores = json.loads(bsr("evaluate", "--run", work / "run", "--hr", dataset("Set5"), "--dataset", "Set5",
                            "--out", work / "eval" / "Set5.json"))
    if not 5 < scores["psnr"] < 60:
        sys.exit(f"SMOKE FAILED: Set5 PSNR {scores['psnr']} after 20 iterations")
    print(f"SMOKE OK: paper BSR x2 on {summary['device']}: train 10 -> checkpoint -> resume to 20 -> evaluate "
          f"(Set5 {scores['psnr']:.2f} dB) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
