"""The stage table: every job of the pipeline, described once, from the config and bsr.layout alone.

A job is one record: its stage (the Snakemake rule), its wildcards, the `bsr` argument list, its inputs,
outputs and log, its resources, and the config keys it reads. The Snakemake rules (workflow/rules/*.smk) and
dvc.yaml (bsr.dvc_stages) only serialise these records, so the two engines run the same commands on the same
files, and the experiment matrix is written down once, in the config.

Outputs and logs depend on a job's wildcards alone (Snakemake matches files against them), so `paths` also
gives the rules their patterns: called with "{dataset}" for a wildcard, it returns the pattern.
"""
from __future__ import annotations

import glob
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from bsr import RESIZE_CONVENTION, BsrError, layout
from bsr.config import (experiment_entry, experiment_test_sets, published_entries, published_entry,
                        resolve_experiment, run_names, split_run)

# The rules, in the order the data flows through them, and their wildcards.
STAGES = {"download": ("dataset",), "degrade": ("dataset", "kind", "scale"),
          "pic": ("dataset", "kind", "scale", "reduce"), "experiment_config": ("experiment",),
          "train": ("experiment",), "evaluate": ("experiment", "dataset"),
          "evaluate_self_ensemble": ("experiment", "dataset"), "aggregate": ("experiment",),
          "bicubic": ("dataset", "kind", "scale"), "published": ("method", "dataset", "kind", "scale"),
          "score": ("method", "dataset", "kind", "scale"), "report": ()}
# The stages whose outputs lie in the config's work folder (its data_dir, or a variant's own folder: bsr.variants),
# which Snakemake's patterns give as the wildcard {root}: a variant's DAG holds its parent's runs and its own.
WORK_STAGES = ("experiment_config", "train", "evaluate", "evaluate_self_ensemble", "aggregate")
# The outputs that are folders (Snakemake's directory()).
FOLDERS = {"download": ("hr",), "degrade": ("lr",), "pic": ("tables",), "published": ("sr",)}
# Per training job when the config's resources.train does not say.
TRAIN_RESOURCES = {"threads": 4, "mem_mb": 16000, "runtime": 1440}


@dataclass(frozen=True)
class Job:
    stage: str
    wildcards: dict[str, str]
    args: list[str]  # the command line, never joined but by `command`
    inputs: dict[str, str | list[str]]
    outputs: dict[str, str]
    log: str
    keys: list[str] = field(default_factory=list)  # config keys read, besides the files in `inputs`
    resources: dict[str, int] = field(default_factory=dict)
    config: str = ""  # the config file whose record this is: a variant's parent's, for a job the two share

    @property
    def name(self) -> str:
        """The DVC stage name, e.g. degrade_Set5_BIx2."""
        return "_".join([self.stage, *wildcard_tags(self.wildcards)])

    @property
    def command(self) -> str:
        return shlex.join(self.args)

    @property
    def input_paths(self) -> list[str]:
        """The inputs as one list (a named input may be a list of paths)."""
        return [p for value in self.inputs.values() for p in ([value] if isinstance(value, str) else value)]


def wildcard_tags(wildcards: dict[str, str]) -> list[str]:
    """The wildcard values as names show them: kind and scale as one tag (BIx2)."""
    return [layout.degradation_tag(value, wildcards["scale"]) if key == "kind" else value
            for key, value in wildcards.items() if key not in ("scale", "root")]


def job_key(stage: str, w: dict) -> tuple:
    """A job's identity: its stage and wildcard values (as strings, as Snakemake gives them)."""
    return stage, tuple((name, str(w[name])) for name in STAGES[stage])


# ---- whose job: a variant shares its parent's records of the work they have in common -----------------------

def owner(cfg: dict, config_path: str, stage: str, w: dict) -> tuple[dict, str]:
    """The config (and its file) whose record a job is: a variant's parent's (or further up) for a shared job."""
    while "_variant" in cfg and job_key(stage, w) in cfg["_variant"]["shared"]:
        cfg, config_path = cfg["_variant"]["parent"], cfg["_variant"]["parent_path"]
    return cfg, config_path


def work_dir(cfg: dict) -> str:
    """Where a config's own runs, evaluations and logs go: its data_dir, or a variant's own folder in it."""
    return cfg["_variant"]["work_dir"] if "_variant" in cfg else cfg["data_dir"]


def lineage(cfg: dict, config_path: str) -> list[tuple[dict, str]]:
    """(config, file) of a config and of each config it extends, itself first."""
    chain = [(cfg, config_path)]
    while "_variant" in cfg:
        cfg, config_path = cfg["_variant"]["parent"], cfg["_variant"]["parent_path"]
        chain.append((cfg, config_path))
    return chain


def sharing_lineage(cfg: dict, config_path: str) -> list[tuple[dict, str]]:
    """(config, file) of a config and of each config it extends whose jobs its DAG holds, itself first: up the
    chain while each shares its parent's data_dir (a variant with a data_dir of its own shares nothing)."""
    chain = lineage(cfg, config_path)
    shares = [c["data_dir"] == parent["data_dir"] for (c, _), (parent, _) in zip(chain, chain[1:])]
    return chain[:shares.index(False) + 1] if False in shares else chain


def work_roots(cfg: dict) -> list[str]:
    """The work folders of a config's DAG: its own and those of the configs it extends that it shares jobs with."""
    return list(dict.fromkeys(work_dir(c) for c, _ in sharing_lineage(cfg, "")))


def job_root(cfg: dict, stage: str, w: dict) -> str:
    """The work folder of a job of a work stage: its owner's."""
    return work_dir(owner(cfg, "", stage, w)[0])


def run_root(cfg: dict, run: str) -> str:
    return job_root(cfg, "train", {"experiment": run})


def eval_root(cfg: dict, run: str, dataset: str, self_ensemble: bool = False) -> str:
    return job_root(cfg, "evaluate_self_ensemble" if self_ensemble else "evaluate",
                    {"experiment": run, "dataset": dataset})


def eval_path(cfg: dict, run: str, dataset: str, self_ensemble: bool = False) -> str:
    """The summary JSON of a run's evaluation on a test set, wherever its job writes it."""
    return layout.eval_json(eval_root(cfg, run, dataset, self_ensemble), run, dataset, self_ensemble)


def run_path(cfg: dict, run: str, name: str) -> str:
    """A file of a training run (layout.RUN_*), wherever its job writes it."""
    return layout.run_file(run_root(cfg, run), run, name)


def replicates_path(cfg: dict, experiment: str) -> str:
    return layout.replicates_json(job_root(cfg, "aggregate", {"experiment": experiment}), experiment)


# ---- which jobs the config asks for ---------------------------------------------------------------------

def experiment_degradation(cfg: dict, name: str) -> tuple[str, int]:
    """Of an experiment, or of a replicate run of one."""
    exp = cfg["experiments"][split_run(cfg, name)[0]]
    return exp["degradation"], exp["scale"]


def runs(cfg: dict) -> list[str]:
    """Every training run: each experiment's replicates, replicate 0 (the experiment itself) first."""
    return [run for name in cfg["experiments"] for run in run_names(cfg, name)]


def degrade_jobs(cfg: dict) -> list[tuple[str, str, int]]:
    """(dataset, kind, scale) for every LR set some experiment trains, validates or tests on."""
    return list(dict.fromkeys((dataset, *experiment_degradation(cfg, name)) for name in cfg["experiments"]
                              for dataset in [*cfg["train_sets"], cfg["val_set"], *experiment_test_sets(cfg, name)]))


def pic_jobs(cfg: dict) -> list[tuple[str, str, int, str]]:
    """(train set, kind, scale, reduce) for every PIC table set some experiment samples from."""
    return list(dict.fromkeys((dataset, *experiment_degradation(cfg, name),
                               resolve_experiment(cfg, name)["sampling"]["pic_reduce"])
                              for name in cfg["experiments"] for dataset in cfg["train_sets"]))


def bicubic_jobs(cfg: dict) -> list[tuple[str, str, int]]:
    return list(dict.fromkeys((dataset, *experiment_degradation(cfg, name)) for name, dataset in evaluate_jobs(cfg)))


def evaluate_jobs(cfg: dict) -> list[tuple[str, str]]:
    """(experiment, dataset) of every experiment's test sets; its replicates are `run_evaluate_jobs`."""
    return [(name, dataset) for name in cfg["experiments"] for dataset in experiment_test_sets(cfg, name)]


def run_evaluate_jobs(cfg: dict, evaluations=evaluate_jobs) -> list[tuple[str, str]]:
    """(run, dataset) of every evaluation in `evaluations` (experiment, dataset), for each replicate run."""
    return [(run, dataset) for name, dataset in evaluations(cfg) for run in run_names(cfg, name)]


def self_ensemble_jobs(cfg: dict) -> list[tuple[str, str]]:
    """The evaluations also scored as the ×8 self-ensemble ("+"): those of experiments with self_ensemble: true."""
    return [(name, dataset) for name, dataset in evaluate_jobs(cfg)
            if experiment_entry(cfg, name).get("self_ensemble")]


def aggregate_jobs(cfg: dict) -> list[str]:
    """The experiments with replicates (N >= 2), whose evaluations `bsr aggregate` summarises in MLflow."""
    return [name for name in cfg["experiments"] if len(run_names(cfg, name)) > 1]


def comparison_jobs(cfg: dict) -> list[tuple[str, str]]:
    """(experiment, dataset): the first experiment scored on each test set at each degradation and scale."""
    jobs = {}
    for name, dataset in evaluate_jobs(cfg):
        jobs.setdefault((dataset, *experiment_degradation(cfg, name)), (name, dataset))
    return list(jobs.values())


def figure_paths(cfg: dict) -> dict[str, str]:
    report_dir = layout.report_dir(cfg["name"])
    figures = {"training_curves": f"{report_dir}/figures/training_curves.png"}
    for dataset, kind, scale, reduce in pic_jobs(cfg):
        figures[f"pic_{dataset}_{kind}x{scale}_{reduce}"] = pic_figure(report_dir, dataset, kind, scale, reduce)
    for name, dataset in comparison_jobs(cfg):
        kind, scale = experiment_degradation(cfg, name)
        figures[f"compare_{dataset}_{kind}x{scale}"] = comparison_figure(report_dir, dataset, kind, scale)
    return figures


def targets(cfg: dict) -> list[str]:
    """What a whole run makes: the report, every figure, and the summaries of experiments with replicates."""
    return list(dict.fromkeys([*paths(cfg, "report", {})[0].values(), *figure_paths(cfg).values(),
                               *(replicates_path(cfg, name) for name in aggregate_jobs(cfg))]))


def pic_figure(report_dir: str, dataset: str, kind: str, scale, reduce: str) -> str:
    return f"{report_dir}/figures/pic_{dataset}_{layout.degradation_tag(kind, scale)}-{reduce}.png"


def comparison_figure(report_dir: str, dataset: str, kind: str, scale) -> str:
    return f"{report_dir}/figures/compare_{dataset}_{layout.degradation_tag(kind, scale)}.png"


def report_inputs(cfg: dict, config_path: str) -> dict[str, list[str]]:
    """Every file the report reads, by kind: all it reads (bsr.report takes its paths from here)."""
    d = cfg["data_dir"]
    evaluations = [eval_path(cfg, e, s) for e, s in run_evaluate_jobs(cfg)]
    evaluations += [eval_path(cfg, e, s, self_ensemble=True) for e, s in run_evaluate_jobs(cfg, self_ensemble_jobs)]
    bicubic = [layout.bicubic_json(d, *job) for job in bicubic_jobs(cfg)]
    return {
        # which config the report is of
        "config": [config_path],
        # what it differs from: a variant's parent (and the files that one extends), else the paper's config
        "compared_with": lineage_files(cfg) or ([] if layout.is_paper_config(config_path) else [layout.PAPER_CONFIG]),
        "evaluations": evaluations,
        # the per-image scores beside every summary: the confidence intervals and win counts resample them
        "scores": [layout.scores_csv(p) for p in evaluations + bicubic],
        "bicubic": bicubic,
        # the visual comparisons: each set's first HR image, its bicubic and its super-resolved sample
        "samples": [layout.sample_png(eval_path(cfg, e, s)) for e, s in evaluate_jobs(cfg)]
                   + [layout.sample_png(p) for p in bicubic],
        "hr": [layout.hr_dir(d, s) for s in dict.fromkeys(s for _, s in evaluate_jobs(cfg))],
        "metrics": [run_path(cfg, e, layout.RUN_METRICS) for e in cfg["experiments"]],
        # our scores of methods' released outputs (config published:), beside their cells in Tables 2-3
        "rescored": [p for job in published_entries(cfg) for p in (layout.rescored_json(d, *job),
                                                                   layout.scores_csv(layout.rescored_json(d, *job)))],
        # the PIC histograms, which the report copies into its figures
        "pic_plots": [f"{layout.pic_dir(d, *job)}.png" for job in pic_jobs(cfg)],
        # train.json records the iterations a run trained, which say whether its numbers can mean anything
        "trainings": [run_path(cfg, e, layout.RUN_SUMMARY) for e in cfg["experiments"]],
        # a variant's report says what moved from its parent: the parent's evaluations of the same experiments
        "parent_evaluations": parent_evaluations(cfg),
    }


def lineage_files(cfg: dict) -> list[str]:
    """The config files a variant extends, its parent first; none for a config that extends nothing."""
    return [path for _, path in lineage(cfg, "")[1:]]


def moved_cells(cfg: dict) -> list[tuple[str, str, bool]]:
    """(experiment, test set, self-ensemble) that a variant and its parent both score, from runs of their own:
    the cells of "What moved". A cell is its replicates' mean, so it moved unless every replicate's evaluation
    is the same file on both sides (a variant that adds a seed moves it, though replicate 0 is shared). None for
    a variant with a data_dir of its own, which shares nothing: its DAG holds none of its parent's jobs."""
    if len(sharing_lineage(cfg, "")) == 1:
        return []
    parent, cells = cfg["_variant"]["parent"], []
    for plus, evaluations in ((False, evaluate_jobs), (True, self_ensemble_jobs)):
        theirs = set(evaluations(parent))
        cells += [(name, dataset, plus) for name, dataset in evaluations(cfg) if (name, dataset) in theirs
                  and [eval_path(cfg, run, dataset, plus) for run in run_names(cfg, name)]
                  != [eval_path(parent, run, dataset, plus) for run in run_names(parent, name)]]
    return cells


def parent_evaluations(cfg: dict) -> list[str]:
    """The parent's side of "What moved": its evaluations (every replicate's) and their per-image scores, but
    for those of replicates the variant shares, which its own evaluations list already."""
    if "_variant" not in cfg:
        return []
    parent = cfg["_variant"]["parent"]
    own = {eval_path(cfg, run, dataset, plus) for name, dataset, plus in moved_cells(cfg)
           for run in run_names(cfg, name)}
    paths = [path for name, dataset, plus in moved_cells(cfg) for run in run_names(parent, name)
             if (path := eval_path(parent, run, dataset, plus)) not in own]
    return paths + [layout.scores_csv(p) for p in paths]


def aggregate_inputs(cfg: dict, name: str) -> dict[str, list[str]]:
    """What `bsr aggregate` reads of an experiment: each replicate's training summary (its MLflow run) and its
    evaluations (plain and ×8) on every test set."""
    sets = experiment_test_sets(cfg, name)
    plus = [True] if experiment_entry(cfg, name).get("self_ensemble") else []
    return {"trainings": [run_path(cfg, run, layout.RUN_SUMMARY) for run in run_names(cfg, name)],
            "evaluations": [eval_path(cfg, run, dataset, ensemble) for run in run_names(cfg, name)
                            for dataset in sets for ensemble in [False, *plus]]}


# ---- one job --------------------------------------------------------------------------------------------

def paths(cfg: dict, stage: str, w: dict[str, str]) -> tuple[dict[str, str], str]:
    """A job's outputs and its log, from its wildcards alone (placeholders such as "{dataset}" give patterns)."""
    d, reports = cfg["data_dir"], layout.report_dir(cfg["name"])
    if stage in WORK_STAGES:
        d = w.get("root") or job_root(cfg, stage, w)
    elif stage == "report":  # its log too is the config's own, not its parent's
        d = work_dir(cfg)
    if stage == "download":
        outputs = {"hr": layout.hr_dir(d, w["dataset"])}
    elif stage == "degrade":
        outputs = {"lr": layout.lr_dir(d, w["dataset"], w["kind"], w["scale"])}
    elif stage == "pic":
        tables = layout.pic_dir(d, w["dataset"], w["kind"], w["scale"], w["reduce"])
        # beside the tables, as they are shared by a config's variants; each report copies it into its figures
        outputs = {"tables": tables, "plot": f"{tables}.png"}
    elif stage == "experiment_config":
        outputs = {"config": layout.experiment_config(d, w["experiment"])}
    elif stage == "train":
        outputs = {key: layout.run_file(d, w["experiment"], name)
                   for key, name in (("model", layout.RUN_MODEL), ("model_record", layout.RUN_MODEL_RECORD),
                                     ("summary", layout.RUN_SUMMARY),
                                     ("metrics", layout.RUN_METRICS))}
    elif stage in ("evaluate", "evaluate_self_ensemble", "bicubic"):
        summary = layout.bicubic_json(d, w["dataset"], w["kind"], w["scale"]) if stage == "bicubic" else \
            layout.eval_json(d, w["experiment"], w["dataset"], self_ensemble=stage != "evaluate")
        outputs = {"summary": summary, "scores": layout.scores_csv(summary), "sample": layout.sample_png(summary)}
    elif stage == "aggregate":
        outputs = {"summary": layout.replicates_json(d, w["experiment"])}
    elif stage == "published":
        outputs = {"sr": layout.published_dir(d, w["method"], w["dataset"], w["kind"], w["scale"])}
    elif stage == "score":
        summary = layout.rescored_json(d, w["method"], w["dataset"], w["kind"], w["scale"])
        outputs = {"summary": summary, "scores": layout.scores_csv(summary)}
    elif stage == "report":
        outputs = layout.report_tables(reports) | {"changes": layout.report_changes(reports)} | figure_paths(cfg)
    else:
        raise BsrError(f"no stage {stage!r} (have: {', '.join(STAGES)})")
    return outputs, f"{d}/logs/{stage}/{'_'.join(wildcard_tags(w)) or stage}.log"


def job(cfg: dict, config_path: str, stage: str, w: dict) -> Job:
    """The job of `stage` with wildcards `w` (values as strings, as Snakemake gives them)."""
    w = {key: str(w[key]) for key in STAGES[stage]}
    cfg_owner, path_owner = owner(cfg, config_path, stage, w)
    if cfg_owner is not cfg:
        return job(cfg_owner, path_owner, stage, w)
    outputs, log = paths(cfg, stage, w)
    d, inputs, keys, resources = cfg["data_dir"], {}, [], {}
    if stage == "download":
        args = ["bsr", "download", *download_args(cfg, w["dataset"]), "--lock", f"{d}/datasets.lock",
                "--cache", f"{d}/downloads", "--out", outputs["hr"]]
        keys = [f"datasets.{w['dataset']}"]
    elif stage == "degrade":
        inputs = {"hr": layout.hr_dir(d, w["dataset"])}
        args = ["bsr", "degrade", "--hr", inputs["hr"], "--out", outputs["lr"], "--scale", w["scale"],
                "--kind", w["kind"], "--convention", RESIZE_CONVENTION]
    elif stage == "pic":
        inputs = {"lr": layout.lr_dir(d, w["dataset"], w["kind"], w["scale"])}
        args = ["bsr", "pic", "--lr", inputs["lr"], "--out", outputs["tables"], "--reduce", w["reduce"],
                "--plot", outputs["plot"], "--patch", str(cfg["defaults"]["sampling"]["patch"])]
        keys = ["defaults.sampling.patch"]
    elif stage == "experiment_config":
        resolve_experiment(cfg, w["experiment"], keys=keys)
        args = ["bsr", "experiment-config", "--config", config_path, "--experiment", w["experiment"],
                "--out", outputs["config"]]
    elif stage == "train":
        resolved = resolve_experiment(cfg, w["experiment"])
        data = resolved["data"]
        inputs = {"config": layout.experiment_config(job_root(cfg, stage, w), w["experiment"]), "lr": data["train_lr"],
                  "pic": data["train_pic"], "val_hr": data["val_hr"], "val_lr": data["val_lr"]}
        gpus = resolved["train"]["gpus"]
        # torchrun starts one `bsr` per GPU; bsr.train runs DDP under it
        launcher = ["bsr"] if gpus == 1 else ["torchrun", "--standalone", "--nproc-per-node", str(gpus),
                                              "--no-python", "bsr"]
        # The checkpoint is not a declared output, so a killed job resumes where it stopped.
        args = [*launcher, "train", "--config", inputs["config"], "--out", layout.run_dir(job_root(cfg, stage, w), w["experiment"]),
                "--resume", "auto"]
        resources = TRAIN_RESOURCES | cfg.get("resources", {}).get("train", {})
        resources["gpu"] = 0 if resolved["train"]["device"] == "cpu" else gpus
    elif stage in ("evaluate", "evaluate_self_ensemble"):
        kind, scale = experiment_degradation(cfg, w["experiment"])
        run = run_root(cfg, w["experiment"])  # a variant's own evaluation may score a run it shares
        inputs = {"model": layout.run_file(run, w["experiment"], layout.RUN_MODEL),
                  "model_record": layout.run_file(run, w["experiment"], layout.RUN_MODEL_RECORD),
                  "summary": layout.run_file(run, w["experiment"], layout.RUN_SUMMARY),
                  # Snakemake does not rebuild a missing model for an evaluation that looks up to date: a
                  # training killed after its outputs were deleted would leave the old tables in place. The
                  # experiment file, rewritten whenever the experiment changes, makes the evaluation rerun.
                  "experiment": layout.experiment_config(run, w["experiment"]),
                  "hr": layout.hr_dir(d, w["dataset"]), "lr": layout.lr_dir(d, w["dataset"], kind, scale)}
        # Evaluation runs where its experiment trains: on the CPU for device: cpu, else on a GPU if there is one,
        # which it reserves, as training does (gpu=1 under profiles/default, sbatch --gpus=1 under SLURM).
        cpu = resolve_experiment(cfg, w["experiment"])["train"]["device"] == "cpu"
        args = ["bsr", "evaluate", "--run", layout.run_dir(run, w["experiment"]), "--hr", inputs["hr"],
                "--lr", inputs["lr"], "--dataset", w["dataset"], "--out", outputs["summary"],
                "--sample", outputs["sample"], *(["--self-ensemble"] if stage != "evaluate" else []),
                *(["--device", "cpu"] if cpu else [])]
        resources = {"gpu": 0 if cpu else 1}
    elif stage == "bicubic":
        inputs = {"hr": layout.hr_dir(d, w["dataset"])}
        args = ["bsr", "eval-bicubic", "--hr", inputs["hr"], "--scale", w["scale"], "--kind", w["kind"],
                "--convention", RESIZE_CONVENTION, "--out", outputs["summary"], "--sample", outputs["sample"]]
    elif stage == "published":  # a download: the released images, counted like the test set's
        entry = published_entry(cfg, w["method"], w["dataset"], w["kind"], w["scale"])
        spec = {**entry, "images": cfg["datasets"][w["dataset"]]["images"]}
        name = f"published-{w['method']}-{w['dataset']}-{layout.degradation_tag(w['kind'], w['scale'])}"
        args = ["bsr", "download", *source_args(cfg, name, spec), "--lock", f"{d}/datasets.lock",
                "--cache", f"{d}/downloads", "--out", outputs["sr"]]
        keys = [f"published.{w['method']}"]
    elif stage == "score":
        entry = published_entry(cfg, w["method"], w["dataset"], w["kind"], w["scale"])
        inputs = {"sr": layout.published_dir(d, w["method"], w["dataset"], w["kind"], w["scale"]),
                  "hr": layout.hr_dir(d, w["dataset"])}
        args = ["bsr", "score", "--sr", inputs["sr"], "--hr", inputs["hr"], "--scale", w["scale"], "--kind",
                w["kind"], "--match", entry.get("match", "{stem}"), "--dataset", w["dataset"], "--method",
                w["method"], "--out", outputs["summary"]]
        keys = [f"published.{w['method']}"]
    elif stage == "aggregate":
        inputs = aggregate_inputs(cfg, w["experiment"])
        args = ["bsr", "aggregate", "--config", config_path, "--experiment", w["experiment"],
                "--out", outputs["summary"]]
        keys = [f"experiments.{w['experiment']}", *(["defaults.replicates"] if "replicates" in cfg["defaults"] else [])]
    else:  # report
        inputs = report_inputs(cfg, config_path)
        args = ["bsr", "report", "--config", config_path, "--out", layout.report_dir(cfg["name"])]
    return Job(stage, w, args, inputs, outputs, log, keys, resources, config_path)


def job_matrix(cfg: dict) -> dict[str, list[dict[str, str]]]:
    """The wildcards of every job of the pipeline, by stage."""
    matrix = {
        "download": [(s,) for s in cfg["datasets"]],
        "degrade": degrade_jobs(cfg),
        "pic": pic_jobs(cfg),
        "experiment_config": [(run,) for run in runs(cfg)],
        "train": [(run,) for run in runs(cfg)],
        "evaluate": run_evaluate_jobs(cfg),
        "evaluate_self_ensemble": run_evaluate_jobs(cfg, self_ensemble_jobs),
        "aggregate": [(name,) for name in aggregate_jobs(cfg)],
        "bicubic": bicubic_jobs(cfg),
        "published": published_entries(cfg),
        "score": published_entries(cfg),
        "report": [()],
    }
    return {stage: [{name: str(value) for name, value in zip(STAGES[stage], values)} for values in matrix[stage]]
            for stage in STAGES}


def jobs(cfg: dict, config_path: str) -> list[Job]:
    """Every job of the pipeline, in the order the data flows."""
    table = [job(cfg, config_path, stage, w) for stage, wildcards in job_matrix(cfg).items() for w in wildcards]
    names = [j.name for j in table]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:  # e.g. experiment A_B on set C and experiment A on set B_C
        raise BsrError(f"{config_path}: jobs {', '.join(clashes)} would share a name (and a log): rename an experiment or "
                       "a dataset")
    return table


def gpu_here() -> bool:
    """Whether this machine has a GPU that torch could use: NVIDIA's device files, or ROCm's. Looked up without
    importing torch, which would add seconds to every Snakemake start."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or Path("/dev/kfd").exists()


def cpu_training_warning(cfg: dict) -> str | None:
    """Said at plan time on a machine without a GPU, when trainings would fall back to the CPU (device: auto)
    or fail (device: cuda): forgetting `--configfile config/demo.yaml` would start the paper's trainings on a
    CPU, for days."""
    on_gpu = {run: resolve_experiment(cfg, run)["train"] for run in runs(cfg)}
    on_gpu = {name: t for name, t in on_gpu.items() if t["device"] != "cpu"}
    if not on_gpu or gpu_here():
        return None
    most = max(t["iterations"] for t in on_gpu.values())
    return (f"no GPU on this machine: {len(on_gpu)} training(s) of this config ask for one (train.device auto or "
            f"cuda) and would train on the CPU here (auto; cuda fails), up to {most:,} iterations each. For the "
            f"CPU demo, pass --configfile config/demo.yaml; a cluster's GPU nodes run them under profiles/slurm")


def download_args(cfg: dict, dataset: str) -> list[str]:
    """The `bsr download` arguments describing one dataset of the config."""
    return source_args(cfg, dataset, cfg["datasets"][dataset])


def source_args(cfg: dict, name: str, spec: dict) -> list[str]:
    """The `bsr download` arguments of a dataset's (or released outputs') spec, recorded under `name` in
    datasets.lock. `source: manual` becomes manual://<layout.manual_dir>, the folder where the user puts them."""
    source = spec["source"]
    if source == "manual":
        source = "manual://" + quote(layout.manual_dir(cfg["data_dir"], name))
    args = ["--name", name, "--source", source, "--images", str(spec["images"])]
    if spec.get("subdir"):
        args += ["--subdir", spec["subdir"]]
    if spec.get("files"):
        args += ["--files", *spec["files"]]
    if spec.get("sha256"):
        args += ["--sha256", spec["sha256"]]
    if spec.get("max_bytes"):
        args += ["--max-bytes", str(spec["max_bytes"])]
    return args


# ---- Snakemake's side: the rules call these with their wildcards ----------------------------------------

def rule_paths(cfg: dict, stage: str) -> tuple[dict[str, str], str]:
    """A rule's output patterns and log pattern."""
    return paths(cfg, stage, {name: f"{{{name}}}" for name in (*STAGES[stage], "root")})


def rule_config(cfg: dict, config_path: str, stage: str, w: dict) -> tuple[dict, str]:
    """The config (and file) whose job a rule's wildcards name. A variant's DAG holds jobs of the configs it
    extends too (the parent's side of "What moved"): a work stage's is that of the config whose work folder
    `root` is, or of the config that one shares the job with."""
    if stage not in WORK_STAGES:
        return owner(cfg, config_path, stage, w)
    for c, path in lineage(cfg, config_path):
        if work_dir(c) == w["root"] and job_root(c, stage, w) == w["root"]:
            return c, path
    raise BsrError(f"{stage} {w}: no job of {config_path} or of the configs it extends writes in {w['root']}")


def rule_job(cfg: dict, config_path: str, stage: str):
    """A function of a rule's wildcards giving its job. Snakemake calls it for the input, the command and each
    resource of every job: each job is built once (a training's resolves and validates its experiment)."""
    built = {}

    def job_of(wildcards):
        key = tuple(wildcards.items())
        if key not in built:
            built[key] = job(*rule_config(cfg, config_path, stage, dict(key)), stage, dict(key))
        return built[key]
    return job_of
