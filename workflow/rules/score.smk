PUBLISHED = stages.rule_job(config, CONFIG_PATH, "published")
PUBLISHED_OUT, PUBLISHED_LOG = stages.rule_paths(config, "published")
SCORE = stages.rule_job(config, CONFIG_PATH, "score")
SCORE_OUT, SCORE_LOG = stages.rule_paths(config, "score")


# A method's released SR outputs (config published:), fetched as a dataset is.
rule published:
    output:
        sr=directory(PUBLISHED_OUT["sr"]),
    log:
        PUBLISHED_LOG,
    params:
        cmd=lambda w: PUBLISHED(w).command,
    conda:
        ENV
    shell:
        JOB_SHELL


# Those outputs scored under our protocol (bsr score), for their cells in Tables 2-3.
rule score:
    input:
        unpack(lambda w: SCORE(w).inputs),
    output:
        **SCORE_OUT,
    log:
        SCORE_LOG,
    params:
        cmd=lambda w: SCORE(w).command,
    conda:
        ENV
    shell:
        JOB_SHELL
