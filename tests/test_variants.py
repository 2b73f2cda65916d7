"""Variant configs (`extends:`): they change one thing, keep their own runs and report, share the rest with the
config they extend, never overwrite another config's outputs, and report what changed and what moved."""
import hashlib
import re
import shutil
import subprocess
import sys
import textwrap
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


# ---- issue 22: config paths, ownership, variants of their own data_dir, chains --------------------------------

def tiny_snakemake_project(tmp_path, shared_data) -> Path:
    """The workflow files with config/tiny.yaml beside the project's configs."""
    project = project_copy(tmp_path / "project")
    (project / "config" / "tiny.yaml").write_text(yaml.safe_dump(tiny_pipeline_config(shared_data)))
    return project


@pytest.mark.parametrize("spelling", ["./config/tiny.yaml", "config//tiny.yaml", "{project}/config/tiny.yaml"])
def test_a_variant_names_its_parent_as_the_project_does_however_extends_spells_it(tiny_project, spelling):
    Path("config/tiny_lr.yaml").write_text(VARIANT.replace("config/tiny.yaml", spelling.format(project=tiny_project)))
    cfg = load_pipeline("config/tiny_lr.yaml")
    assert cfg["extends"] == "config/tiny.yaml" and cfg["_variant"]["parent_path"] == "config/tiny.yaml"
    parent = load_pipeline("config/tiny.yaml")
    jobs = {job.name: job for job in stages.jobs(cfg, "config/tiny_lr.yaml")}
    # the parent's records, word for word: neither engine reruns them for the variant, nor the parent after it
    for name in ("train_BI_x2", "experiment_config_BI_x2", "evaluate_BI_x2_Set5", "download_Set5"):
        theirs = stages.job(parent, "config/tiny.yaml", jobs[name].stage, jobs[name].wildcards)
        assert (jobs[name].config, jobs[name].args) == ("config/tiny.yaml", theirs.args)
    assert load_pipeline("./config//tiny_lr.yaml")["_file"] == "config/tiny_lr.yaml"


def test_two_variants_of_one_name_are_refused_from_either_file(tiny_project):
    Path("config/sub").mkdir()
    Path("config/lr.yaml").write_text(VARIANT)
    Path("config/sub/lr.yaml").write_text(VARIANT)
    for ours, theirs in (("config/lr.yaml", "config/sub/lr.yaml"), ("config/sub/lr.yaml", "config/lr.yaml")):
        with pytest.raises(BsrError, match=f"^{ours} and {theirs} are both named 'lr'"):
            plan_checks(load_pipeline(ours), ours)


def test_a_work_folder_records_its_config_and_refuses_another_whatever_files_exist(tiny_project):
    from bsr.variants import claim_folders

    # a variant outside config/, with a data_dir of its own, has run (claimed its folders) ...
    Path("elsewhere").mkdir()
    Path("elsewhere/v.yaml").write_text("extends: config/tiny.yaml\ndata_dir: data/x\n")
    claim_folders(load_pipeline("elsewhere/v.yaml"), "elsewhere/v.yaml")
    assert Path("data/x/.bsr-config").read_text().startswith("config: elsewhere/v.yaml\n")
    assert Path("reports/v/.bsr-config").read_text().startswith("config: elsewhere/v.yaml\n")
    assert not Path("data/tiny/.bsr-config").exists()  # its parent's folders are the parent's to claim
    # ... so a config that no scan of config/ finds it beside is refused its data_dir, and another its report
    tiny = yaml.safe_load(Path("config/tiny.yaml").read_text())
    Path("config/x.yaml").write_text(yaml.safe_dump({**tiny, "name": "x", "data_dir": "data/x"}))
    with pytest.raises(BsrError, match=r"^data/x: holds the outputs of elsewhere/v.yaml \(data/x/.bsr-config\); "
                                       r"config/x.yaml may not write there: give it a data_dir of its own"):
        plan_checks(load_pipeline("config/x.yaml"), "config/x.yaml")
    Path("config/v.yaml").write_text("extends: config/tiny.yaml\ndata_dir: data/v\n")
    with pytest.raises(BsrError, match=r"^reports/v: holds the outputs of elsewhere/v.yaml"):
        plan_checks(load_pipeline("config/v.yaml"), "config/v.yaml")
    Path("config/v.yaml").unlink()
    Path("config/x.yaml").unlink()
    plan_checks(load_pipeline("elsewhere/v.yaml"), "elsewhere/v.yaml")  # its owner's run goes on


def test_a_variant_of_a_copy_outside_the_project_may_not_retrain_the_runs_of_the_config_that_owns_them(
        tiny_project, tmp_path_factory):
    from bsr.variants import claim_folders

    outside = tmp_path_factory.mktemp("outside") / "tiny.yaml"
    shutil.copy("config/tiny.yaml", outside)  # the same name and data_dir, named by another file
    Path("config/tiny_lr.yaml").write_text(VARIANT.replace("config/tiny.yaml", str(outside)))
    variant = load_pipeline("config/tiny_lr.yaml")
    with pytest.raises(BsrError, match=f"^{outside} \\(extended by config/tiny_lr.yaml\\) and config/tiny.yaml "
                                       "would both write data/tiny/"):
        plan_checks(variant, "config/tiny_lr.yaml")
    claim_folders(load_pipeline("config/tiny.yaml"), "config/tiny.yaml")
    Path("config/tiny.yaml").unlink()  # no scan finds it now: its record in data/tiny does
    with pytest.raises(BsrError, match=f"^data/tiny: holds the outputs of config/tiny.yaml .*; {outside} may not "
                                       "write there"):
        plan_checks(variant, "config/tiny_lr.yaml")


def test_snakemake_records_the_config_that_runs_and_refuses_another_in_its_folders(tmp_path, shared_data):
    project = tiny_snakemake_project(tmp_path, shared_data)
    assert "Set5" in snakemake(project, "-n", "data/tiny/hr/Set5", "--configfile", "config/tiny.yaml").stdout
    assert not (project / "data" / "tiny" / ".bsr-config").exists()  # a dry run claims nothing
    snakemake(project, "data/tiny/hr/Set5", "--cores", "1", "--configfile", "config/tiny.yaml")
    assert (project / "data/tiny/.bsr-config").read_text().startswith("config: config/tiny.yaml\n")
    assert (project / "reports/bsr-tiny/.bsr-config").read_text().startswith("config: config/tiny.yaml\n")
    (project / "config" / "tiny.yaml").rename(project / "config" / "renamed.yaml")
    result = snakemake(project, "-n", "all", "--configfile", "config/renamed.yaml", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "bsr: error: data/tiny: holds the outputs of config/tiny.yaml (data/tiny/.bsr-config); config/renamed.yaml "
        "may not write there")


def test_a_variant_with_its_own_data_dir_may_change_a_dataset_and_shares_nothing(tmp_path, shared_data):
    project = tiny_snakemake_project(tmp_path, shared_data)
    t91 = sorted(p.name for p in (shared_data / "T91" / "HR").iterdir())[8:14]
    (project / "config" / "tiny_t91.yaml").write_text(
        f"extends: config/tiny.yaml\ndata_dir: data/tiny_t91\ndatasets:\n  T91: {{files: {t91}, images: 6}}\n")
    planned = snakemake(project, "-n", "-p", "all", "--configfile", "config/tiny_t91.yaml").stdout
    counts = job_counts(planned)
    assert counts["download"] == 2 and counts["train"] == 4 and counts["evaluate"] == 4
    assert "data/tiny/" not in planned and "--config config/tiny.yaml" not in planned


def offline_study_recipe() -> str:
    """The README's offline copy of the study, as written there."""
    text = (REPO / "README.md").read_text()
    return textwrap.dedent(re.search(r"```yaml\n( *# config/study_offline.yaml\n.*?\n) *```", text, re.S)[1])


def test_the_readmes_offline_study_recipe_plans_as_written(tmp_path, shared_data):
    project = project_copy(tmp_path / "project")
    recipe = offline_study_recipe().replace("/path/to/shared/data", str(shared_data))
    (project / "config" / "study_offline.yaml").write_text(recipe)
    planned = snakemake(project, "-n", "-p", "all", "--configfile", "config/study_offline.yaml").stdout
    assert job_counts(planned)["train"] == 15 and job_counts(planned)["download"] == 5
    downloads = [line for line in planned.splitlines() if line.startswith("Shell command: bsr download")]
    assert len(downloads) == 5 and all("--source file://" in line and "--subdir" not in line for line in downloads)
    assert "data/study/" not in planned
    # and the downloads run offline, from the local folders
    sets = {"T91": 91, "BSD200": 200, "Set5": 5, "Set14": 14, "BSD100": 100}
    snakemake(project, *(f"data/study_offline/hr/{name}" for name in sets), "--cores", "2",
              "--configfile", "config/study_offline.yaml")
    for name, images in sets.items():
        assert len([f for f in (project / "data/study_offline/hr" / name).iterdir() if f.suffix != ".bsr-output"
                    and not f.name.startswith(".")]) == images


@pytest.mark.parametrize("files, error", [
    ({"a": "extends: config/b.yaml\n", "b": "extends: config/a.yaml\n", "c": "extends: config/b.yaml\n"},
     r"^config/c.yaml: extends: config/b.yaml → config/a.yaml → config/b.yaml is a cycle$"),
    ({"c": "extends: config/tiny.yaml\nextends: config/demo.yaml\n"},
     r"^config/c.yaml: line 2: a second 'extends' key \(the first is on line 1\)"),
    ({"c": "extends: config/tiny.yaml\nexperiments:\n  BD_x3: {train: {lr: 1.0e-4}}\n  BD_x3: {}\n"},
     r"^config/c.yaml: line 4: a second 'BD_x3' key \(the first is on line 3\)"),
])
def test_a_cycle_of_extends_and_a_duplicate_key_are_refused_by_name(tiny_project, files, error):
    for name, text in files.items():
        Path(f"config/{name}.yaml").write_text(text)
    with pytest.raises(BsrError, match=error):
        load_pipeline("config/c.yaml")


def test_dvc_yaml_of_a_variant_writes_its_parents_and_refuses_a_stale_one(tiny_project):
    from bsr.cli import build_parser, cmd_dvc_yaml, main

    assert main(["dvc-yaml", "--config", "config/tiny_lr.yaml"]) == 0
    assert Path("config/tiny/dvc.yaml").read_text() == dvc_yaml(load_pipeline("config/tiny.yaml"), "config/tiny.yaml")
    assert Path("config/tiny_lr/dvc.yaml").is_file()
    Path("config/tiny/dvc.yaml").write_text("stages: {}\n")
    with pytest.raises(BsrError, match=r"^config/tiny/dvc.yaml: not what config/tiny.yaml gives, which "
                                       r"config/tiny_lr.yaml's stages depend on: regenerate it with `bsr dvc-yaml "
                                       r"--config config/tiny.yaml`"):
        cmd_dvc_yaml(build_parser().parse_args(["dvc-yaml", "--config", "config/tiny_lr.yaml"]))


def test_a_replicate_name_collision_names_the_file_and_keys(tiny_project):
    Path("config/v.yaml").write_text("extends: config/tiny.yaml\nexperiments:\n  BI_x2: {replicates: 2}\n"
                                     "  BI_x2-r1: {scale: 2, degradation: BI}\n")
    with pytest.raises(BsrError, match=r"^config/v.yaml: experiments.BI_x2-r1: is the name of replicate 1 of "
                                       r"experiments.BI_x2 \(replicates: 2\)"):
        load_pipeline("config/v.yaml")


def test_an_extends_chain_is_read_once_per_load_and_its_depth_capped(tiny_project, monkeypatch):
    from bsr import variants

    previous = "config/tiny.yaml"
    for depth in range(1, variants.MAX_EXTENDS + 2):
        Path(f"config/d{depth}.yaml").write_text(f"extends: {previous}\nexperiments:\n  BD_x3: {{train: "
                                                 f"{{lr: {depth}.0e-5}}}}\n")
        previous = f"config/d{depth}.yaml"
    reads = []
    real_load_yaml = variants.load_yaml
    monkeypatch.setattr(variants, "load_yaml", lambda path: reads.append(str(path)) or real_load_yaml(path))
    deepest = f"config/d{variants.MAX_EXTENDS}.yaml"
    cfg = load_pipeline(deepest)
    assert len(stages.lineage(cfg, deepest)) == variants.MAX_EXTENDS + 1
    assert sorted(reads) == sorted(set(reads)) and len(reads) == variants.MAX_EXTENDS + 1
    with pytest.raises(BsrError, match=f"^config/d{variants.MAX_EXTENDS + 1}.yaml: extends: more than "
                                       f"{variants.MAX_EXTENDS} configs deep"):
        load_pipeline(f"config/d{variants.MAX_EXTENDS + 1}.yaml")
