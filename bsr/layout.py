"""Where every pipeline file lives, relative to the config's `data_dir`: the one map that the Snakemake
rules, dvc.yaml and the resolved experiment configs all read."""
from __future__ import annotations

from pathlib import Path, PurePosixPath as P

# The files of a training run directory.
# The final model: a model folder's two files (bsr.model_files), so that the run folder is one.
RUN_MODEL = "model.safetensors"
RUN_MODEL_RECORD = "model.json"
RUN_SUMMARY = "train.json"
RUN_METRICS = "metrics.csv"
RUN_CHECKPOINT = "checkpoint.pt"
RUN_CONFIG = "config.yaml"
RUN_LOCK = ".lock"
# The paper's config, which every report lists its own config's differences from.
PAPER_CONFIG = "config/config.yaml"


def hr_dir(data_dir, dataset: str) -> str:
    return str(P(data_dir) / "hr" / dataset)


def manual_dir(data_dir, dataset: str) -> str:
    """Where the user puts a `source: manual` dataset (one whose licence forbids downloading it for them)."""
    return str(P(data_dir) / "manual" / dataset)


def degradation_tag(kind: str, scale: int) -> str:
    return f"{kind}x{scale}"


def lr_dir(data_dir, dataset: str, kind: str, scale: int) -> str:
    return str(P(data_dir) / "lr" / dataset / degradation_tag(kind, scale))


def pic_dir(data_dir, dataset: str, kind: str, scale: int, reduce: str) -> str:
    return str(P(data_dir) / "pic" / dataset / f"{degradation_tag(kind, scale)}-{reduce}")


def experiment_config(data_dir, experiment: str) -> str:
    return str(P(data_dir) / "experiments" / f"{experiment}.yaml")


def run_dir(data_dir, experiment: str) -> str:
    return str(P(data_dir) / "runs" / experiment)


def eval_json(data_dir, experiment: str, dataset: str, self_ensemble: bool = False) -> str:
    """The summary; beside it `scores_csv` (per image) and `sample_png` (the SR of the set's first image).
    The ×8 self-ensemble's is `<dataset>+.json`, the literature's "+"."""
    return str(P(data_dir) / "eval" / experiment / f"{dataset}{'+' if self_ensemble else ''}.json")


def replicates_json(data_dir, experiment: str) -> str:
    """Mean and seed sd per test set and metric over an experiment's replicates (`bsr aggregate`)."""
    return str(P(data_dir) / "replicates" / f"{experiment}.json")


def published_dir(data_dir, method: str, dataset: str, kind: str, scale: int) -> str:
    """A method's released SR outputs of one test set, degradation and scale (config `published:`)."""
    return str(P(data_dir) / "published" / method / dataset / degradation_tag(kind, scale))


def rescored_json(data_dir, method: str, dataset: str, kind: str, scale: int) -> str:
    """Our score of those outputs (`bsr score`); the per-image CSV beside it."""
    return str(P(data_dir) / "rescored" / method / dataset / f"{degradation_tag(kind, scale)}.json")


def bicubic_json(data_dir, dataset: str, kind: str, scale: int) -> str:
    return str(P(data_dir) / "bicubic" / dataset / f"{degradation_tag(kind, scale)}.json")


def scores_csv(summary_json: str) -> str:
    return str(P(summary_json).with_suffix(".csv"))


def sample_png(summary_json: str) -> str:
    return str(P(summary_json).with_suffix(".png"))


def run_file(data_dir, experiment: str, name: str) -> str:
    """A file of a training run: one of the RUN_* names."""
    return str(P(run_dir(data_dir, experiment)) / name)


def is_paper_config(config_path) -> bool:
    return Path(config_path).resolve() == Path(PAPER_CONFIG).resolve()


def report_dir(config_name: str) -> str:
    """Each config's report folder: configs never overwrite each other's tables."""
    return f"reports/{config_name}"


def report_tables(report_folder: str) -> dict[str, str]:
    """The table files of a report, by format."""
    return {f"tables_{fmt}": f"{report_folder}/tables{suffix}"
            for fmt, suffix in (("md", ".md"), ("tex", ".tex"), ("standalone", "_standalone.tex"), ("html", ".html"))}


def report_changes(report_folder: str) -> str:
    """Every value where the report's config differs from the one it is compared with, one per line."""
    return f"{report_folder}/changes.txt"
