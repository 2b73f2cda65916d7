import os
from pathlib import Path

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BSR_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (DATA / "Set5" / "HR").is_dir():
        pytest.skip(f"the benchmark images are not at {DATA} (set BSR_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def paper_dir() -> Path:
    if not (SHARED / "paper" / "bsr_tables.tsv").is_file():
        pytest.skip(f"the paper's tables are not at {SHARED / 'paper'} (set BSR_SHARED)")
    return SHARED / "paper"


def tiny_experiment(tmp_path: Path, data: Path, n_images: int = 12, **train) -> dict:
    """A resolved experiment config for a tiny BSR on a few T91 images at x2 (LR made here)."""
    from bsr.degrade import degrade_dir

    hr = tmp_path / "hr"
    hr.mkdir(exist_ok=True)
    for src in sorted((data / "T91" / "HR").iterdir())[:n_images]:
        if not (hr / src.name).exists():
            (hr / src.name).symlink_to(src)
    if not (tmp_path / "lr").exists():
        degrade_dir(hr, tmp_path / "lr", 2, "BI")
    return {
        "name": "tiny", "scale": 2, "degradation": "BI",
        "model": {"n_fmg": 1, "channels": 8, "res_scale": 1.0, "skip_connections": True},
        "loss": {"l2": 1.0, "l1": 1.0, "lp": 0.1, "p": 0.5, "eps": 1e-3},
        "sampling": {"rfs": True, "patch": 16, "intervals": 16, "candidates": 64, "max_rounds": 50,
                     "pic_reduce": "sum", "range_quantiles": [0.0, 0.995]},
        "train": {"batch": 4, "iterations": 6, "lr": 2e-4, "betas": [0.9, 0.999], "lr_step_epochs": 1,
                  "lr_gamma": 0.5, "iters_per_epoch": 2, "seed": 3, "log_every": 1, "val_every": 1000,
                  "ckpt_every": 3, "device": "cpu", "amp": False, "channels_last": False, "compile": False,
                  "threads": 1, **train},
        "data": {"train_hr": [str(hr)], "train_lr": [str(tmp_path / "lr")]},
    }
