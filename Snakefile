"""BSR reproduction: download -> degrade -> pic -> train -> evaluate / bicubic -> report.

Default config: the paper run (config/config.yaml). `--configfile FILE` replaces it (it is not merged into
it). Every rule calls a `bsr` verb or function; the jobs come from bsr.plan, derived from the config alone.
"""
from snakemake.utils import min_version

import sys

from bsr import BsrError, layout, plan
from bsr.config import check_config_files

min_version("9.0")

if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


# The schema is bsr/schemas/config.schema.yaml (workflow/schemas/ links to it); errors name the key.
try:
    check_config_files(config, workflow.configfiles)
except BsrError as err:
    sys.exit(f"bsr: error: {err}")  # one line, not Snakemake's stack of bsr's frames

if workflow.non_local_exec and workflow.global_resources.get("gpu").value is not None:
    # Usually profiles/default (the one-GPU machine), which Snakemake loads beside --profile profiles/slurm.
    print(f"WARNING: --resources gpu={workflow.global_resources.get('gpu').value} limits the GPU jobs running at "
          "once on the whole cluster; pass --workflow-profile none to lift it (README, Cluster)", file=sys.stderr)

D = config["data_dir"]
REPORTS = "reports"


# Jobs that need no compute node run on the submitting host under a cluster executor: downloads need the
# internet, which compute nodes often lack; the others only write a few small files.
localrules:
    all,
    download,
    experiment_config,
    report,


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    experiment="[A-Za-z0-9_-]+",
    kind="BI|BD",
    scale="[0-9]+",
    reduce="sum|max",


rule all:
    default_target: True
    input:
        f"{REPORTS}/tables.md",
        f"{REPORTS}/tables.tex",
        plan.figure_paths(REPORTS, config).values(),


include: "workflow/rules/data.smk"
include: "workflow/rules/degrade.smk"
include: "workflow/rules/pic.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
