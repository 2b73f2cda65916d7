"""Shared set-up for the bench scripts: where the benchmark images are, a timer, a training set."""
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BSR_SHARED", REPO.parent / "shared")) / "data"


def dataset(name: str) -> Path:
    path = DATA / name / "HR"
    if not path.is_dir():
        sys.exit(f"bench: {path} not found (set BSR_SHARED to the folder holding data/)")
    return path


def timed(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - start


def training_set(scale: int, patch: int, files=None):
    """HR images (T91 by default) degraded here with BI, with their crop PICs: the benches need no pipeline."""
    from bsr.degrade import degrade, modcrop
    from bsr.images import as_rgb, list_images, read_image
    from bsr.sampling import make_training_set

    hr = [modcrop(as_rgb(read_image(p)), scale) for p in files or list_images(dataset("T91"))]
    return make_training_set([degrade(img, scale, "BI") for img in hr], hr, scale, patch)
