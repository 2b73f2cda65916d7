"""What the evaluations wrote, read back for the report and `bsr aggregate`: summary JSONs checked to be what
bsr writes (a truncated file, a NaN or a missing key is one error naming the file) and to be the record their
row reads (the verb, method, experiment or run, set, degradation and scale it expects: another verb's --out
over it would put another row's numbers there), the per-image CSVs beside them, and an experiment's replicates
as one replicates × images matrix per metric."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bsr import BsrError, layout
from bsr.config import run_names
from bsr.stages import eval_path

METRICS = ("psnr", "ssim")


@dataclass
class Scores:
    """An evaluation: its summary JSON (the set means and the MLflow run) and the per-image CSV beside it."""
    path: str
    summary: dict
    images: pd.DataFrame  # indexed by image stem: psnr, ssim


def refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def summary_problem(summary: dict) -> str | None:
    """What a summary JSON lacks of what `bsr evaluate` writes (bsr.evaluate.write_scores), if anything."""
    for key in METRICS:
        value = summary.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{key} is {'missing' if key not in summary else repr(value)}, expected a finite number"
    if not isinstance(summary.get("space"), str):
        return "space is missing"
    return count_problem(summary, "n")


def count_problem(record: dict, key: str) -> str | None:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"{key} is {'missing' if key not in record else repr(value)}, expected a positive whole number"
    return None


def expected_problem(record: dict, expected: dict) -> str | None:
    """Where `record` is not the one that `expected` describes (key: value). A record without a verb was written
    before records named theirs; its other keys still tell. A self-ensemble is recorded only where it is one."""
    for key, value in expected.items():
        found = record.get(key, False if key == "self_ensemble" else None)
        if found != value and (key != "verb" or key in record):
            return f"{key} is {found!r}, expected {value!r}"
    return None


def read_record(path, problem=summary_problem, expected: dict | None = None) -> dict:
    """A JSON mapping that a stage wrote (a summary, by default, or a train.json), checked by `problem` and to
    be the record `expected` describes; anything else is one error naming the file, never a traceback, and
    never a NaN rendered, an Infinity ranked best, or another row's numbers shown as this one's."""
    path = Path(path)
    if not path.is_file():
        raise BsrError(f"{path}: missing; run the pipeline stage that writes it first")
    try:
        record = json.loads(path.read_text(), parse_constant=refuse_constant)
    except (ValueError, UnicodeDecodeError) as err:  # truncated, or NaN / Infinity
        found = f"not readable JSON: {str(err).splitlines()[0]}"
    else:
        found = problem(record) if isinstance(record, dict) else f"a JSON {type(record).__name__}, not a mapping"
    if found:
        raise BsrError(f"{path}: not what bsr writes there ({found}); rerun the stage that writes it")
    mismatch = expected_problem(record, expected or {})
    if mismatch:
        wanted = ", ".join(f"{key} {value!r}" for key, value in expected.items())
        raise BsrError(f"{path}: not the record its row reads ({mismatch}; the row reads {wanted}): another "
                       "verb's --out may have replaced it; rerun the stage that writes it")
    return record


def read_scores(summary_json, expected: dict | None = None) -> Scores:
    summary = read_record(summary_json, expected=expected)
    path = Path(layout.scores_csv(summary_json))
    if not path.is_file():
        raise BsrError(f"{path}: missing (the per-image scores beside {summary_json}); rerun the evaluation")
    images = pd.read_csv(path, index_col="image", dtype={"image": str})  # BSD100's names are numbers
    if len(images) != summary["n"]:
        raise BsrError(f"{path}: {len(images)} images, but {summary_json} averages {summary['n']}")
    return Scores(str(summary_json), summary, images)


@dataclass
class Replicated:
    """One experiment's evaluations on one test set: a Scores per replicate run, replicate 0 first."""
    runs: list[Scores]

    @property
    def seeds(self) -> int:
        return len(self.runs)

    def value(self, metric: str) -> float:
        """The row's value: the mean over replicates of the set means (for one, its summary's mean)."""
        return float(np.mean([run.summary[metric] for run in self.runs]))

    def matrix(self, metric: str, images: pd.Index | None = None) -> np.ndarray:
        """Per-image scores, replicates × images, in the order of `images` (default: replicate 0's)."""
        images = self.runs[0].images.index if images is None else images
        for run in self.runs:
            if set(run.images.index) != set(images):
                raise BsrError(f"{self.runs[0].path} and {run.path} score different images, so they cannot be "
                               "compared image by image")
        return np.stack([run.images.loc[images, metric].to_numpy() for run in self.runs])


def evaluation_record(run: str, dataset: str, self_ensemble: bool = False) -> dict:
    """What `bsr evaluate` records of a run's evaluation on a test set (bsr.evaluate.evaluate_run)."""
    return {"verb": "evaluate", "method": "BSR", "experiment": run, "dataset": dataset, "self_ensemble": self_ensemble}


def read_evaluation(cfg: dict, run: str, dataset: str, self_ensemble: bool = False) -> Scores:
    return read_scores(eval_path(cfg, run, dataset, self_ensemble), evaluation_record(run, dataset, self_ensemble))


def read_replicated(cfg: dict, name: str, dataset: str, self_ensemble: bool = False) -> Replicated:
    return Replicated([read_evaluation(cfg, run, dataset, self_ensemble) for run in run_names(cfg, name)])


def read_bicubic(data_dir, dataset: str, kind: str, scale: int) -> Scores:
    """The bicubic baseline of a test set at a degradation and scale (`bsr eval-bicubic`)."""
    return read_scores(layout.bicubic_json(data_dir, dataset, kind, scale),
                       {"verb": "eval-bicubic", "method": "Bicubic", "kind": kind, "scale": scale})


def read_rescored(data_dir, method: str, dataset: str, kind: str, scale: int) -> dict:
    """Our score of a method's released outputs (`bsr score`): its summary."""
    return read_record(layout.rescored_json(data_dir, method, dataset, kind, scale), expected={
        "verb": "score", "method": method, "dataset": dataset, "kind": kind, "scale": scale})


def paired(a: Replicated, b: Replicated, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' per-image scores, replicates × images, in the same image order."""
    if set(a.runs[0].images.index) != set(b.runs[0].images.index):
        raise BsrError(f"{a.runs[0].path} and {b.runs[0].path} score different images, so they cannot be "
                       "compared image by image")
    images = a.runs[0].images.index
    return a.matrix(metric, images), b.matrix(metric, images)


def read_training(path) -> dict:
    """A run's train.json, checked to record how many iterations it trained."""
    return read_record(path, lambda run: count_problem(run, "iterations"))
