"""Real Snakemake runs: the paper DAG (dry run), a toy pipeline end to end, profiles and config errors."""
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from bsr import stages
from tests.conftest import REPO, command_env, project_copy, snakemake, tiny_pipeline_config
from tests.test_report import compile_standalone


def planned_jobs(output: str) -> dict[str, set[str]]:
    """rule -> the set of its jobs' wildcard strings, parsed from a dry run's job listing."""
    jobs: dict[str, set[str]] = {}
    rule = None
    for line in output.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
            jobs.setdefault(rule, set())
        elif rule and (m := re.match(r"^\s+wildcards: (.*)", line)):
            jobs[rule].add(m.group(1))
    return jobs


def test_paper_dag_lists_every_job():
    start = time.perf_counter()
    result = snakemake(REPO, "-n", "all", "--cores", "8", "--resources", "gpu=1")
    print(f"paper dry run: {time.perf_counter() - start:.2f} s")
    jobs = planned_jobs(result.stdout + result.stderr)
    tests = ["Set5", "Set14", "BSD100", "Urban100", "Manga109"]
    assert jobs["download"] == {f"dataset={d}" for d in ["DIV2K", *tests]}
    degradations = [("BI", 2), ("BI", 3), ("BI", 4), ("BD", 3)]
    assert jobs["degrade"] == {f"dataset={d}, kind={k}, scale={s}" for d in ["DIV2K", *tests] for k, s in degradations}
    arms = ["ablation_baseline", "ablation_wo_rfs", "ablation_wo_sc", "ablation_l2", "ablation_l2_l1"]
    main = ["BI_x2", "BI_x3", "BI_x4", "BD_x3", "EDSR_x2"]
    runs = [f"{arm}{seed}" for arm in arms for seed in ("", "-r1", "-r2")]  # three replicates per arm
    # the work stages' files lie in the config's work folder, the wildcard root (a variant's DAG has several)
    assert jobs["train"] == {f"root=data, experiment={e}" for e in [*main, *runs]}
    expected = {f"root=data, experiment={e}, dataset={d}" for e in main for d in tests}
    assert jobs["evaluate"] == expected | {f"root=data, experiment={run}, dataset=Set5" for run in runs}
    assert jobs["aggregate"] == {f"root=data, experiment={arm}" for arm in arms}
    if not stages.gpu_here():
        assert "WARNING: no GPU on this machine: 20 training(s) of this config ask for one" in result.stderr


def test_slurm_profile_dry_run_gives_training_a_gpu():
    result = snakemake(REPO, "-n", "all", "--profile", "profiles/slurm", "--workflow-profile", "none")
    text = result.stdout + result.stderr
    train = [line for line in text.splitlines() if "runtime=1440" in line]
    assert len(train) == 20 and all("gpu=1" in line and "mem_mb=32000" in line for line in train)


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["experiments"]["BI_x2"].update(trian={"lr": 1}), "experiments.BI_x2"),
    (lambda c: c["experiments"]["BI_x2"].update(train={"lrr": 1}), "unknown key train.lrr"),
    (lambda c: c["defaults"]["train"].update(batch="sixteen"), "train.batch: 'sixteen' is not of type 'integer'"),
    (lambda c: c.update(test_sets=["Set5", "Set6"]), "test_sets.1: 'Set6' is not a key of datasets"),
    (lambda c: c["datasets"]["Set5"].update(images="five"), "datasets.Set5.images"),
    (lambda c: c["experiments"]["BD_x3"].update(scale=2), "experiments.BD_x3: degradation: BD is defined for odd"),
    (lambda c: c["defaults"]["sampling"].update(intervals=300), "sampling.intervals: 300 is greater than"),
    (lambda c: c["defaults"]["sampling"].update(quota=[0] * 16), "sampling.quota: weights sum to 0"),
    (lambda c: c["defaults"]["sampling"].update(range_quantiles=[0.9, 0.1]), "sampling.range_quantiles: must increase"),
    (lambda c: c["defaults"]["train"].update(lr=float("nan")), "train.lr: must be a finite number"),
    (lambda c: c["defaults"]["train"].update(lr=float("inf")), "train.lr: must be a finite number"),
    (lambda c: c["defaults"]["train"].update(lr=-1e-4), "train.lr: -0.0001 is less than or equal to"),
    (lambda c: c["defaults"]["train"].update(betas=[0.9, 1.0]), "train.betas.1: 1.0 is greater than or equal"),
    (lambda c: c["experiments"]["ablation_l2"].update(base="nope"), "experiments.ablation_l2.base: 'nope' is not"),
])
def test_bad_config_names_the_key(tmp_path, edit, message):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    edit(cfg)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(REPO, "-n", "all", "--cores", "1", "--configfile", str(tmp_path / "bad.yaml"), check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert message in output and "bsr: error:" in output and "bsr/config.py" not in output  # one line, no stack


def test_snakemake_refuses_a_shallow_merge_that_drops_keys(tmp_path):
    text = (REPO / "config" / "config.yaml").read_text()
    text = text.replace("bases:\n  ablation:", "bases:\n  ablation: &ablation")
    text = text.replace("ablation_l2: {base: ablation,", "ablation_l2: {<<: *ablation, train: {lr: 1.0e-4},")
    (tmp_path / "shallow.yaml").write_text(text)
    result = snakemake(REPO, "-n", "all", "--configfile", str(tmp_path / "shallow.yaml"), check=False)
    assert result.returncode != 0 and "'train' replaces the whole 'train' mapping" in result.stdout + result.stderr


@pytest.mark.slow
def test_tiny_pipeline_end_to_end_with_a_space_in_its_data_dir(shared_data, tmp_path):
    from mlflow.tracking import MlflowClient

    project = project_copy(tmp_path / "project")
    (project / "tiny.yaml").write_text(yaml.safe_dump(tiny_pipeline_config(shared_data, "my data")))
    snakemake(project, "all", "--cores", "2", "--configfile", "tiny.yaml")
    tables = (project / "reports" / "bsr-tiny" / "tables.md").read_text()
    assert "**Bicubic (ours)**" in tables and "**BSR (ours)**" in tables
    assert "| Set5 BI ×2 | BI_x2 (12) | PSNR (dB) | 38.30 |" in tables and "Too short to mean anything" in tables
    for figure in ("training_curves.png", "compare_Set5_BIx2.png", "compare_Set5_BDx3.png", "pic_T91_BIx2-sum.png",
                   "pic_T91_BDx3-sum.png"):
        assert (project / "reports" / "bsr-tiny" / "figures" / figure).stat().st_size > 1000

    # The bicubic cell for Set5 x2 is the paper's; every measured number is the one MLflow holds.
    bicubic = json.loads((project / "my data" / "bicubic" / "Set5" / "BIx2.json").read_text())
    assert f"{bicubic['psnr']:.2f} / {bicubic['ssim']:.4f}" in tables
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    for summary_path in (project / "my data" / "eval").glob("*/*.json"):
        summary = json.loads(summary_path.read_text())
        run = client.get_run(summary["mlflow_run_id"])
        assert run.data.metrics["psnr"] == pytest.approx(summary["psnr"], abs=1e-12)
        assert run.data.metrics["ssim"] == pytest.approx(summary["ssim"], abs=1e-12)
        parent = client.get_run(run.data.tags["mlflow.parentRunId"])
        assert parent.data.metrics[f"test_psnr_{summary['dataset']}"] == pytest.approx(summary["psnr"], abs=1e-12)
        assert {"model.n_fmg", "train.lr"} <= set(parent.data.params)
        assert parent.data.tags["bsr.config"] == "tiny.yaml" and parent.data.tags["bsr.parent_config"] == "none"
        assert parent.data.tags["bsr.config_sha256"] == hashlib.sha256((project / "tiny.yaml").read_bytes()).hexdigest()
        assert parent.data.tags["bsr.git_commit"] == parent.data.tags["bsr.git_dirty"] == "unknown"  # no git here
        assert f"{summary['psnr']:.2f} / {summary['ssim']:.4f}" in tables or summary["experiment"].startswith("abl")

    assert "Nothing to be done" in snakemake(project, "-n", "all", "--configfile", "tiny.yaml").stdout
    snakemake(project, "all", "--configfile", "tiny.yaml", "--report", "reports/report.html")
    report_html = (project / "reports" / "report.html").read_text()
    assert len(report_html) > 10_000 and '"name": "tables.html"' in report_html  # the Tables category shows them
    if shutil.which("pdflatex"):
        assert compile_standalone(project / "reports" / "bsr-tiny") == {"Type1"}
    else:
        pytest.fail("pdflatex is not installed: .ci/run installs texlive to compile the report's tables_standalone.tex")


@pytest.mark.slow
def test_demo_config_end_to_end(demo_run):
    """The README's main job, in a copy of the project: BSR must beat bicubic on the demo test set."""
    project, seconds = demo_run
    print(f"demo pipeline: {seconds:.0f} s" if seconds else f"demo pipeline: the one in {project}")
    tables_md = (project / "reports" / "bsr-demo" / "tables.md").read_text()
    tables_tex = (project / "reports" / "bsr-demo" / "tables.tex").read_text()
    data = project / "data" / "demo"
    for experiment, tag in (("BI_x2", "BIx2"), ("BD_x3", "BDx3")):
        bsr = json.loads((data / "eval" / experiment / "demo_test.json").read_text())
        bicubic = json.loads((data / "bicubic" / "demo_test" / f"{tag}.json").read_text())
        print(f"demo_test {tag}: BSR {bsr['psnr']:.2f} dB / {bsr['ssim']:.4f}, "
              f"bicubic {bicubic['psnr']:.2f} dB / {bicubic['ssim']:.4f}")
        assert bsr["psnr"] > bicubic["psnr"] and bsr["ssim"] > bicubic["ssim"]
        for value in (f"{bsr['psnr']:.2f}", f"{bicubic['psnr']:.2f}"):
            assert value in tables_md and value in tables_tex
    assert "| demo_test BI ×2 | BI_x2 (300) | PSNR (dB) |" in tables_md
    assert r"demo\_test BD $\times$3 & BD\_x3 (300) & PSNR (dB)" in tables_tex
    assert "Nothing to be done" in snakemake(project, "-n", "all", "--configfile", "config/demo.yaml").stdout


@pytest.mark.slow
def test_reruns_after_a_config_change_and_a_kill_finish_with_every_output_and_the_whole_history(shared_data, tmp_path):
    """Snakemake deletes a job's outputs before it reruns it: a finished training must rewrite them from its
    checkpoint, a killed one must resume, and neither may lose metric history or leave an MLflow run RUNNING."""
    import os
    import signal

    import torch
    from mlflow.tracking import MlflowClient

    from bsr import BsrError, layout
    from bsr.files import exclusive_lock

    project = project_copy(tmp_path / "project")
    cfg = tiny_pipeline_config(shared_data)
    cfg["experiments"] = {"BI_x2": cfg["experiments"]["BI_x2"]}
    config_file = project / "tiny.yaml"

    def run(**train):
        cfg["defaults"]["train"].update(train)
        config_file.write_text(yaml.safe_dump(cfg))
        return ["all", "--cores", "2", "--configfile", "tiny.yaml", "--rerun-incomplete"]

    snakemake(project, *run())
    snakemake(project, *run(log_every=3))  # reruns training from its finished checkpoint
    run_dir = project / "data" / "tiny" / "runs" / "BI_x2"
    job = subprocess.Popen([sys.executable, "-m", "snakemake", *run(iterations=3000, val_every=1000)], cwd=project,
                           env=command_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)

    def checkpoint_step():
        try:
            return torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
        except Exception:
            return 0

    deadline = time.time() + 300
    while checkpoint_step() < 60 and job.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGTERM)  # what a scheduler's cancel does to the job's process group
    job.wait(timeout=120)
    while time.time() < deadline:  # the training closes its MLflow run before it exits, and holds its lock
        try:
            with exclusive_lock(run_dir / layout.RUN_LOCK, "test"):
                break
        except BsrError:
            time.sleep(0.2)
    assert 60 <= checkpoint_step() < 3000
    snakemake(project, *run())

    steps = [int(line.split(",")[0]) for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert steps[:4] == [4, 8, 12, 15] and steps[-1] == 3000
    assert all(0 < b - a <= 3 for a, b in zip(steps[3:], steps[4:]))
    for path in ("data/tiny/runs/BI_x2/model.safetensors", "data/tiny/runs/BI_x2/train.json", "data/tiny/eval/BI_x2/Set5.json",
                 "reports/bsr-tiny/tables.md", "reports/bsr-tiny/tables.tex"):
        assert (project / path).is_file(), path
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("bsr-tiny").experiment_id])
    assert runs and not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    trained = json.loads((run_dir / "train.json").read_text())
    assert client.get_run(trained["mlflow_run_id"]).info.status == "FINISHED" and trained["iterations"] == 3000
