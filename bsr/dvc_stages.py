"""`bsr dvc-yaml`: dvc.yaml generated from a pipeline config, job for job the same DAG as the Snakemake rules
(both come from bsr.plan), so that the experiment matrix is never copied by hand.

Each stage names exactly the config keys it depends on, so that `dvc repro` reruns only what a change
touches: a training setting reruns train, evaluate and report, not the data stages.
"""
from __future__ import annotations

import yaml

from bsr import layout, plan
from bsr.config import resolve_experiment
from bsr.report import TABLE_FILES

TRAIN_KEYS = ("name", "tracking_uri", "data_dir", "train_sets", "val_set", "defaults.model", "defaults.loss",
              "defaults.sampling", "defaults.train")


def stage_name(*parts) -> str:
    return "_".join(str(p) for p in parts)


def dvc_stages(cfg: dict, config_path: str, report_dir: str = "reports") -> dict:
    d = cfg["data_dir"]
    lock, cache = f"{d}/datasets.lock", f"{d}/downloads"
    stages = {}
    for dataset in cfg["datasets"]:
        stages[stage_name("download", dataset)] = {
            "cmd": f"bsr download {plan.download_args(cfg, dataset)} --lock {lock} --cache {cache} "
                   f"--out {layout.hr_dir(d, dataset)}",
            "params": [{config_path: [f"datasets.{dataset}"]}],
            "outs": [layout.hr_dir(d, dataset)],
        }
    for dataset, kind, scale in plan.degrade_jobs(cfg):
        lr = layout.lr_dir(d, dataset, kind, scale)
        stages[stage_name("degrade", dataset, layout.degradation_tag(kind, scale))] = {
            "cmd": f"bsr degrade --hr {layout.hr_dir(d, dataset)} --out {lr} --scale {scale} --kind {kind}",
            "deps": [layout.hr_dir(d, dataset)],
            "outs": [lr],
        }
    patch = cfg["defaults"]["sampling"]["patch"]
    for dataset, kind, scale, reduce in plan.pic_jobs(cfg):
        lr, tables = layout.lr_dir(d, dataset, kind, scale), layout.pic_dir(d, dataset, kind, scale, reduce)
        figure = plan.pic_figure(report_dir, dataset, kind, scale, reduce)
        stages[stage_name("pic", dataset, layout.degradation_tag(kind, scale), reduce)] = {
            "cmd": f"bsr pic --lr {lr} --out {tables} --reduce {reduce} --plot {figure} --patch {patch}",
            "deps": [lr],
            "params": [{config_path: ["defaults.sampling.patch"]}],
            "outs": [tables, figure],
        }
    for name in cfg["experiments"]:
        data, run = resolve_experiment(cfg, name)["data"], layout.run_dir(d, name)
        stages[stage_name("train", name)] = {
            "cmd": f"{plan.train_launcher(cfg, name)} train --config {config_path} --experiment {name} --out {run} "
                   "--resume auto",
            "deps": [*data["train_lr"], *data["train_pic"], data["val_hr"], data["val_lr"]],
            "params": [{config_path: [*TRAIN_KEYS, *(["registry"] if "registry" in cfg else []),
                                      f"experiments.{name}",
                                      *([f"bases.{cfg['experiments'][name]['base']}"]
                                        if "base" in cfg["experiments"][name] else [])]}],
            "outs": [layout.run_file(d, name, f) for f in (layout.RUN_MODEL, layout.RUN_SUMMARY, layout.RUN_METRICS)],
        }
    for name, dataset in plan.evaluate_jobs(cfg):
        kind, scale = plan.experiment_degradation(cfg, name)
        out = layout.eval_json(d, name, dataset)
        hr, lr = layout.hr_dir(d, dataset), layout.lr_dir(d, dataset, kind, scale)
        stages[stage_name("evaluate", name, dataset)] = {
            "cmd": f"bsr evaluate --run {layout.run_dir(d, name)} --hr {hr} --lr {lr} --dataset {dataset} "
                   f"--out {out} --sample {layout.sample_png(out)}",
            "deps": [layout.run_file(d, name, layout.RUN_MODEL), layout.run_file(d, name, layout.RUN_SUMMARY), hr, lr],
            "outs": [out, layout.scores_csv(out), layout.sample_png(out)],
        }
    for dataset, kind, scale in plan.bicubic_jobs(cfg):
        out = layout.bicubic_json(d, dataset, kind, scale)
        stages[stage_name("bicubic", dataset, layout.degradation_tag(kind, scale))] = {
            "cmd": f"bsr eval-bicubic --hr {layout.hr_dir(d, dataset)} --scale {scale} --kind {kind} --out {out}",
            "deps": [layout.hr_dir(d, dataset)],
            "outs": [out, layout.scores_csv(out)],
        }
    inputs = plan.report_inputs(cfg)
    figures = plan.figure_paths(report_dir, cfg)
    stages["report"] = {
        "cmd": f"bsr report --config {config_path} --out {report_dir}",
        "deps": [path for paths in inputs.values() for path in paths],
        "params": [{config_path: ["name", "val_set", "test_sets", "experiments",
                                  *(["bases"] if cfg.get("bases") else [])]}],
        "outs": [*(f"{report_dir}/{name}" for name in TABLE_FILES),
                 *[p for k, p in figures.items() if not k.startswith("pic_")]],
    }
    return stages


def dvc_yaml(cfg: dict, config_path: str) -> str:
    header = (f"# Generated by `bsr dvc-yaml --config {config_path}` from the config: do not edit by hand.\n"
              "# Regenerate after changing the config's datasets or experiments.\n")
    return header + yaml.safe_dump({"stages": dvc_stages(cfg, config_path)}, sort_keys=False, width=120)
