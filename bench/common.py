"""Shared set-up for the bench scripts: where the benchmark images are, and a timer."""
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
