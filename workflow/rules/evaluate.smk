EVALUATE = stages.rule_job(config, CONFIG_PATH, "evaluate")
EVALUATE_OUT, EVALUATE_LOG = stages.rule_paths(config, "evaluate")
EVALUATE_SELF_ENSEMBLE = stages.rule_job(config, CONFIG_PATH, "evaluate_self_ensemble")
EVALUATE_SELF_ENSEMBLE_OUT, EVALUATE_SELF_ENSEMBLE_LOG = stages.rule_paths(config, "evaluate_self_ensemble")
BICUBIC = stages.rule_job(config, CONFIG_PATH, "bicubic")
BICUBIC_OUT, BICUBIC_LOG = stages.rule_paths(config, "bicubic")


rule evaluate:
    input:
        unpack(lambda w: EVALUATE(w).inputs),
    output:
        **EVALUATE_OUT,
    log:
        EVALUATE_LOG,
    params:
        cmd=lambda w: EVALUATE(w).command,
    resources:
        gpu=lambda w: EVALUATE(w).resources["gpu"],
    conda:
        ENV
    shell:
        JOB_SHELL


# The ×8 self-ensemble ("+") of experiments with self_ensemble: true: the report's "BSR+ (ours)" rows.
rule evaluate_self_ensemble:
    input:
        unpack(lambda w: EVALUATE_SELF_ENSEMBLE(w).inputs),
    output:
        **EVALUATE_SELF_ENSEMBLE_OUT,
    log:
        EVALUATE_SELF_ENSEMBLE_LOG,
    params:
        cmd=lambda w: EVALUATE_SELF_ENSEMBLE(w).command,
    resources:
        gpu=lambda w: EVALUATE_SELF_ENSEMBLE(w).resources["gpu"],
    conda:
        ENV
    shell:
        JOB_SHELL


rule bicubic:
    input:
        unpack(lambda w: BICUBIC(w).inputs),
    output:
        **BICUBIC_OUT,
    log:
        BICUBIC_LOG,
    params:
        cmd=lambda w: BICUBIC(w).command,
    conda:
        ENV
    shell:
        JOB_SHELL
