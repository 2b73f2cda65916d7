"""The stage table serialised twice: Snakemake's DAG and the generated dvc.yaml hold the same jobs, inputs,
outputs and commands, with every path quoted, whatever the config's data_dir holds."""
import re
import shlex
import subprocess

import pytest
import yaml

from bsr import BsrError, stages
from bsr.config import check_pipeline, load_pipeline
from bsr.dvc_stages import dvc_yaml, dvc_yaml_path
from tests.conftest import REPO, command_env, project_copy, snakemake, tiny_pipeline_config


def dry_run_jobs(output: str) -> dict[str, dict]:
    """DVC-style stage name -> {inputs, outputs, cmd}, parsed from `snakemake -n --forceall -p`."""
    jobs, current = {}, None
    for line in output.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            current = {"rule": m.group(1), "inputs": [], "outputs": [], "wildcards": {}}
        elif current is None:
            continue
        elif m := re.match(r"^\s+(input|output|log): (.*)$", line):
            key = {"input": "inputs", "output": "outputs", "log": "log"}[m.group(1)]
            current[key] = m.group(2).split(", ")
        elif m := re.match(r"^\s+wildcards: (.*)$", line):
            current["wildcards"] = dict(pair.split("=", 1) for pair in m.group(1).split(", "))
        elif line.startswith("Shell command: "):
            cmd = line.removeprefix("Shell command: ")
            if current["rule"] != "all":
                name = "_".join([current["rule"], *stages.wildcard_tags(current["wildcards"])])
                jobs[name] = dict(current, cmd=cmd)
            current = None
    return jobs


def assert_same_jobs(project, config_path: str) -> dict[str, dict]:
    cfg = load_pipeline(project / config_path)
    result = snakemake(project, "-n", "--forceall", "-p", "all", "--cores", "2", "--configfile", config_path)
    smk = dry_run_jobs(result.stdout + result.stderr)
    dvc = yaml.safe_load(dvc_yaml(cfg, config_path))["stages"]
    assert set(smk) == set(dvc), set(smk) ^ set(dvc)
    for name, stage in dvc.items():
        job = smk[name]
        log = shlex.quote(job["log"][0])
        assert job["cmd"] == f"{stage['cmd']} > {log} 2>&1", name
        assert sorted(job["inputs"]) == sorted(stage.get("deps", [])), name
        assert sorted(job["outputs"]) == sorted(stage["outs"]), name
    return dvc


def test_paper_demo_and_study_dags_are_the_committed_dvc_pipelines():
    for config_path in ("config/config.yaml", "config/demo.yaml", "config/study.yaml"):
        assert_same_jobs(REPO, config_path)
        assert (REPO / dvc_yaml_path(config_path)).read_text() == \
            dvc_yaml(load_pipeline(REPO / config_path), config_path), f"regenerate: bsr dvc-yaml --config {config_path}"


@pytest.mark.parametrize("data_dir", ["my data", "d$(touch {marker})", "it's"])
def test_every_command_quotes_the_data_dir(shared_data, tmp_path, data_dir):
    project = project_copy(tmp_path / "project")
    marker = tmp_path / "pwned"
    cfg = tiny_pipeline_config(shared_data, data_dir.format(marker=marker))
    (project / "odd.yaml").write_text(yaml.safe_dump(cfg))
    stages_ = assert_same_jobs(project, "odd.yaml")
    degrade = shlex.split(stages_["degrade_Set5_BIx2"]["cmd"])
    assert degrade[degrade.index("--hr") + 1] == f"{cfg['data_dir']}/hr/Set5"
    # Run the data stages for real: the download and degrade jobs get their folders, and nothing else runs.
    lr = f"{cfg['data_dir']}/lr/Set5/BIx2"
    snakemake(project, lr, "--cores", "2", "--configfile", "odd.yaml")
    assert len(list((project / lr).glob("*.png"))) == 5 and not marker.exists()
    assert not [p.name for p in project.iterdir() if p.name in ("my", "d", "it")]


def test_snakemake_refuses_config_overrides_the_jobs_would_not_see():
    result = snakemake(REPO, "-n", "all", "--configfile", "config/demo.yaml", "--config", "data_dir=elsewhere",
                       check=False)
    assert result.returncode != 0
    assert "--config data_dir=...: the jobs read the config file" in result.stdout + result.stderr


def test_lint_is_clean():
    result = subprocess.run(["snakemake", "--lint", "--configfile", "config/demo.yaml"], cwd=REPO, env=command_env(),
                            capture_output=True, text=True)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stdout


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.update(data_dir="data/{x}"), "data_dir: 'data/{x}' does not match"),
    (lambda c: c["experiments"]["ablation_wo_rfs"].update(self_ensemble=True),
     "experiments.ablation_wo_rfs.self_ensemble: the ablation compares plain arms"),
])
def test_configs_the_table_cannot_serialise_are_refused_naming_the_key(shared_data, edit, message):
    cfg = tiny_pipeline_config(shared_data)
    edit(cfg)
    with pytest.raises(BsrError, match=re.escape(message)):
        check_pipeline(cfg)


def test_jobs_that_would_share_a_name_are_refused(shared_data):
    cfg = tiny_pipeline_config(shared_data)
    cfg["datasets"]["B_C"] = cfg["datasets"].pop("Set5")
    cfg["val_set"], cfg["test_sets"] = "B_C", ["B_C"]
    cfg["experiments"] = {"A": {"scale": 2, "degradation": "BI", "test_sets": ["B_C"]},
                          "A_B": {"scale": 2, "degradation": "BI", "test_sets": ["C"]}}
    cfg["datasets"]["C"] = cfg["datasets"]["B_C"]
    with pytest.raises(BsrError, match="jobs evaluate_A_B_C would share a name"):
        stages.jobs(check_pipeline(cfg), "clash.yaml")
