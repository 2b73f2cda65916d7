AGGREGATE = stages.rule_job(config, CONFIG_PATH, "aggregate")
AGGREGATE_OUT, AGGREGATE_LOG = stages.rule_paths(config, "aggregate")


# An experiment's replicates (replicates: N >= 2) summarised on its MLflow parent run.
rule aggregate:
    input:
        unpack(lambda w: AGGREGATE(w).inputs),
    output:
        **AGGREGATE_OUT,
    log:
        AGGREGATE_LOG,
    params:
        cmd=lambda w: AGGREGATE(w).command,
    conda:
        ENV
    shell:
        JOB_SHELL
