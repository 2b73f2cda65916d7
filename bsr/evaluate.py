"""Scoring SR images against HR: per-image CSV plus a summary JSON, for the bicubic baseline and for models."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bsr import BsrError, layout
from bsr.degrade import check_size, degrade, modcrop, upscale_bicubic
from bsr.files import atomic_path, check_output, check_writer, folder_writer, mark_folder, write_text
from bsr.images import list_images, read_image, write_image
from bsr.metrics import check_metric_size, psnr_ssim
from bsr.tracking import Tracker
from bsr.upscale import inference_device, load_model_folder, model_upscaler, receptive_radius


def read_lr(lr_dir, hr_path: Path, hr: np.ndarray, scale: int) -> np.ndarray:
    """The stored LR image for `hr_path`, checked to be the modcropped HR's size divided by the scale."""
    path = Path(lr_dir) / f"{hr_path.stem}.png"
    lr = read_image(path)
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    if lr.shape[:2] != (h, w) or lr.ndim != hr.ndim:
        raise BsrError(f"{path}: LR image is {lr.shape}, expected {(h, w) + hr.shape[2:]} for {hr_path} at x{scale}")
    return lr


def score_set(hr_dir, scale: int, kind: str, super_resolve: Callable[[np.ndarray], np.ndarray],
              space: str = "y", lr_dir=None) -> pd.DataFrame:
    """Super-resolve the LR image of every HR image of `hr_dir` and score it against the modcropped HR.

    LR images come from `lr_dir` (written by `bsr degrade`) when given, else are degraded on the fly.
    """
    rows = []
    for path in list_images(hr_dir):
        hr = read_image(path)
        check_size(hr, scale, str(path))
        lr = read_lr(lr_dir, path, hr, scale) if lr_dir else degrade(hr, scale, kind, name=str(path))
        hr = modcrop(hr, scale)
        check_metric_size(hr.shape, scale, str(path))
        sr = super_resolve(lr)
        value_psnr, value_ssim = psnr_ssim(sr, hr, scale, space)
        rows.append({"image": path.stem, "psnr": value_psnr, "ssim": value_ssim})
    return pd.DataFrame(rows)


def write_scores(out_json, scores: pd.DataFrame, verb: str, own_folder: bool = False, **meta) -> dict:
    """Write the per-image CSV beside `out_json` and the summary (set means, the `verb` that scored them, and
    `meta`) as JSON, atomically; mark their folder as `verb`'s when it is `own_folder` (`check_score_outputs`)."""
    out_json = Path(out_json)
    summary = {"psnr": float(scores["psnr"].mean()), "ssim": float(scores["ssim"].mean()), "n": len(scores),
               "verb": verb, **meta}
    try:
        text = json.dumps(summary, indent=2, allow_nan=False) + "\n"  # bare NaN or Infinity is not JSON
    except ValueError:
        raise BsrError(f"{out_json}: not written, a set mean is not finite (PSNR {summary['psnr']}, "
                       f"SSIM {summary['ssim']}): an SR image equals its HR exactly, or a score failed") from None
    if own_folder:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        mark_folder(out_json.parent, verb)
    with atomic_path(out_json.with_suffix(".csv")) as tmp:
        scores.to_csv(tmp, index=False, float_format="%.6f")
    write_text(out_json, text)
    return summary


def check_score_outputs(out_json, verb: str) -> bool:
    """Before any scoring: the summary and the per-image CSV beside it must be writable where asked, in no folder
    that another verb than `verb` wrote. Whether that folder is the evaluation's own to mark: new, empty or
    `verb`'s already, as the pipeline's are (one verb's outputs each). A folder of other files stays unmarked:
    `--out results.json` in a project folder must not make the project `verb`'s."""
    out_json = Path(out_json)
    if out_json.suffix != ".json":
        raise BsrError(f"{out_json}: the summary output must be a .json file")
    check_output(out_json)
    check_output(out_json.with_suffix(".csv"))
    folder = out_json.absolute().parent
    check_writer(folder, verb)
    return not folder.is_dir() or not any(folder.iterdir()) or folder_writer(folder) == verb


def keeping_first(upscale):
    """`upscale`, and the list its first output lands in: the SR of a set's first image, which the report's
    visual comparison shows."""
    kept = []

    def run(lr):
        sr = upscale(lr)
        if not kept:
            kept.append(sr)
        return sr
    return run, kept


def eval_bicubic(hr_dir, scale: int, kind: str, out_json, space: str = "y", sample_png=None) -> dict:
    """Score the bicubic upscale of a test set; `sample_png` receives that of its first image."""
    own_folder = check_score_outputs(out_json, "eval-bicubic")
    upscale, samples = keeping_first(lambda lr: upscale_bicubic(lr, scale))
    scores = score_set(hr_dir, scale, kind, upscale, space)
    if sample_png:
        write_image(sample_png, samples[0])
    return write_scores(out_json, scores, "eval-bicubic", own_folder, scale=scale, kind=kind, space=space,
                        method="Bicubic")


def load_trained_model(run_dir, device):
    """The final model of a `bsr train` run directory, in eval mode, with its run summary."""
    run_dir = Path(run_dir)
    summary_path = run_dir / layout.RUN_SUMMARY
    if not summary_path.is_file():
        raise BsrError(f"{run_dir}: not a finished training run ({layout.RUN_SUMMARY} expected)")
    model, saved = load_model_folder(run_dir, device)
    return model, saved, json.loads(summary_path.read_text())


# Evaluation runs an LR image of up to EVAL_TILE² pixels whole, as before tiling existed: that is every image
# of the paper's five test sets at every scale, with room to spare (their HR images are about 1 Mpx at most).
# Larger ones go through tiles of this side; the paper model holds about 13.4 KiB per LR pixel (measured by
# bench/upscale_memory.py), so 13 GiB for a 1024×1024 tile: a smaller GPU takes a smaller --tile.
EVAL_TILE = 1024


def evaluate_run(run_dir, hr_dir, lr_dir, dataset: str, out_json, sample_png=None, space: str = "y",
                 tile: int | None = None, self_ensemble: bool = False, device: str = "auto") -> dict:
    """Score a trained model on one test set; log a nested MLflow run under the training run.

    The summary JSON records that nested run's id, so a table built from the JSONs traces back to MLflow.
    `sample_png` receives the SR of the set's first image (the report's visual comparison). An LR image of
    more than `tile`×`tile` pixels (default EVAL_TILE) is super-resolved in tiles that overlap by the model's
    receptive radius, so its scores are those of the whole image (0: never tiled). `self_ensemble` scores the
    ×8 "+" variant. `device`: auto (CUDA if there is a GPU), cpu or cuda.
    """
    own_folder = check_score_outputs(out_json, "evaluate")
    device = inference_device(device)
    model, saved, run = load_trained_model(run_dir, device)
    overlap, tile = receptive_radius(saved["model_config"]), EVAL_TILE if tile is None else tile
    if tile < 0 or 0 < tile <= 2 * overlap:
        raise BsrError(f"--tile {tile}: expected 0 (no tiling) or more than {2 * overlap} LR pixels, twice this "
                       f"model's receptive radius")
    upscale, samples = keeping_first(model_upscaler(model, device, tile, overlap, self_ensemble))
    variant = {"self_ensemble": True} if self_ensemble else {}
    scores = score_set(hr_dir, saved["scale"], saved["degradation"], upscale, space, lr_dir=lr_dir)
    means = {"psnr": float(scores["psnr"].mean()), "ssim": float(scores["ssim"].mean())}
    plus = "+" if self_ensemble else ""
    tracker = Tracker(run["tracking_uri"], run["tracking_experiment"], f"{saved['name']}/{dataset}{plus}",
                      parent_run_id=run["mlflow_run_id"])
    try:
        tracker.log_params({"dataset": dataset, "scale": saved["scale"], "degradation": saved["degradation"],
                            "space": space, "images": len(scores), **variant})
        tracker.log_metrics(means, step=0)
        if tracker.parent_run_id:
            suffix = "_self_ensemble" if self_ensemble else ""  # MLflow metric names take no "+"
            tracker.log_metrics({f"test_psnr_{dataset}{suffix}": means["psnr"],
                                 f"test_ssim_{dataset}{suffix}": means["ssim"]}, step=0, run_id=tracker.parent_run_id)
        if sample_png:
            write_image(sample_png, samples[0])
        summary = write_scores(out_json, scores, "evaluate", own_folder, scale=saved["scale"],
                               kind=saved["degradation"], space=space, method="BSR", experiment=saved["name"],
                               dataset=dataset, mlflow_run_id=tracker.run_id, **variant)
        tracker.log_artifact(Path(out_json).with_suffix(".csv"))
        tracker.log_artifact(out_json)
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish()
    tracker.supersede_reruns()
    return summary
