"""`bsr aggregate`: an experiment's replicates summarised, per test set and metric, where MLflow users look.

Each replicate is its own training run (tagged with its experiment, replicate index and seed). This stage
gives them a parent run, `<experiment> aggregate (<config name>)` in replicate 0's MLflow experiment, tagged
with the experiment and the config whose run it is (a rerun finds it by them), holding the mean and the seed
standard deviation of each set mean over the replicates (`<set>_psnr_mean`, `<set>_psnr_sd`, ...; `<set>+` for
the ×8 self-ensemble), and makes each replicate's training run its child, so the MLflow UI shows the aggregate
above its runs; a replicate dropped since is released. A variant's replicates that are its parent's runs stay
under the parent's aggregate. The same numbers go to a JSON file. The report computes its intervals from the
per-image scores (bsr.stats) and does not read this file.
"""
from __future__ import annotations

import json

import numpy as np

from bsr import BsrError, layout
from bsr.config import experiment_entry, experiment_test_sets, resolve_experiment, run_names
from bsr.files import write_text
from bsr.scores import METRICS, read_record, read_training
from bsr.stages import eval_path, run_path, run_root, work_dir
from bsr.tracking import Tracker

# The tags that mark an experiment's aggregate run, and the config (by name) whose run it is: a variant that changes
# only `replicates` shares replicate 0, and so its MLflow experiment, with its parent, but not its aggregate.
AGGREGATE_TAG = "bsr.aggregate_of"
AGGREGATE_CONFIG_TAG = "bsr.aggregate_config"
PARENT_TAG = "mlflow.parentRunId"


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
    owner = {AGGREGATE_TAG: name, AGGREGATE_CONFIG_TAG: cfg["name"]}
    # Created with its tags: a rerun after a kill finds the run it left, whatever its status.
    tracker = Tracker(first.get("tracking_uri"), first.get("tracking_experiment") or cfg["name"],
                      f"{name} aggregate ({cfg['name']})", run_id=existing_parent(first, owner), tags=owner)
    try:
        tracker.set_tags({"bsr.replicates": summary["replicates"]})
        tracker.log_metrics({f"{dataset}_{metric}_{stat}": values[stat]
                             for dataset, metrics in summary["sets"].items()
                             for metric, values in metrics.items() for stat in ("mean", "sd")}, step=0)
        if tracker.enabled:
            adopt_replicates(tracker, cfg, dict(zip(summary["runs"], trainings)))
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish()
    summary["mlflow_run_id"] = tracker.run_id
    write_text(out_json, json.dumps(summary, indent=2) + "\n")
    return summary


def adopt_replicates(tracker: Tracker, cfg: dict, trainings: dict[str, dict]) -> None:
    """Make the replicates' training runs children of the aggregate run, and release the children that are no
    replicate of it now (`replicates` lowered). A run that `cfg` shares with the config it extends stays under
    that config's aggregate, the owner of the run; it joins this one only while it has no parent."""
    client = tracker.client
    ids = {run: training["mlflow_run_id"] for run, training in trainings.items() if training.get("mlflow_run_id")}
    runs = {run: client.get_run(run_id) for run, run_id in ids.items()}
    for run, found in runs.items():
        if run_root(cfg, run) == work_dir(cfg) or PARENT_TAG not in found.data.tags:
            client.set_tag(found.info.run_id, PARENT_TAG, tracker.run_id)
    experiments = {found.info.experiment_id for found in [*runs.values(), client.get_run(tracker.run_id)]}
    for child in client.search_runs(sorted(experiments), f"tags.`{PARENT_TAG}` = '{tracker.run_id}'"):
        if child.info.run_id not in ids.values():
            client.delete_tag(child.info.run_id, PARENT_TAG)


def existing_parent(training: dict, owner: dict) -> str | None:
    """The aggregate run with the `owner` tags logged before, in the store and experiment of replicate 0."""
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
    match = " and ".join(f"tags.`{tag}` = '{value}'" for tag, value in owner.items())
    found = client.search_runs([experiment.experiment_id], match, max_results=1)
    return found[0].info.run_id if found else None
