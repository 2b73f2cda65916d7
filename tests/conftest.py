import os
from pathlib import Path

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BSR_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"


# The longest files go first: under two workers (`--dist loadfile` hands out whole files in collection order) a
# 13-minute file that starts last holds the suite that long past the rest.
LONGEST_FIRST = ("test_dvc.py", "test_slurm.py", "test_pipeline.py", "test_variants.py", "test_replicates.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


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
    """A resolved experiment config, defaults filled, for a tiny BSR on a few T91 images at x2 (LR made here)."""
    from bsr.config import check_experiment
    from bsr.degrade import degrade_dir

    hr = tmp_path / "hr"
    hr.mkdir(exist_ok=True)
    for src in sorted((data / "T91" / "HR").iterdir())[:n_images]:
        if not (hr / src.name).exists():
            (hr / src.name).symlink_to(src)
    if not (tmp_path / "lr").exists():
        degrade_dir(hr, tmp_path / "lr", 2, "BI")
    return check_experiment({
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
    }, "tiny experiment")


def tiny_pipeline_config(data: Path, data_dir: str = "data/tiny") -> dict:
    """A pipeline config with the paper's shape at toy size: T91 images to train, Set5 to test."""
    t91 = sorted(p.name for p in (data / "T91" / "HR").iterdir())[:8]
    train = {"batch": 4, "iterations": 12, "lr": 1e-3, "betas": [0.9, 0.999], "lr_step_epochs": 100,
             "lr_gamma": 0.1, "iters_per_epoch": 1000, "seed": 0, "log_every": 4, "val_every": 6,
             "ckpt_every": 6, "device": "cpu", "amp": False, "channels_last": False, "compile": False,
             "threads": 1}
    return {
        "name": "bsr-tiny",
        "tracking_uri": None,
        "data_dir": data_dir,
        "datasets": {
            "T91": {"source": (data / "T91" / "HR").as_uri(), "files": t91, "images": 8},
            "Set5": {"source": (data / "Set5" / "HR").as_uri(), "images": 5},
        },
        "train_sets": ["T91"],
        "val_set": "Set5",
        "test_sets": ["Set5"],
        "defaults": {
            "model": {"n_fmg": 1, "channels": 8, "res_scale": 1.0, "skip_connections": True},
            "loss": {"l2": 1.0, "l1": 1.0, "lp": 0.1, "p": 0.5, "eps": 0.001},
            "sampling": {"rfs": True, "patch": 16, "intervals": 16, "candidates": 64, "max_rounds": 50,
                         "pic_reduce": "sum", "range_quantiles": [0.0, 0.995], "quota": None},
            "train": train,
        },
        "experiments": {
            "BI_x2": {"scale": 2, "degradation": "BI"},
            "BD_x3": {"scale": 3, "degradation": "BD"},
            "ablation_baseline": {"scale": 2, "degradation": "BI", "ablation": "Baseline",
                                  "train": {"iterations": 8}},
            "ablation_wo_rfs": {"scale": 2, "degradation": "BI", "ablation": "w/o RFS",
                                "train": {"iterations": 8}, "sampling": {"rfs": False}},
        },
        "resources": {"train": {"threads": 1, "mem_mb": 2000, "runtime": 10}},
    }


def project_copy(dest: Path) -> Path:
    """The workflow files of this checkout in `dest`, to run Snakemake or DVC there."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "profiles", "environment.yml"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True)
        else:
            shutil.copy(src, dest / name)
    return dest


def command_env() -> dict:
    """The environment for subprocesses: this interpreter's `bsr`, `snakemake` and `dvc` first on PATH."""
    import sys

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def snakemake(cwd, *args, check=True, env=None):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                            env=env or command_env())
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple[Path, float | None]:
    """The README's main job, run once for the session: (project, wall seconds).

    The checkout's own demo, when Snakemake finds nothing left to do in it (as after `.ci/run`'s demo, so CI
    runs the demo once; its seconds are then unknown, None); else a fresh run in a copy of the project."""
    import time

    if "Nothing to be done" in snakemake(REPO, "-n", "all", "--configfile", "config/demo.yaml", check=False).stdout:
        return REPO, None
    project = project_copy(tmp_path_factory.mktemp("demo") / "project")
    start = time.perf_counter()
    snakemake(project, "all", "--cores", "2", "--configfile", "config/demo.yaml")
    return project, time.perf_counter() - start
