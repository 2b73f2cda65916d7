DEGRADE = stages.rule_job(config, CONFIG_PATH, "degrade")
DEGRADE_OUT, DEGRADE_LOG = stages.rule_paths(config, "degrade")


rule degrade:
    input:
        unpack(lambda w: DEGRADE(w).inputs),
    output:
        directory(DEGRADE_OUT["lr"]),
    log:
        DEGRADE_LOG,
    params:
        cmd=lambda w: DEGRADE(w).command,
    conda:
        ENV
    shell:
        JOB_SHELL
