from bsr.config import resolve_experiment, write_experiment


rule experiment_config:
    output:
        layout.experiment_config(D, "{experiment}"),
    params:
        # The resolved config is the rule's params, so that changing any of it reruns training.
        resolved=lambda w: resolve_experiment(config, w.experiment),
    run:
        write_experiment(params.resolved, output[0])


def train_inputs(w):
    data = resolve_experiment(config, w.experiment)["data"]
    return {
        "config": layout.experiment_config(D, w.experiment),
        "lr": data["train_lr"],
        "pic": data["train_pic"],
        "val_hr": data["val_hr"],
        "val_lr": data["val_lr"],
    }


TRAIN_RESOURCES = config.get("resources", {}).get("train", {})


rule train:
    input:
        unpack(train_inputs),
    output:
        model=layout.run_file(D, "{experiment}", layout.RUN_MODEL),
        summary=layout.run_file(D, "{experiment}", layout.RUN_SUMMARY),
        metrics=layout.run_file(D, "{experiment}", layout.RUN_METRICS),
    params:
        run_dir=lambda w: layout.run_dir(D, w.experiment),
        launcher=lambda w: plan.train_launcher(config, w.experiment),
    threads: TRAIN_RESOURCES.get("threads", 4)
    resources:
        gpu=lambda w: plan.train_gpus(config, w.experiment),
        mem_mb=TRAIN_RESOURCES.get("mem_mb", 16000),
        runtime=TRAIN_RESOURCES.get("runtime", 1440),
    log:
        f"{D}/logs/train/{{experiment}}.log",
    shell:
        # The checkpoint is not a declared output, so a killed job resumes where it stopped.
        "{params.launcher} train --config {input.config} --out {params.run_dir} --resume auto 2> {log}"
