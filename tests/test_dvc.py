"""Real DVC in a temporary git repo: the committed demo pipeline runs as Snakemake runs it, reruns only what
changed, and round-trips through a local remote."""
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import REPO, command_env


def run(cwd, *cmd):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=command_env())
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def dvc(cwd, *args):
    return run(cwd, sys.executable, "-m", "dvc", *args)


def stages_run(output: str) -> set[str]:
    """The stages a `dvc repro` ran, without the "config/demo/dvc.yaml:" of a pipeline outside the root."""
    return set(re.findall(r"Running stage '(?:[^':]*:)?([^']+)'", output))


def outs_digest(root, dvc_yaml: str) -> dict[str, str]:
    """sha256 of every file of every stage output that a dvc.yaml declares (paths relative to its stages' wdir)."""
    stages = yaml.safe_load((root / dvc_yaml).read_text())["stages"].values()
    paths = [(root / dvc_yaml).parent / stage.get("wdir", ".") / out for stage in stages for out in stage["outs"]]
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {str(f.resolve().relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files
            if f.is_file()}


@pytest.mark.slow
def test_dvc_runs_the_demo_as_snakemake_does_reruns_exactly_what_changed_and_round_trips_a_remote(
        demo_run, tmp_path):
    """The committed config/demo/dvc.yaml, in a fresh git repo: the README's `dvc repro` of the demo."""
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    run(project, "git", "init", "-q")
    run(project, "git", "config", "user.email", "t@example.org")
    run(project, "git", "config", "user.name", "t")
    dvc(project, "init", "-q")
    shutil.copy(REPO / ".gitignore", project / ".gitignore")  # data/ and reports/ are git-ignored, as here
    for name in ("config.yaml", "demo.yaml", "demo/dvc.yaml"):
        (project / "config" / name).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / "config" / name, project / "config" / name)
    pipeline = "config/demo/dvc.yaml"

    start = time.perf_counter()
    first = stages_run(dvc(project, "repro", pipeline))
    print(f"dvc repro of the demo: {time.perf_counter() - start:.0f} s")
    assert {"download_demo_train", "degrade_demo_train_BIx2", "pic_demo_train_BIx2_sum", "experiment_config_BI_x2",
            "train_BI_x2", "evaluate_BI_x2_demo_test", "evaluate_self_ensemble_BI_x2_demo_test",
            "bicubic_demo_test_BDx3", "report"} <= first
    snakemake_project, _ = demo_run
    for table in ("tables.md", "tables.tex"):
        assert (project / "reports" / "bsr-demo" / table).read_text() == \
            (snakemake_project / "reports" / "bsr-demo" / table).read_text(), f"{table}: DVC and Snakemake differ"

    start = time.perf_counter()
    assert stages_run(dvc(project, "repro", pipeline)) == set()
    print(f"no-op dvc repro: {time.perf_counter() - start:.2f} s")

    config = project / "config" / "demo.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["experiments"]["BD_x3"]["train"] = {"lr": 5e-4}
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert stages_run(dvc(project, "repro", pipeline)) == {"experiment_config_BD_x3", "train_BD_x3",
                                                           "evaluate_BD_x3_demo_test", "report"}

    # DVC deletes a stage's outputs before rerunning it: a finished training rewrites them from its checkpoint.
    def trainings():
        return {path: digest for path, digest in outs_digest(project, pipeline).items() if "/runs/" in path}
    trained = trainings()
    cfg["experiments"]["BD_x3"]["train"]["log_every"] = 10
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert stages_run(dvc(project, "repro", pipeline)) == {"experiment_config_BD_x3", "train_BD_x3",
                                                           "evaluate_BD_x3_demo_test", "report"}
    assert trainings() == trained  # the same models, metric histories and summaries: nothing retrained

    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "pipeline")
    dvc(project, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    dvc(project, "push")
    before = outs_digest(project, pipeline)
    assert len(before) > 60 and "reports/bsr-demo/tables.md" in before
    assert "data/demo/runs/BI_x2/model.safetensors" in before
    shutil.rmtree(project / ".dvc" / "cache")
    for folder in ["data", "reports"]:
        shutil.rmtree(project / folder)
    dvc(project, "pull")
    assert outs_digest(project, pipeline) == before
    assert stages_run(dvc(project, "repro", pipeline)) == set()

    # A variant that changes one experiment's lr: its own dvc.yaml holds its own stages alone, depends on the
    # demo's outputs, and running it leaves the demo's byte for byte, with nothing left for the demo to rerun.
    (project / "config" / "demo_lr.yaml").write_text("extends: config/demo.yaml\n"
                                                     "experiments:\n  BD_x3: {train: {lr: 1.0e-3}}\n")
    run(project, "bsr", "dvc-yaml", "--config", "config/demo_lr.yaml")
    assert stages_run(dvc(project, "repro", "config/demo_lr/dvc.yaml")) == {
        "experiment_config_BD_x3", "train_BD_x3", "evaluate_BD_x3_demo_test", "report"}
    assert outs_digest(project, pipeline) == before
    assert stages_run(dvc(project, "repro", pipeline)) == set()
    assert "What moved" in (project / "reports" / "demo_lr" / "tables.md").read_text()


def test_a_dollar_before_a_brace_in_a_config_string_reaches_the_commands_through_real_dvc(
        shared_data, tmp_path, monkeypatch):
    """DVC reads `${...}` in dvc.yaml as its variables: a `$` before a brace in a source, subdir, file name or
    match pattern made the whole file unparseable. `dvc stage list` reads it, and each command is bsr's own."""
    from bsr.dvc_stages import dvc_yaml, dvc_yaml_path
    from bsr.stages import jobs
    from tests.conftest import tiny_pipeline_config

    monkeypatch.chdir(tmp_path)
    cfg = tiny_pipeline_config(shared_data)
    cfg["datasets"]["Set5"].update(source=f"{cfg['datasets']['Set5']['source']}/${{HOME}}", subdir="a${b}")
    cfg["datasets"]["T91"]["files"][0] = "${c}.png"
    cfg["published"] = {"RCAN": [{"dataset": "Set5", "degradation": "BI", "scale": 2, "source": "file:///x/${d}",
                                  "subdir": "\\${e}", "match": "{stem}_x${scale}"}]}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "dollar.yaml").write_text(yaml.safe_dump(cfg))
    from bsr.config import load_pipeline

    cfg = load_pipeline("config/dollar.yaml")
    out = tmp_path / dvc_yaml_path("config/dollar.yaml")
    out.parent.mkdir(parents=True)
    out.write_text(dvc_yaml(cfg, "config/dollar.yaml"))
    dvc(tmp_path, "init", "-q", "--no-scm")
    assert "download_Set5" in dvc(tmp_path, "stage", "list", str(out.relative_to(tmp_path)))
    read = run(tmp_path, sys.executable, "-c", "import json; from dvc.repo import Repo; "
               "print(json.dumps({s.name: s.cmd for s in Repo('.').index.stages}))")
    commands = {job.name: job.command for job in jobs(cfg, "config/dollar.yaml")}
    assert json.loads(read.splitlines()[-1]) == commands
    assert "'file:///x/${d}' --images 5 --subdir '\\${e}'" in commands["published_RCAN_Set5_BIx2"]
