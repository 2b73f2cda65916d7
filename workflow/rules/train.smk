from bsr.config import resolve_experiment

EXPERIMENT_CONFIG = stages.rule_job(config, CONFIG_PATH, "experiment_config")
EXPERIMENT_CONFIG_OUT, EXPERIMENT_CONFIG_LOG = stages.rule_paths(config, "experiment_config")
TRAIN = stages.rule_job(config, CONFIG_PATH, "train")
TRAIN_OUT, TRAIN_LOG = stages.rule_paths(config, "train")


rule experiment_config:
    output:
        EXPERIMENT_CONFIG_OUT["config"],
    log:
        EXPERIMENT_CONFIG_LOG,
    params:
        cmd=lambda w: EXPERIMENT_CONFIG(w).command,
        # The resolved experiment is a param, so that changing any of it reruns this job, and so training.
        # (A variant's shared job is its parent's: the parent's resolution, MLflow names included.)
        resolved=lambda w: resolve_experiment(
            stages.rule_config(config, CONFIG_PATH, "experiment_config", dict(w.items()))[0], w.experiment
        ),
    conda:
        ENV
    shell:
        JOB_SHELL


rule train:
    input:
        unpack(lambda w: TRAIN(w).inputs),
    output:
        **TRAIN_OUT,
    log:
        TRAIN_LOG,
    params:
        cmd=lambda w: TRAIN(w).command,
    threads: lambda w: TRAIN(w).resources["threads"]
    resources:
        gpu=lambda w: TRAIN(w).resources["gpu"],
        mem_mb=lambda w: TRAIN(w).resources["mem_mb"],
        runtime=lambda w: TRAIN(w).resources["runtime"],
    conda:
        ENV
    shell:
        JOB_SHELL
