"""`bsr aggregate`: an experiment's replicates summarised, per test set and metric, where MLflow users look.

Each replicate is its own training run (tagged with its experiment, replicate index and seed). This stage
gives them a parent run named after the experiment, holding the mean and the seed standard deviation of each
set mean over the replicates (`<set>_psnr_mean`, `<set>_psnr_sd`, ...; `<set>+` for the ×8 self-ensemble),
and makes each replicate's training run its child, so the MLflow UI shows the aggregate above its runs. The
same numbers go to a JSON file. The report computes its intervals from the per-image scores (bsr.stats) and
does not read this file.
"""
from __future__ import annotations

import json

import numpy as np

from bsr import BsrError, layout
from bsr.config import experiment_entry, experiment_test_sets, resolve_experiment, run_names
from bsr.files import write_text
from bsr.scores import METRICS, read_record, read_training
from bsr.stages import eval_path, run_path
from bsr.tracking import Tracker

# The tag that marks an experiment's aggregate run, so that a rerun finds it rather than adding another.
AGGREGATE_TAG = "bsr.aggregate_of"


def replicate_summary(cfg: dict, name: str) -> dict:
    """{"experiment", "replicates", "runs", "seeds", "sets": {set: {metric: {"mean", "sd", "values"}}}}."""
    runs = run_names(cfg, name)
    if len(runs) < 2:
        raise BsrError(f"experiments.{name}: has one replicate; `bsr aggregate` summarises replicates: N >= 2")
    plus = [True] if experiment_entry(cfg, name).get("self_ensemble") else []
    sets = {}
    for dataset in experiment_test_sets(cfg, name):
        for ensemble in [False, *plus]:
            summaries = [read_record(eval_path(cfg, run, dataset, ensemble)) for run in runs]
            sets[f"{dataset}{'+' if ensemble else ''}"] = {
                metric: {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)), "values": values}
                for metric in METRICS for values in [[s[metric] for s in summaries]]}
    return {"experiment": name, "replicates": len(runs), "runs": runs,
            "seeds": [resolve_experiment(cfg, run)["train"]["seed"] for run in runs], "sets": sets}


def aggregate(cfg: dict, name: str, out_json) -> dict:
    """Write the summary of `name`'s replicates to `out_json` and log it on the experiment's MLflow parent run."""
    summary = replicate_summary(cfg, name)
    trainings = [read_training(run_path(cfg, run, layout.RUN_SUMMARY)) for run in summary["runs"]]
    first = trainings[0]
    tracker = Tracker(first.get("tracking_uri"), first.get("tracking_experiment") or cfg["name"], name,
                      run_id=existing_parent(first, name))
    try:
        tracker.set_tags({AGGREGATE_TAG: name, "bsr.replicates": summary["replicates"]})
        tracker.log_metrics({f"{dataset}_{metric}_{stat}": values[stat]
                             for dataset, metrics in summary["sets"].items()
                             for metric, values in metrics.items() for stat in ("mean", "sd")}, step=0)
        for training in trainings:
            if tracker.enabled and training.get("mlflow_run_id"):
                tracker.client.set_tag(training["mlflow_run_id"], "mlflow.parentRunId", tracker.run_id)
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish()
    summary["mlflow_run_id"] = tracker.run_id
    write_text(out_json, json.dumps(summary, indent=2) + "\n")
    return summary


def existing_parent(training: dict, name: str) -> str | None:
    """The aggregate run logged for `name` before, in the store and experiment of its replicate 0."""
    uri = training.get("tracking_uri")
    if not uri:
        return None
    from mlflow.tracking import MlflowClient

    from bsr.tracking import connect

    connect(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(training.get("tracking_experiment") or "")
    if experiment is None:
        return None
    found = client.search_runs([experiment.experiment_id], f"tags.`{AGGREGATE_TAG}` = '{name}'", max_results=1)
    return found[0].info.run_id if found else None

