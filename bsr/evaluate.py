"""Scoring SR images against HR: per-image CSV plus a summary JSON, for the bicubic baseline and for models."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bsr import BsrError
from bsr.degrade import check_size, degrade, modcrop, upscale_bicubic
from bsr.images import atomic_path, list_images, read_image
from bsr.metrics import psnr_ssim


def score_set(hr_dir, scale: int, kind: str, super_resolve: Callable[[np.ndarray], np.ndarray],
              space: str = "y") -> pd.DataFrame:
    """Degrade every HR image of `hr_dir`, super-resolve it, and score it against the modcropped HR."""
    rows = []
    for path in list_images(hr_dir):
        hr = read_image(path)
        check_size(hr, scale, str(path))
        sr = super_resolve(degrade(hr, scale, kind, name=str(path)))
        hr = modcrop(hr, scale)
        value_psnr, value_ssim = psnr_ssim(sr, hr, scale, space)
        rows.append({"image": path.stem, "psnr": value_psnr, "ssim": value_ssim})
    return pd.DataFrame(rows)


def write_scores(out_json, scores: pd.DataFrame, **meta) -> dict:
    """Write the per-image CSV beside `out_json` and the summary (set means plus `meta`) as JSON, atomically."""
    out_json = Path(out_json)
    if out_json.suffix != ".json":
        raise BsrError(f"{out_json}: the summary output must be a .json file")
    summary = {"psnr": float(scores["psnr"].mean()), "ssim": float(scores["ssim"].mean()), "n": len(scores), **meta}
    with atomic_path(out_json.with_suffix(".csv")) as tmp:
        scores.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def eval_bicubic(hr_dir, scale: int, kind: str, out_json, space: str = "y") -> dict:
    scores = score_set(hr_dir, scale, kind, lambda lr: upscale_bicubic(lr, scale), space)
    return write_scores(out_json, scores, scale=scale, kind=kind, space=space, method="Bicubic")
