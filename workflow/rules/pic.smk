PIC = stages.rule_job(config, CONFIG_PATH, "pic")
PIC_OUT, PIC_LOG = stages.rule_paths(config, "pic")


rule pic:
    input:
        unpack(lambda w: PIC(w).inputs),
    output:
        tables=directory(PIC_OUT["tables"]),
        plot=report(PIC_OUT["plot"], caption="../report/pic.rst", category="PIC balance"),
    log:
        PIC_LOG,
    params:
        cmd=lambda w: PIC(w).command,
    conda:
        ENV
    shell:
        JOB_SHELL
