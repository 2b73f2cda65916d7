"""Scoring the SR images that another method wrote (a released result folder) against a test set's HR images,
under the protocol of `bsr evaluate` and `bsr eval-bicubic`, so that a peer's numbers and ours compare cell by cell.

The protocol (bsr.metrics): the HR image is cropped at the bottom and right to a multiple of the scale; PSNR and
SSIM are measured on the BT.601 luma of MATLAB's rgb2ycbcr, Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, kept
as float (not rounded to integers), after shaving `scale` pixels from every border; SSIM is Wang et al.'s (11x11
Gaussian window, sigma 1.5, valid region). A file stored single-channel is scored as gray. Each SR file is found by
name: a pattern of its stem made of `{stem}` (the HR image's) and `{scale}`, such as `{stem}_RCAN_x{scale}`.

Why not a peer's script: BasicSR's scripts/metrics/calculate_psnr_ssim.py (its argparse version) shaves no border
unless given --crop_border, measures RGB unless given --test_y_channel, does not crop the HR, and without --suffix
pairs the i-th restored file with the i-th HR file in sorted order, so a folder whose names sort otherwise, or that
holds one file more, is scored against the wrong images without a word. Rounding Y to integers first (rgb2ycbcr on
uint8 rather than on im2double) moves RCAN's x2 scores by about -0.09 dB. Each of these moves a cell by more than
the differences the tables rank, so here each is refused rather than guessed around: an HR image without its SR
file, an SR file without its HR image, two SR files for one HR image, an SR image of another size than the cropped
HR, and SR and HR images that disagree in channels.
"""
from __future__ import annotations

import string
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from bsr import BsrError
from bsr.degrade import KINDS, check_size, modcrop
from bsr.evaluate import check_score_outputs, write_scores
from bsr.images import IMAGE_SUFFIXES, list_images, read_image
from bsr.metrics import check_metric_size, psnr_ssim

DEFAULT_PATTERN = "{stem}"
PATTERN_FIELDS = ("stem", "scale")
# The scales `bsr` takes: an SR image of the wrong size is said to look like an output of one of the others.
SCALES = range(2, 9)
CROP = "HR cropped to a multiple of the scale"
LISTED = 3  # names a refusal spells out before it counts the rest
SHOWN = 60  # characters of a --match pattern that a refusal echoes


def listed(names) -> str:
    """`names`, the first LISTED of them spelled out and the rest counted, for a one-line message."""
    names = list(names)
    shown = ", ".join(names[:LISTED])
    return f"{shown} and {len(names) - LISTED} more" if len(names) > LISTED else shown


def alternatives(names) -> str:
    """`names` joined as "a, b or c"."""
    names = list(names)
    return " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]


def shown(pattern: str) -> str:
    """A --match pattern as an error echoes it: the first SHOWN characters of a longer one, and its length."""
    return repr(pattern) if len(pattern) <= SHOWN else f"{pattern[:SHOWN]!r}… ({len(pattern)} characters)"


def check_pattern(pattern: str) -> None:
    """A --match pattern is a file stem made of text, `{stem}` (required) and `{scale}`: nothing else."""
    example = "expected text with {stem} and optionally {scale}, such as '{stem}_RCAN_x{scale}'"
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(pattern)
                  if name is not None]
    except ValueError as err:  # an unmatched brace
        raise BsrError(f"--match {shown(pattern)}: not a pattern ({err}); {example}") from None
    others = sorted({f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
                     for name, spec, conversion in fields if name not in PATTERN_FIELDS or spec or conversion})
    if others or "stem" not in {name for name, _, _ in fields}:
        found = f"has {', '.join(others)}" if others else "has no {stem}"
        raise BsrError(f"--match {shown(pattern)}: {found}; {example}")
    if "/" in pattern or "\\" in pattern or pattern.lower().endswith(IMAGE_SUFFIXES):
        raise BsrError(f"--match {shown(pattern)}: a pattern of the file's stem, without folder or .png/.bmp; {example}")


def pair_outputs(sr_dir, hr_dir, pattern: str, scale: int) -> list[tuple[Path, Path]]:
    """(HR image, its SR file) for every HR image of `hr_dir`, in its order; the SR file is the PNG or BMP of
    `sr_dir` whose stem is `pattern` filled with the HR stem and `scale`. Names pair them, never sorted order;
    an HR image without its SR file, an SR file without its HR image and two SR files for one HR are refused."""
    check_pattern(pattern)
    hr_by_name: dict[str, list[Path]] = {}
    for hr in list_images(hr_dir):
        hr_by_name.setdefault(pattern.format(stem=hr.stem, scale=scale), []).append(hr)
    doubled_hr = [" and ".join(p.name for p in paths) for paths in hr_by_name.values() if len(paths) > 1]
    if doubled_hr:
        raise BsrError(f"{hr_dir}: HR images of one stem, which one SR file cannot tell apart: {listed(doubled_hr)}")
    sr_by_name: dict[str, list[Path]] = {}
    unmatched = []
    for sr in list_images(sr_dir):
        (sr_by_name.setdefault(sr.stem, []) if sr.stem in hr_by_name else unmatched).append(sr)
    doubled = [f"{' and '.join(p.name for p in paths)} (for {hr_by_name[name][0].name})"
               for name, paths in sr_by_name.items() if len(paths) > 1]
    if doubled:
        raise BsrError(f"{sr_dir}: {len(doubled)} HR image(s) with more than one SR file: {listed(doubled)}; "
                       f"keep one of each")
    missing = [f"{paths[0].name} (expected {name}.png or .bmp)" for name, paths in hr_by_name.items()
               if name not in sr_by_name]
    if missing:
        # A wrong pattern leaves every file unmatched: naming one says what the folder's names look like.
        hint = f"; {sr_dir} holds {unmatched[0].name}: is --match right?" if unmatched else ""
        raise BsrError(f"{sr_dir}: no SR file through --match {shown(pattern)} for {len(missing)} HR image(s) of "
                       f"{hr_dir}: {listed(missing)}{hint}")
    if unmatched:
        raise BsrError(f"{sr_dir}: {len(unmatched)} image(s) match no HR image of {hr_dir} through --match "
                       f"{shown(pattern)}: {listed(p.name for p in unmatched)}; remove them or score another folder")
    return [(paths[0], sr_by_name[name][0]) for name, paths in hr_by_name.items()]


def cropped_size(size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The size that `modcrop` gives an image of `size` (h, w), from a view of no pixels."""
    return modcrop(np.broadcast_to(np.uint8(0), size), scale).shape


def looks_like(sr_size: tuple[int, int], hr_size: tuple[int, int], scale: int) -> str:
    """What an SR image of `sr_size` (h, w) seems to be, for an HR image of `hr_size` (uncropped) at `scale`."""
    guesses = []
    others = [s for s in SCALES if s != scale and sr_size == cropped_size(hr_size, s)]
    if others:
        guesses.append(f"like an output of an {alternatives(f'x{s}' for s in others)} run (the HR cropped to a "
                       f"multiple of {others[0]})")
    if sr_size == hr_size:
        guesses.append(f"like the uncropped HR (not cropped to a multiple of {scale})")
    lr = [s for s in SCALES if sr_size == (hr_size[0] // s, hr_size[1] // s)]
    if lr:
        guesses.append(f"like an LR image (the HR's size divided by {alternatives(map(str, lr))})")
    rows, cols = (a - b for a, b in zip(cropped_size(hr_size, scale), sr_size))
    if rows == cols and rows % 2 == 0:
        guesses.append(f"shaved by {rows // 2} px per side" if rows > 0 else f"padded by {-rows // 2} px per side")
    elif rows >= 0 and cols >= 0:
        guesses.append(f"cropped ({rows} rows and {cols} columns fewer)")
    elif rows <= 0 and cols <= 0:
        guesses.append(f"padded ({-rows} rows and {-cols} columns more)")
    else:
        guesses.append("resized")
    return "it looks " + ", or ".join(guesses)


def channels(img: np.ndarray) -> str:
    return "gray (1 channel)" if img.ndim == 2 else f"colour ({img.shape[2]} channels)"


def read_pair(hr_path: Path, sr_path: Path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The SR image and its HR image cropped to a multiple of the scale, checked to be of one size and kind."""
    hr = read_image(hr_path)
    check_size(hr, scale, str(hr_path))
    cropped = modcrop(hr, scale)
    check_metric_size(cropped.shape, scale, str(hr_path))

    def check_sr_size(size: tuple[int, int]) -> None:  # from the header, before any pixel is decoded
        if size != cropped.shape[:2]:
            (h, w), (ch, cw) = size, cropped.shape[:2]
            uncropped = f" ({hr.shape[1]}x{hr.shape[0]} uncropped)" if hr.shape != cropped.shape else ""
            raise BsrError(f"{sr_path}: SR image is {w}x{h} pixels, but its HR {hr_path} cropped to a multiple of "
                           f"{scale} is {cw}x{ch}{uncropped}; {looks_like((h, w), hr.shape[:2], scale)}")
    sr = read_image(sr_path, check_header=check_sr_size)
    if sr.ndim != cropped.ndim:
        raise BsrError(f"{sr_path}: SR image is {channels(sr)}, but its HR {hr_path} is {channels(cropped)}; both "
                       f"must be gray or both colour, as evaluation scores a gray file as gray")
    return sr, cropped


def score_outputs(sr_dir, hr_dir, scale: int, pattern: str = DEFAULT_PATTERN, space: str = "y") -> pd.DataFrame:
    """PSNR and SSIM of every SR file of `sr_dir` against its HR image of `hr_dir` (paired by `pair_outputs`),
    one row per HR image in its order: image (the HR stem), psnr, ssim; as `bsr.evaluate.score_set` gives."""
    pairs = pair_outputs(sr_dir, hr_dir, pattern, scale)
    rows = []
    # A with-block, so that the bar is closed before an error's line is printed after it.
    with tqdm(pairs, desc=f"score x{scale}", unit="image", mininterval=0.5 if sys.stderr.isatty() else 30) as bar:
        for hr_path, sr_path in bar:
            value_psnr, value_ssim = psnr_ssim(*read_pair(hr_path, sr_path, scale), scale, space)
            rows.append({"image": hr_path.stem, "psnr": value_psnr, "ssim": value_ssim})
    return pd.DataFrame(rows)


def score(sr_dir, hr_dir, scale: int, out_json, pattern: str = DEFAULT_PATTERN, space: str = "y",
          kind: str = "BI", dataset: str | None = None, method: str | None = None) -> dict:
    """Score a folder of SR outputs (`score_outputs`) and write the summary JSON `out_json` and the per-image CSV
    beside it, as `bsr evaluate` does, the protocol recorded in the summary. `dataset` defaults to the name of
    `hr_dir`; `kind` (the degradation the outputs were made from) and `method` are recorded, not checked."""
    if kind not in KINDS:
        raise BsrError(f"unknown degradation kind {kind!r}: expected one of {', '.join(KINDS)}")
    own_folder = check_score_outputs(out_json, "score")
    scores = score_outputs(sr_dir, hr_dir, scale, pattern, space)
    return write_scores(out_json, scores, "score", own_folder, scale=scale, kind=kind, space=space, method=method,
                        dataset=dataset or Path(hr_dir).resolve().name, shave=scale, crop=CROP, match=pattern,
                        sr=str(sr_dir), hr=str(hr_dir))
