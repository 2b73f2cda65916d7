"""Variant configs (`extends:`): they change one thing, keep their own runs and report, share the rest with the
config they extend, never overwrite another config's outputs, and report what changed and what moved."""
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bsr import BsrError, stages
from bsr.config import load_pipeline
from bsr.dvc_stages import dvc_yaml
from bsr.variants import plan_checks
from tests.conftest import REPO, command_env, project_copy, snakemake, tiny_pipeline_config

VARIANT = "extends: config/tiny.yaml\nexperiments:\n  BD_x3: {train: {lr: 5.0e-4}}\n"


@pytest.fixture
def tiny_project(shared_data, tmp_path, monkeypatch):
    """A project folder holding config/tiny.yaml and its variant config/tiny_lr.yaml, as the working folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config")  # what a config's report compares it with
    (tmp_path / "config" / "tiny.yaml").write_text(yaml.safe_dump(tiny_pipeline_config(shared_data)))
    (tmp_path / "config" / "tiny_lr.yaml").write_text(VARIANT)
    return tmp_path


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a dry run."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


def digests(root: Path, *folders: str, skip: str = "/variants/") -> dict[str, str]:
    files = [f for folder in folders for f in sorted((root / folder).rglob("*")) if f.is_file()]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if skip not in str(f)}


def test_a_variant_is_its_parent_merged_with_its_changes_and_shares_what_they_have_in_common(tiny_project):
    cfg = load_pipeline("config/tiny_lr.yaml")
    assert cfg["name"] == "tiny_lr" and cfg["data_dir"] == "data/tiny" and cfg["extends"] == "config/tiny.yaml"
    assert cfg["experiments"]["BD_x3"]["train"] == {"lr": 5e-4}
    jobs = {job.name: job for job in stages.jobs(cfg, "config/tiny_lr.yaml")}
    own = sorted(name for name, job in jobs.items() if job.config == "config/tiny_lr.yaml")
    assert own == ["evaluate_BD_x3_Set5", "experiment_config_BD_x3", "report", "train_BD_x3"]
    # the shared jobs are the parent's records, its config in their commands; the variant's own write apart
    assert jobs["train_BI_x2"].args == stages.job(load_pipeline("config/tiny.yaml"), "config/tiny.yaml", "train",
                                                  {"experiment": "BI_x2"}).args
    assert jobs["train_BD_x3"].outputs["model"] == "data/tiny/variants/tiny_lr/runs/BD_x3/model.safetensors"
    assert jobs["download_Set5"].config == "config/tiny.yaml"
    # the report reads the parent's BD_x3 scores too: the other side of "What moved"
    assert "data/tiny/eval/BD_x3/Set5.json" in jobs["report"].input_paths

    # a variant of a variant: it extends the chain, and shares what neither changed
    Path("config/tiny_lr_x2.yaml").write_text("extends: config/tiny_lr.yaml\n"
                                              "experiments:\n  BI_x2: {train: {lr: 5.0e-4}}\n")
    deeper = load_pipeline("config/tiny_lr_x2.yaml")
    assert deeper["name"] == "tiny_lr_x2" and deeper["experiments"]["BD_x3"]["train"] == {"lr": 5e-4}
    runs = {job.name: job.outputs["model"] for job in stages.jobs(deeper, "config/tiny_lr_x2.yaml")
            if job.stage == "train"}
    assert runs["train_BD_x3"] == "data/tiny/variants/tiny_lr/runs/BD_x3/model.safetensors"  # the middle config's
    assert runs["train_BI_x2"] == "data/tiny/variants/tiny_lr_x2/runs/BI_x2/model.safetensors"
    assert runs["train_ablation_baseline"] == "data/tiny/runs/ablation_baseline/model.safetensors"
    plan_checks(deeper, "config/tiny_lr_x2.yaml")  # a chain overwrites nothing of its own


@pytest.mark.parametrize("text, error", [
    ("extends: config/nowhere.yaml\n", r"config/v.yaml: extends: config/nowhere.yaml: no such config file"),
    ("extends: [config/tiny.yaml]\n", r"config/v.yaml: extends: expected the path of a config file"),
    ("extends: config/v.yaml\n", r"config/v.yaml: extends itself"),
    ("extends: config/tiny.yaml\nname: bsr-tiny\n", r"name: 'bsr-tiny' is its parent's \(config/tiny.yaml\)"),
    ("extends: config/tiny.yaml\ndatasets: {Set5: {images: 4}}\n",
     r"datasets.Set5 differs from its parent's \(config/tiny.yaml\), whose download writes data/tiny/hr/Set5"),
    ("extends: config/tiny.yaml\nexperiments: {BD_x3: {train: {lr: fast}}}\n",
     r"config/v.yaml: experiments.BD_x3: train.lr: 'fast' is not of type 'number'"),
])
def test_bad_variants_are_refused_in_one_line(tiny_project, text, error):
    Path("config/v.yaml").write_text(text)
    with pytest.raises(BsrError, match=error) as refused:
        load_pipeline("config/v.yaml")
    assert "\n" not in str(refused.value)


def test_configs_that_would_overwrite_each_other_are_refused_at_plan_time(tiny_project, shared_data):
    cfg = tiny_pipeline_config(shared_data)
    # a copy with one value changed, which the README once advised: the same data_dir, another name
    Path("config/copy.yaml").write_text(yaml.safe_dump({**cfg, "name": "copy"}))
    with pytest.raises(BsrError, match=r"^config/copy.yaml and config/tiny.yaml would both write "
                                       r"data/tiny/hr/Set5: give config/copy.yaml a data_dir of its own, or say "
                                       r"`extends: config/tiny.yaml` in it"):
        plan_checks(load_pipeline("config/copy.yaml"), "config/copy.yaml")
    # its own data_dir but the same name: one report folder, one MLflow experiment
    Path("config/copy.yaml").write_text(yaml.safe_dump({**cfg, "data_dir": "data/copy"}))
    with pytest.raises(BsrError, match=r"config/copy.yaml and config/tiny.yaml are both named 'bsr-tiny'"):
        plan_checks(load_pipeline("config/copy.yaml"), "config/copy.yaml")
    Path("config/copy.yaml").write_text(yaml.safe_dump({**cfg, "data_dir": "data/copy", "name": "copy"}))
    plan_checks(load_pipeline("config/copy.yaml"), "config/copy.yaml")
    plan_checks(load_pipeline("config/tiny_lr.yaml"), "config/tiny_lr.yaml")

    # a dvc.yaml that another dvc.yaml's stages already declare (here one left by a config since renamed)
    Path("config/old").mkdir()
    Path("config/old/dvc.yaml").write_text(dvc_yaml(load_pipeline("config/copy.yaml"), "config/copy.yaml",
                                                    "config/old/dvc.yaml"))
    with pytest.raises(BsrError, match=r"config/copy/dvc.yaml: would declare data/copy/hr/Set5, which "
                                       r"config/old/dvc.yaml declares \(stage download_Set5\)"):
        dvc_yaml(load_pipeline("config/copy.yaml"), "config/copy.yaml")


def test_snakemake_refuses_a_copy_of_the_demo_that_would_overwrite_it(tmp_path):
    project = project_copy(tmp_path / "project")
    text = (project / "config" / "demo.yaml").read_text().replace("lr: 1.0e-3", "lr: 5.0e-4")
    (project / "config" / "demo_copy.yaml").write_text(text)
    result = snakemake(project, "-n", "all", "--configfile", "config/demo_copy.yaml", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "bsr: error: config/demo_copy.yaml and config/demo.yaml are both named 'bsr-demo'")
    (project / "config" / "demo_copy.yaml").write_text(text.replace("name: bsr-demo", "name: demo-copy"))
    result = snakemake(project, "-n", "all", "--configfile", "config/demo_copy.yaml", check=False)
    assert "bsr: error: config/demo_copy.yaml and config/demo.yaml would both write data/demo/hr/demo_" in result.stderr


@pytest.mark.slow
def test_dvc_runs_a_variant_before_or_after_its_parent(tiny_project):
    def run(*cmd):
        result = subprocess.run(cmd, capture_output=True, text=True, env=command_env())
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result.stdout

    def repro(pipeline):
        return set(re.findall(r"Running stage '(?:[^':]*:)?([^']+)'", run(sys.executable, "-m", "dvc", "repro",
                                                                           pipeline)))
    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    for config in ("config/tiny.yaml", "config/tiny_lr.yaml"):
        run("bsr", "dvc-yaml", "--config", config)
    # the variant first: DVC runs the parent's stages it needs (every dvc.yaml is one graph), then its own
    first = repro("config/tiny_lr/dvc.yaml")
    assert {"train_BD_x3", "train_BI_x2", "download_Set5", "report"} <= first
    assert Path("data/tiny/runs/BD_x3/model.safetensors").is_file()
    assert Path("data/tiny/variants/tiny_lr/runs/BD_x3/model.safetensors").is_file()
    assert repro("config/tiny/dvc.yaml") == {"report"}  # the parent's report, all else done
    assert repro("config/tiny_lr/dvc.yaml") == set() and repro("config/tiny/dvc.yaml") == set()


@pytest.mark.slow
def test_a_variant_of_the_demo_retrains_one_experiment_and_leads_with_what_moved(demo_run, tmp_path):
    demo, _ = demo_run
    project = project_copy(tmp_path / "project")
    for folder in ("data/demo", "reports/bsr-demo", "mlartifacts", ".snakemake/metadata"):
        shutil.copytree(demo / folder, project / folder, symlinks=True)  # copy2: the same mtimes
    shutil.copy2(demo / "mlflow.db", project / "mlflow.db")
    before = digests(project, "data/demo", "reports/bsr-demo")
    (project / "config" / "demo_lr.yaml").write_text("extends: config/demo.yaml\n"
                                                     "experiments:\n  BD_x3: {train: {lr: 5.0e-4}}\n")

    planned = snakemake(project, "-n", "all", "--configfile", "config/demo_lr.yaml").stdout
    assert job_counts(planned) == {"experiment_config": 1, "train": 1, "evaluate": 1, "report": 1, "all": 1}
    snakemake(project, "all", "--cores", "2", "--configfile", "config/demo_lr.yaml")
    assert digests(project, "data/demo", "reports/bsr-demo") == before
    assert "Nothing to be done" in snakemake(project, "-n", "all", "--configfile", "config/demo.yaml").stdout
    assert "Nothing to be done" in snakemake(project, "-n", "all", "--configfile", "config/demo_lr.yaml").stdout

    tables = (project / "reports" / "demo_lr" / "tables.md").read_text()
    first_table = tables.split("## Table 1. ", 1)[1].split("## Table 2.", 1)[0]
    assert first_table.startswith("What moved: this variant against bsr-demo (config/demo.yaml)")
    rows = [line for line in first_table.splitlines() if line.startswith("| BD_x3")]
    assert len(rows) == 2 and first_table.index(rows[0]) < first_table.index("Reused from bsr-demo")
    assert "experiments.BD_x3.train.lr: 0.001 (defaults) → 0.0005" in tables
    assert (project / "reports" / "demo_lr" / "changes.txt").read_text().splitlines()[1:] == [
        "name: bsr-demo → demo_lr", "experiments.BD_x3.train.lr: 0.001 (defaults) → 0.0005"]
    print("\n".join(["", "What moved (demo_lr against bsr-demo):", *first_table.splitlines()[:8]]))
