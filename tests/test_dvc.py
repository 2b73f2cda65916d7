"""Real DVC in a temporary git repo: the generated dvc.yaml runs, reruns only what changed, and round-trips
through a local remote."""
import hashlib
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import REPO, command_env, tiny_pipeline_config


def run(cwd, *cmd):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=command_env())
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def dvc(cwd, *args):
    return run(cwd, sys.executable, "-m", "dvc", *args)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def outs_digest(root) -> dict[str, str]:
    """sha256 of every file of every stage output that dvc.yaml declares."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values()
    paths = [root / out for stage in stages for out in stage.get("outs", [])]
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.mark.slow
def test_dvc_reruns_exactly_what_changed_and_round_trips_a_remote(shared_data, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    run(project, "git", "init", "-q")
    run(project, "git", "config", "user.email", "t@example.org")
    run(project, "git", "config", "user.name", "t")
    dvc(project, "init", "-q")
    shutil.copy(REPO / ".gitignore", project / ".gitignore")  # data/ and reports/ are git-ignored, as here
    cfg = tiny_pipeline_config(shared_data)
    (project / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    run(project, "bsr", "dvc-yaml", "--config", "tiny.yaml")

    first = stages_run(dvc(project, "repro"))
    assert {"download_T91", "download_Set5", "degrade_T91_BIx2", "pic_T91_BIx2_sum", "train_BI_x2",
            "evaluate_BI_x2_Set5", "bicubic_Set5_BDx3", "report"} <= first
    assert (project / "reports" / "tables.md").is_file() and (project / "dvc.lock").is_file()

    start = time.perf_counter()
    assert stages_run(dvc(project, "repro")) == set()
    print(f"no-op dvc repro: {time.perf_counter() - start:.2f} s")

    cfg["experiments"]["BD_x3"]["train"] = {"lr": 5e-4}
    (project / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert stages_run(dvc(project, "repro")) == {"train_BD_x3", "evaluate_BD_x3_Set5", "report"}

    # DVC deletes a stage's outputs before rerunning it: finished trainings rewrite them from their checkpoints.
    trained = outs_digest(project)
    cfg["defaults"]["train"]["log_every"] = 2
    (project / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert stages_run(dvc(project, "repro")) == {f"train_{name}" for name in cfg["experiments"]}
    assert outs_digest(project) == trained  # the same model, metric history and summary: nothing retrained

    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "pipeline")
    dvc(project, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    dvc(project, "push")
    before = outs_digest(project)
    assert len(before) > 80 and "reports/tables.md" in before and "data/runs/BI_x2/model.pt" in before
    shutil.rmtree(project / ".dvc" / "cache")
    for folder in ["data", "reports"]:
        shutil.rmtree(project / folder)
    dvc(project, "pull")
    assert outs_digest(project) == before
    assert stages_run(dvc(project, "repro")) == set()
