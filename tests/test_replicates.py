"""Replicates: seeds as an axis of the matrix. With `replicates: 1` nothing changes, byte for byte; with N, each
seed is its own training and evaluation job, its own MLflow run under the experiment's aggregate, and the
tables say whether a difference is larger than the seeds' noise."""
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from bsr.config import check_pipeline, replicate_seed, resolve_experiment, run_names
from bsr.dvc_stages import dvc_yaml
from bsr.report import write_tables
from tests.conftest import REPO, project_copy, snakemake, tiny_pipeline_config
from tests.test_report import write_evaluated

FROZEN = Path(__file__).parent / "data" / "replicates_1"


def without_replicates(cfg: dict) -> dict:
    for section in (cfg["defaults"], *cfg.get("bases", {}).values(), *cfg["experiments"].values()):
        section.pop("replicates", None)
    return cfg


def test_replicates_1_keeps_the_demo_dvc_yaml_byte_for_byte():
    cfg = check_pipeline(without_replicates(yaml.safe_load((REPO / "config" / "demo.yaml").read_text())))
    assert dvc_yaml(cfg, "config/demo.yaml") == (FROZEN / "demo_dvc.yaml").read_text()


def test_replicates_1_keeps_the_tables_byte_for_byte(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    shutil.copy(FROZEN / "paper_config.yaml", tmp_path / "config" / "config.yaml")
    cfg = write_evaluated(shared_data, Path("data"))
    for path in write_tables(cfg, "config/tiny.yaml", "out"):
        if Path(path).name in ("tables.md", "tables.tex", "tables.html"):
            text = Path(path).read_text().replace(shared_data.as_uri(), "file:///SHARED/data")
            assert text == (FROZEN / Path(path).name).read_text(), path


def test_replicate_runs_are_named_seeded_and_registered_apart(shared_data):
    cfg = tiny_pipeline_config(shared_data)
    cfg["experiments"]["BI_x2"]["replicates"] = 3
    cfg = check_pipeline(cfg)
    assert run_names(cfg, "BI_x2") == ["BI_x2", "BI_x2-r1", "BI_x2-r2"] and run_names(cfg, "BD_x3") == ["BD_x3"]
    first, second = resolve_experiment(cfg, "BI_x2"), resolve_experiment(cfg, "BI_x2-r2")
    assert "replicate" not in first and first["train"]["seed"] == 0  # replicate 0 is the experiment, unchanged
    assert second["replicate"] == {"experiment": "BI_x2", "index": 2, "base_seed": 0}
    assert second["train"]["seed"] == replicate_seed(0, 2) not in (0, 1, 2, replicate_seed(0, 1), replicate_seed(1, 1))
    assert first["tracking"]["registered_model"] == "bsr-BI_x2" and second["tracking"]["registered_model"] is None
    with pytest.raises(Exception, match="no experiment 'BI_x2-r3'"):
        resolve_experiment(cfg, "BI_x2-r3")


@pytest.mark.slow
def test_a_tiny_pipeline_with_three_replicates(shared_data, tmp_path):
    from mlflow.tracking import MlflowClient

    project = project_copy(tmp_path / "project")
    cfg = tiny_pipeline_config(shared_data)
    for name in ("BI_x2", "ablation_baseline", "ablation_wo_rfs"):
        cfg["experiments"][name]["replicates"] = 3
    (project / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(project, "all", "--cores", "2", "--configfile", "tiny.yaml")
    data = project / "data" / "tiny"
    assert sorted(p.name for p in (data / "runs").iterdir()) == sorted(
        f"{name}{suffix}" for name in cfg["experiments"] for suffix in
        (["", "-r1", "-r2"] if name != "BD_x3" else [""]))
    assert len(list((data / "eval").glob("ablation_baseline*/Set5.json"))) == 3
    tables = (project / "reports" / "bsr-tiny" / "tables.md").read_text()
    assert re.search(r"\| Set5 BI ×2 \| BI_x2 \(12\) \| PSNR \(dB\) \| 38\.30 \| [0-9.]+ \[[0-9.]+, [0-9.]+\] "
                     r"±[0-9.]+ \(3 seeds\) \|", tables), tables
    row = next(line for line in tables.splitlines() if line.startswith("| **w/o RFS**"))
    assert re.search(r"\| [0-9.]+ \(3\) \| (better|worse|within noise) \|", row) and row.endswith(("| yes |", "| no |"))
    assert "Rows trained once (BD_x3)" in tables

    summary = json.loads((data / "replicates" / "ablation_wo_rfs.json").read_text())
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    parent = client.get_run(summary["mlflow_run_id"])
    assert parent.data.metrics["Set5_psnr_mean"] == pytest.approx(summary["sets"]["Set5"]["psnr"]["mean"])
    for index, run in enumerate(summary["runs"]):
        training = client.get_run(json.loads((data / "runs" / run / "train.json").read_text())["mlflow_run_id"])
        assert training.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert training.data.tags["bsr.replicate"] == str(index)
        assert training.data.tags["bsr.experiment"] == "ablation_wo_rfs"
    # A second run of the pipeline finds everything done, and the aggregate run is reused, not duplicated.
    assert "Nothing to be done" in snakemake(project, "-n", "all", "--configfile", "tiny.yaml").stdout


# ---- the MLflow aggregate run (`bsr aggregate`), on replicates scored for real without training ----------------

def scored_replicates(cfg: dict, name: str, uri: str) -> None:
    """Each run of `name` that `cfg`'s jobs have not written yet: a real MLflow training run in `uri` (as training
    logs it, in the config's MLflow experiment), its train.json, and its Set5 evaluation (bicubic with an unsharp
    mask, PSNR raised 0.01 dB per replicate so that the seeds differ)."""
    from bsr import layout
    from bsr.stages import eval_path, run_path
    from bsr.tracking import Tracker
    from tests.test_report import score_experiment, write_scores

    hr = Path(layout.hr_dir(cfg["data_dir"], "Set5"))
    if not hr.exists():
        hr.parent.mkdir(parents=True)
        hr.symlink_to(Path(cfg["datasets"]["Set5"]["source"][len("file://"):]))
    scores = score_experiment(cfg, name, "Set5", 0.6)
    for index, run in enumerate(run_names(cfg, name)):
        summary = Path(run_path(cfg, run, layout.RUN_SUMMARY))
        if summary.exists():
            continue
        tracker = Tracker(uri, cfg["name"], run)
        tracker.finish()
        summary.parent.mkdir(parents=True)
        summary.write_text(json.dumps({"name": run, "iterations": 12, "tracking_uri": uri,
                                       "tracking_experiment": cfg["name"], "mlflow_run_id": tracker.run_id}))
        write_scores(eval_path(cfg, run, "Set5"), scores.assign(psnr=scores["psnr"] + 0.01 * index), verb="evaluate",
                     scale=2, kind="BI", space="y", method="BSR", experiment=name, dataset="Set5",
                     mlflow_run_id=tracker.run_id)


def replicates_config(shared_data, project: Path, replicates: int) -> dict:
    from bsr.config import load_pipeline

    cfg = tiny_pipeline_config(shared_data)
    cfg["experiments"] = {"BI_x2": {"scale": 2, "degradation": "BI", "replicates": replicates}}
    (project / "config").mkdir(exist_ok=True)
    (project / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return load_pipeline("config/tiny.yaml")


def aggregated(cfg: dict) -> dict:
    from bsr.aggregate import aggregate
    from bsr.stages import replicates_path

    return aggregate(cfg, "BI_x2", replicates_path(cfg, "BI_x2"))


def test_a_variant_that_changes_only_replicates_logs_its_own_aggregate_run(shared_data, tmp_path, monkeypatch):
    """Replicates 0-2 are the parent's runs, shared; the variant's aggregate once took over the parent's
    aggregate run (found by experiment name in replicate 0's MLflow experiment), so that the parent's run id
    held the variant's 4-seed mean while the parent's JSON said 3 seeds."""
    from mlflow.tracking import MlflowClient

    from bsr.config import load_pipeline

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = replicates_config(shared_data, tmp_path, 3)
    (tmp_path / "config" / "four.yaml").write_text("extends: config/tiny.yaml\n"
                                                   "experiments: {BI_x2: {replicates: 4}}\n")
    variant = load_pipeline("config/four.yaml")
    scored_replicates(parent, "BI_x2", uri)
    scored_replicates(variant, "BI_x2", uri)
    ours, theirs = aggregated(parent), aggregated(variant)
    assert (ours["replicates"], theirs["replicates"]) == (3, 4) and ours["mlflow_run_id"] != theirs["mlflow_run_id"]
    client = MlflowClient(uri)
    for summary in (ours, theirs, aggregated(parent)):
        run = client.get_run(summary["mlflow_run_id"])
        assert run.data.metrics["Set5_psnr_mean"] == pytest.approx(summary["sets"]["Set5"]["psnr"]["mean"])
        assert run.data.tags["bsr.replicates"] == str(summary["replicates"])
    assert aggregated(parent)["mlflow_run_id"] == ours["mlflow_run_id"]  # a rerun finds its own run


def test_an_aggregate_killed_right_after_creating_its_run_leaves_one_run_to_the_rerun(
        shared_data, tmp_path, monkeypatch):
    """The run was created untagged and tagged after: a kill in between left an untagged RUNNING run, which the
    rerun did not find, and it added another."""
    from mlflow.tracking import MlflowClient

    class Killed(BaseException):
        pass

    create_run = MlflowClient.create_run

    def create_run_then_die(self, *args, **kwargs):
        create_run(self, *args, **kwargs)
        raise Killed

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = replicates_config(shared_data, tmp_path, 2)
    scored_replicates(cfg, "BI_x2", uri)
    monkeypatch.setattr(MlflowClient, "create_run", create_run_then_die)
    with pytest.raises(Killed):
        aggregated(cfg)
    monkeypatch.setattr(MlflowClient, "create_run", create_run)
    summary = aggregated(cfg)
    client = MlflowClient(uri)
    trainings = {json.loads((tmp_path / "data" / "tiny" / "runs" / run / "train.json").read_text())["mlflow_run_id"]
                 for run in summary["runs"]}
    others = [r for r in client.search_runs([client.get_experiment_by_name("bsr-tiny").experiment_id])
              if r.info.run_id not in trainings]
    assert [(r.info.run_id, r.info.status) for r in others] == [(summary["mlflow_run_id"], "FINISHED")]


def test_a_dropped_replicate_is_no_longer_a_child_of_the_aggregate_run(shared_data, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    scored_replicates(replicates_config(shared_data, tmp_path, 3), "BI_x2", uri)
    aggregated(replicates_config(shared_data, tmp_path, 3))
    summary = aggregated(replicates_config(shared_data, tmp_path, 2))
    client = MlflowClient(uri)
    parents = {run: client.get_run(json.loads((tmp_path / "data" / "tiny" / "runs" / run / "train.json").read_text())
                                   ["mlflow_run_id"]).data.tags.get("mlflow.parentRunId")
               for run in ("BI_x2", "BI_x2-r1", "BI_x2-r2")}
    assert parents == {"BI_x2": summary["mlflow_run_id"], "BI_x2-r1": summary["mlflow_run_id"], "BI_x2-r2": None}


def test_the_aggregate_run_is_named_apart_from_replicate_0s_training_run(shared_data, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = replicates_config(shared_data, tmp_path, 2)
    scored_replicates(cfg, "BI_x2", uri)
    client = MlflowClient(uri)
    names = [r.info.run_name for r in client.search_runs([client.get_experiment_by_name("bsr-tiny").experiment_id])]
    assert sorted(names) == ["BI_x2", "BI_x2-r1"]
    assert client.get_run(aggregated(cfg)["mlflow_run_id"]).info.run_name not in names
