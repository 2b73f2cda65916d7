"""The pipeline's jobs, derived from the config alone: the Snakemake rules and the generated dvc.yaml both
read this, so the experiment matrix is written down once (in the config)."""
from __future__ import annotations

from bsr import layout
from bsr.config import experiment_test_sets, resolve_experiment


def experiment_degradation(cfg: dict, name: str) -> tuple[str, int]:
    exp = cfg["experiments"][name]
    return exp["degradation"], exp["scale"]


def train_gpus(cfg: dict, name: str) -> int:
    """The GPUs a training takes: train.gpus, or none for a training configured onto the CPU."""
    train = resolve_experiment(cfg, name)["train"]
    return 0 if train["device"] == "cpu" else train["gpus"]


def train_launcher(cfg: dict, name: str) -> str:
    """`bsr` itself, or torchrun starting one `bsr` per GPU (bsr.train runs DDP under torchrun)."""
    gpus = resolve_experiment(cfg, name)["train"]["gpus"]
    return "bsr" if gpus == 1 else f"torchrun --standalone --nproc-per-node {gpus} --no-python bsr"


def degrade_jobs(cfg: dict) -> list[tuple[str, str, int]]:
    """(dataset, kind, scale) for every LR set some experiment trains, validates or tests on."""
    jobs = []
    for name in cfg["experiments"]:
        kind, scale = experiment_degradation(cfg, name)
        for dataset in [*cfg["train_sets"], cfg["val_set"], *experiment_test_sets(cfg, name)]:
            if (dataset, kind, scale) not in jobs:
                jobs.append((dataset, kind, scale))
    return jobs


def pic_jobs(cfg: dict) -> list[tuple[str, str, int, str]]:
    """(train set, kind, scale, reduce) for every PIC table set some experiment samples from."""
    jobs = []
    for name in cfg["experiments"]:
        kind, scale = experiment_degradation(cfg, name)
        reduce = resolve_experiment(cfg, name)["sampling"]["pic_reduce"]
        for dataset in cfg["train_sets"]:
            if (dataset, kind, scale, reduce) not in jobs:
                jobs.append((dataset, kind, scale, reduce))
    return jobs


def bicubic_jobs(cfg: dict) -> list[tuple[str, str, int]]:
    jobs = []
    for name in cfg["experiments"]:
        kind, scale = experiment_degradation(cfg, name)
        for dataset in experiment_test_sets(cfg, name):
            if (dataset, kind, scale) not in jobs:
                jobs.append((dataset, kind, scale))
    return jobs


def evaluate_jobs(cfg: dict) -> list[tuple[str, str]]:
    return [(name, dataset) for name in cfg["experiments"] for dataset in experiment_test_sets(cfg, name)]


def comparison_jobs(cfg: dict) -> list[tuple[str, str]]:
    """(experiment, dataset): the first experiment scored on each test set at each degradation and scale."""
    jobs = {}
    for name, dataset in evaluate_jobs(cfg):
        jobs.setdefault((dataset, *experiment_degradation(cfg, name)), (name, dataset))
    return list(jobs.values())


def figure_paths(report_dir: str, cfg: dict) -> dict[str, str]:
    figures = {"training_curves": f"{report_dir}/figures/training_curves.png"}
    for dataset, kind, scale, reduce in pic_jobs(cfg):
        figures[f"pic_{dataset}_{kind}x{scale}_{reduce}"] = pic_figure(report_dir, dataset, kind, scale, reduce)
    for name, dataset in comparison_jobs(cfg):
        kind, scale = experiment_degradation(cfg, name)
        figures[f"compare_{dataset}_{kind}x{scale}"] = comparison_figure(report_dir, dataset, kind, scale)
    return figures


def pic_figure(report_dir: str, dataset: str, kind: str, scale, reduce: str) -> str:
    return f"{report_dir}/figures/pic_{dataset}_{layout.degradation_tag(kind, scale)}-{reduce}.png"


def comparison_figure(report_dir: str, dataset: str, kind: str, scale) -> str:
    return f"{report_dir}/figures/compare_{dataset}_{layout.degradation_tag(kind, scale)}.png"


def report_inputs(cfg: dict) -> dict[str, list[str]]:
    """Every file the report reads, by kind."""
    d = cfg["data_dir"]
    evaluations = [layout.eval_json(d, e, s) for e, s in evaluate_jobs(cfg)]
    bicubic = [layout.bicubic_json(d, *job) for job in bicubic_jobs(cfg)]
    return {
        "evaluations": evaluations,
        "samples": [layout.sample_png(p) for p in evaluations],
        "bicubic": bicubic,
        # the per-image scores beside every summary: the confidence intervals and win counts resample them
        "scores": [layout.scores_csv(p) for p in evaluations + bicubic],
        "metrics": [layout.run_file(d, e, layout.RUN_METRICS) for e in cfg["experiments"]],
        # train.json records the iterations a run trained, which say whether its numbers can mean anything
        "trainings": [layout.run_file(d, e, layout.RUN_SUMMARY) for e in cfg["experiments"]],
        "hr": [layout.hr_dir(d, s) for s in dict.fromkeys(s for _, s in evaluate_jobs(cfg))],
    }


def download_args(cfg: dict, dataset: str) -> str:
    """The `bsr download` arguments describing one dataset of the config (shell-quoted). `source: manual` becomes
    manual://<layout.manual_dir>, the folder where the user puts the files."""
    import shlex
    from urllib.parse import quote

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
    return shlex.join(args)
