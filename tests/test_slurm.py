"""The demo through profiles/slurm on a real one-node SLURM cluster (tests/slurm_cluster.py): every compute job
goes through sbatch, a failed job is reported with its SLURM log, a rerun resumes from what finished, and the
tables equal the local run's."""
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, project_copy, snakemake
from tests.slurm_cluster import daemons_left, missing_requirement, slurm_cluster

pytestmark = pytest.mark.slow

CLUSTER_ARGS = ("--profile", "profiles/slurm", "--profile", str(REPO / "tests" / "slurm_profile"),
                "--workflow-profile", "none", "--configfile", "config/demo.yaml")
LOCAL_RULES = {"aggregate", "all", "download", "experiment_config", "report"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = missing_requirement()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("slurm")
    with slurm_cluster(folder) as env:
        yield env
    assert not daemons_left(folder), "a SLURM or munge daemon outlived the test cluster"


def executed_rules(output: str) -> list[str]:
    """The rule of every job a Snakemake run started, local or submitted."""
    return re.findall(r"^(?:local)?rule (\w+):", output, flags=re.M)


def submitted_jobs(output: str) -> list[str]:
    return re.findall(r"submitted with SLURM jobid (\d+)", output)


def test_demo_on_slurm_reports_a_failed_job_resumes_and_equals_the_local_run(cluster, demo_run, tmp_path):
    local_project, local_seconds = demo_run
    project = project_copy(tmp_path / "project")
    data = project / "data" / "demo"
    # The downloads run on this host; then one test image is broken, so that the cluster jobs reading it fail.
    snakemake(project, "data/demo/hr/demo_test", *CLUSTER_ARGS, env=cluster)
    image = data / "hr" / "demo_test" / "camera.png"
    good = image.read_bytes()
    image.write_bytes(good[: len(good) // 3])

    failed = snakemake(project, "all", *CLUSTER_ARGS, env=cluster, check=False)
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0
    # Each failed job's report names its rule log and its SLURM log; the SLURM logs of failed jobs are kept.
    logs = re.findall(r"log: \S+, (\S+/slurm_logs/rule_(?:degrade|bicubic)/\S+\.log) \(check log", out)
    assert len(logs) == 4, out[-3000:]  # the test set's degrade and bicubic jobs at BI x2 and BD x3
    assert all(Path(log).is_file() for log in logs)
    finished = [r for r in executed_rules(out) if r not in LOCAL_RULES]
    assert "pic" in finished, "keep-going: the training set's jobs go on beside the failed ones"

    image.write_bytes(good)
    start = time.perf_counter()
    result = snakemake(project, "all", *CLUSTER_ARGS, env=cluster)
    seconds = time.perf_counter() - start
    out = result.stdout + result.stderr
    rules = executed_rules(out)
    local = f"{local_seconds:.0f} s" if local_seconds else "run before the tests"
    print(f"SLURM demo rerun: {seconds:.0f} s, {len(submitted_jobs(out))} sbatch jobs; local demo: {local}")
    assert "pic" not in rules and "download" not in rules, "the rerun resumes from what finished"
    assert len(submitted_jobs(out)) == sum(r not in LOCAL_RULES for r in rules) > 0
    assert {"train", "evaluate", "degrade", "bicubic"} <= set(rules)

    for table in ("tables.md", "tables.tex"):
        assert (project / "reports" / "bsr-demo" / table).read_text() == \
            (local_project / "reports" / "bsr-demo" / table).read_text()

    # The GPU mapping: training and evaluation jobs asked SLURM for a GPU, the data jobs did not.
    listing = subprocess.run(["squeue", "--states", "all", "--noheader", "--Format", "tres-per-job:60 ,comment:300"],
                             env=cluster, capture_output=True, text=True, check=True).stdout
    gres = {}
    for line in listing.splitlines():
        tres, comment = line.split()  # the executor's comment: rule_<rule>[_wildcards_...]
        gres.setdefault(re.match(r"rule_([a-z]+)", comment).group(1), set()).add(tres)
    assert any("gpu" in t for t in gres.get("train", ())) and not any("gpu" in t for t in gres.get("degrade", ())), gres
