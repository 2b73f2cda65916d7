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

from bsr import BsrError, layout
from bsr.config import experiment_entry, experiment_test_sets, resolve_experiment, run_names, split_run

# The rules, in the order the data flows through them, and their wildcards.
STAGES = {"download": ("dataset",), "degrade": ("dataset", "kind", "scale"),
          "pic": ("dataset", "kind", "scale", "reduce"), "experiment_config": ("experiment",),
          "train": ("experiment",), "evaluate": ("experiment", "dataset"),
          "evaluate_self_ensemble": ("experiment", "dataset"), "aggregate": ("experiment",),
          "bicubic": ("dataset", "kind", "scale"), "report": ()}
# The outputs that are folders (Snakemake's directory()).
FOLDERS = {"download": ("hr",), "degrade": ("lr",), "pic": ("tables",)}
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
            for key, value in wildcards.items() if key != "scale"]


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
                               *(layout.replicates_json(cfg["data_dir"], name) for name in aggregate_jobs(cfg))]))


def pic_figure(report_dir: str, dataset: str, kind: str, scale, reduce: str) -> str:
    return f"{report_dir}/figures/pic_{dataset}_{layout.degradation_tag(kind, scale)}-{reduce}.png"


def comparison_figure(report_dir: str, dataset: str, kind: str, scale) -> str:
    return f"{report_dir}/figures/compare_{dataset}_{layout.degradation_tag(kind, scale)}.png"


def report_inputs(cfg: dict, config_path: str) -> dict[str, list[str]]:
    """Every file the report reads, by kind: all it reads (bsr.report takes its paths from here)."""
    d = cfg["data_dir"]
    evaluations = [layout.eval_json(d, e, s) for e, s in run_evaluate_jobs(cfg)]
    evaluations += [layout.eval_json(d, e, s, self_ensemble=True) for e, s in run_evaluate_jobs(cfg, self_ensemble_jobs)]
    bicubic = [layout.bicubic_json(d, *job) for job in bicubic_jobs(cfg)]
    return {
        # which config the report is of, and the paper's, to list where they differ
        "config": [config_path],
        "paper_config": [] if layout.is_paper_config(config_path) else [layout.PAPER_CONFIG],
        "evaluations": evaluations,
        # the per-image scores beside every summary: the confidence intervals and win counts resample them
        "scores": [layout.scores_csv(p) for p in evaluations + bicubic],
        "bicubic": bicubic,
        # the visual comparisons: each set's first HR image, its bicubic and its super-resolved sample
        "samples": [layout.sample_png(layout.eval_json(d, e, s)) for e, s in evaluate_jobs(cfg)]
                   + [layout.sample_png(p) for p in bicubic],
        "hr": [layout.hr_dir(d, s) for s in dict.fromkeys(s for _, s in evaluate_jobs(cfg))],
        "metrics": [layout.run_file(d, e, layout.RUN_METRICS) for e in cfg["experiments"]],
        # train.json records the iterations a run trained, which say whether its numbers can mean anything
        "trainings": [layout.run_file(d, e, layout.RUN_SUMMARY) for e in cfg["experiments"]],
    }


def aggregate_inputs(cfg: dict, name: str) -> dict[str, list[str]]:
    """What `bsr aggregate` reads of an experiment: each replicate's training summary (its MLflow run) and its
    evaluations (plain and ×8) on every test set."""
    d, sets = cfg["data_dir"], experiment_test_sets(cfg, name)
    plus = [True] if experiment_entry(cfg, name).get("self_ensemble") else []
    return {"trainings": [layout.run_file(d, run, layout.RUN_SUMMARY) for run in run_names(cfg, name)],
            "evaluations": [layout.eval_json(d, run, dataset, ensemble) for run in run_names(cfg, name)
                            for dataset in sets for ensemble in [False, *plus]]}


# ---- one job --------------------------------------------------------------------------------------------

def paths(cfg: dict, stage: str, w: dict[str, str]) -> tuple[dict[str, str], str]:
    """A job's outputs and its log, from its wildcards alone (placeholders such as "{dataset}" give patterns)."""
    d, reports = cfg["data_dir"], layout.report_dir(cfg["name"])
    if stage == "download":
        outputs = {"hr": layout.hr_dir(d, w["dataset"])}
    elif stage == "degrade":
        outputs = {"lr": layout.lr_dir(d, w["dataset"], w["kind"], w["scale"])}
    elif stage == "pic":
        outputs = {"tables": layout.pic_dir(d, w["dataset"], w["kind"], w["scale"], w["reduce"]),
                   "plot": pic_figure(reports, w["dataset"], w["kind"], w["scale"], w["reduce"])}
    elif stage == "experiment_config":
        outputs = {"config": layout.experiment_config(d, w["experiment"])}
    elif stage == "train":
        outputs = {key: layout.run_file(d, w["experiment"], name)
                   for key, name in (("model", layout.RUN_MODEL), ("summary", layout.RUN_SUMMARY),
                                     ("metrics", layout.RUN_METRICS))}
    elif stage in ("evaluate", "evaluate_self_ensemble", "bicubic"):
        summary = layout.bicubic_json(d, w["dataset"], w["kind"], w["scale"]) if stage == "bicubic" else \
            layout.eval_json(d, w["experiment"], w["dataset"], self_ensemble=stage != "evaluate")
        outputs = {"summary": summary, "scores": layout.scores_csv(summary), "sample": layout.sample_png(summary)}
    elif stage == "aggregate":
        outputs = {"summary": layout.replicates_json(d, w["experiment"])}
    elif stage == "report":
        outputs = layout.report_tables(reports) | {key: path for key, path in figure_paths(cfg).items()
                                                   if not key.startswith("pic_")}
    else:
        raise BsrError(f"no stage {stage!r} (have: {', '.join(STAGES)})")
    return outputs, f"{d}/logs/{stage}/{'_'.join(wildcard_tags(w)) or stage}.log"


def job(cfg: dict, config_path: str, stage: str, w: dict) -> Job:
    """The job of `stage` with wildcards `w` (values as strings, as Snakemake gives them)."""
    w = {key: str(value) for key, value in w.items()}
    outputs, log = paths(cfg, stage, w)
    d = cfg["data_dir"]
    inputs, keys, resources = {}, [], {}
    if stage == "download":
        args = ["bsr", "download", *download_args(cfg, w["dataset"]), "--lock", f"{d}/datasets.lock",
                "--cache", f"{d}/downloads", "--out", outputs["hr"]]
        keys = [f"datasets.{w['dataset']}"]
    elif stage == "degrade":
        inputs = {"hr": layout.hr_dir(d, w["dataset"])}
        args = ["bsr", "degrade", "--hr", inputs["hr"], "--out", outputs["lr"], "--scale", w["scale"],
                "--kind", w["kind"]]
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
        inputs = {"config": layout.experiment_config(d, w["experiment"]), "lr": data["train_lr"],
                  "pic": data["train_pic"], "val_hr": data["val_hr"], "val_lr": data["val_lr"]}
        gpus = resolved["train"]["gpus"]
        # torchrun starts one `bsr` per GPU; bsr.train runs DDP under it
        launcher = ["bsr"] if gpus == 1 else ["torchrun", "--standalone", "--nproc-per-node", str(gpus),
                                              "--no-python", "bsr"]
        # The checkpoint is not a declared output, so a killed job resumes where it stopped.
        args = [*launcher, "train", "--config", inputs["config"], "--out", layout.run_dir(d, w["experiment"]),
                "--resume", "auto"]
        resources = TRAIN_RESOURCES | cfg.get("resources", {}).get("train", {})
        resources["gpu"] = 0 if resolved["train"]["device"] == "cpu" else gpus
    elif stage in ("evaluate", "evaluate_self_ensemble"):
        kind, scale = experiment_degradation(cfg, w["experiment"])
        inputs = {"model": layout.run_file(d, w["experiment"], layout.RUN_MODEL),
                  "summary": layout.run_file(d, w["experiment"], layout.RUN_SUMMARY),
                  # Snakemake does not rebuild a missing model for an evaluation that looks up to date: a
                  # training killed after its outputs were deleted would leave the old tables in place. The
                  # experiment file, rewritten whenever the experiment changes, makes the evaluation rerun.
                  "experiment": layout.experiment_config(d, w["experiment"]),
                  "hr": layout.hr_dir(d, w["dataset"]), "lr": layout.lr_dir(d, w["dataset"], kind, scale)}
        # Evaluation runs where its experiment trains: on the CPU for device: cpu, else on a GPU if there is one,
        # which it reserves, as training does (gpu=1 under profiles/default, sbatch --gpus=1 under SLURM).
        cpu = resolve_experiment(cfg, w["experiment"])["train"]["device"] == "cpu"
        args = ["bsr", "evaluate", "--run", layout.run_dir(d, w["experiment"]), "--hr", inputs["hr"],
                "--lr", inputs["lr"], "--dataset", w["dataset"], "--out", outputs["summary"],
                "--sample", outputs["sample"], *(["--self-ensemble"] if stage != "evaluate" else []),
                *(["--device", "cpu"] if cpu else [])]
        resources = {"gpu": 0 if cpu else 1}
    elif stage == "bicubic":
        inputs = {"hr": layout.hr_dir(d, w["dataset"])}
        args = ["bsr", "eval-bicubic", "--hr", inputs["hr"], "--scale", w["scale"], "--kind", w["kind"],
                "--out", outputs["summary"], "--sample", outputs["sample"]]
    elif stage == "aggregate":
        inputs = aggregate_inputs(cfg, w["experiment"])
        args = ["bsr", "aggregate", "--config", config_path, "--experiment", w["experiment"],
                "--out", outputs["summary"]]
        keys = [f"experiments.{w['experiment']}", *(["defaults.replicates"] if "replicates" in cfg["defaults"] else [])]
    else:  # report
        inputs = report_inputs(cfg, config_path)
        args = ["bsr", "report", "--config", config_path, "--out", layout.report_dir(cfg["name"])]
    return Job(stage, w, args, inputs, outputs, log, keys, resources)


def jobs(cfg: dict, config_path: str) -> list[Job]:
    """Every job of the pipeline, in the order the data flows."""
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
        "report": [()],
    }
    table = [job(cfg, config_path, stage, dict(zip(names, values)))
             for stage, names in STAGES.items() for values in matrix[stage]]
    names = [j.name for j in table]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:  # e.g. experiment A_B on set C and experiment A on set B_C
        raise BsrError(f"config: jobs {', '.join(clashes)} would share a name (and a log): rename an experiment or "
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
    """The `bsr download` arguments describing one dataset of the config. `source: manual` becomes
    manual://<layout.manual_dir>, the folder where the user puts the files."""
    spec = cfg["datasets"][dataset]
    source = spec["source"]
    if source == "manual":
        source = "manual://" + quote(layout.manual_dir(cfg["data_dir"], dataset))
    args = ["--name", dataset, "--source", source, "--images", str(spec["images"])]
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
    return paths(cfg, stage, {name: f"{{{name}}}" for name in STAGES[stage]})


def rule_job(cfg: dict, config_path: str, stage: str):
    """A function of a rule's wildcards giving its job. Snakemake calls it for the input, the command and each
    resource of every job: each job is built once (a training's resolves and validates its experiment)."""
    built = {}

    def job_of(wildcards):
        key = tuple(wildcards.items())
        if key not in built:
            built[key] = job(cfg, config_path, stage, dict(key))
        return built[key]
    return job_of
