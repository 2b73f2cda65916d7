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
