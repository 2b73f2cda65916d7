"""BSR reproduction: download -> degrade -> pic -> experiment_config -> train -> evaluate / bicubic ->
aggregate (experiments with replicates), published -> score (methods' released outputs) -> report.

Default config: the paper run (config/config.yaml). `--configfile FILE` replaces it (it is not merged into
it). Every job is a record of the stage table (bsr.stages), which dvc.yaml serialises too: each rule takes
its inputs, outputs, log, resources and `bsr` command line from there.
"""
from snakemake.utils import min_version

import re
import sys

from bsr import BsrError, layout, stages
from bsr.config import load_pipeline, snakemake_config_path
from bsr.variants import claim_folders, plan_checks

min_version("9.0")

if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


# The jobs read the config file themselves, so the DAG comes from bsr's reading of it too (which refuses a
# shallow `<<` merge that Snakemake's applies silently, and reads 1e-3 as a number). The schema is
# bsr/schemas/config.schema.yaml (workflow/schemas/ links to it); errors name the key.
try:
    CONFIG_PATH = snakemake_config_path(workflow.configfiles, workflow.config_settings.config)
    checked = load_pipeline(CONFIG_PATH)
    plan_checks(checked, CONFIG_PATH)  # no output of another config's is overwritten
    config.clear()
    config.update(checked)
except BsrError as err:
    sys.exit(f"bsr: error: {err}")  # one line, not Snakemake's stack of bsr's frames


onstart:
    # A run (not a dry run) records in its folders that they hold this config's outputs (bsr.variants).
    claim_folders(config, CONFIG_PATH)

if not workflow.non_local_exec and (warning := stages.cpu_training_warning(config)):
    print(f"WARNING: {warning}", file=sys.stderr)

if workflow.non_local_exec and workflow.global_resources.get("gpu").value is not None:
    # Usually profiles/default (the one-GPU machine), which Snakemake loads beside --profile profiles/slurm.
    print(f"WARNING: --resources gpu={workflow.global_resources.get('gpu').value} limits the GPU jobs running at "
          "once on the whole cluster; pass --workflow-profile none to lift it (README, Cluster)", file=sys.stderr)

# Every rule runs its job's command line, its output going to the job's log.
JOB_SHELL = "{params.cmd} > {log:q} 2>&1"
# The software of every rule: the conda mirror of pyproject.toml (used with --software-deployment-method conda).
ENV = "../envs/bsr.yaml"  # relative to the rule files


# Jobs that need no compute node run on the submitting host under a cluster executor: downloads need the
# internet, which compute nodes often lack; the others only write a few small files.
localrules:
    aggregate,
    all,
    download,
    experiment_config,
    published,
    report,


wildcard_constraints:
    # the work folders (runs, evaluations) of this config and of those it extends (bsr.variants)
    root="|".join(re.escape(root) for root in stages.work_roots(config)),
    dataset="[A-Za-z0-9_-]+",
    experiment="[A-Za-z0-9_-]+",
    kind="BI|BD",
    scale="[0-9]+",
    reduce="sum|max",
    method="[A-Za-z0-9_-]+",


rule all:
    default_target: True
    input:
        stages.targets(config),


include: "workflow/rules/data.smk"
include: "workflow/rules/degrade.smk"
include: "workflow/rules/pic.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/report.smk"
