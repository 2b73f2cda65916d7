REPORT = stages.rule_job(config, CONFIG_PATH, "report")
REPORT_OUT, REPORT_LOG = stages.rule_paths(config, "report")


rule report:
    input:
        unpack(lambda w: REPORT(w).inputs),
    output:
        tables_md=REPORT_OUT["tables_md"],
        tables_tex=REPORT_OUT["tables_tex"],
        tables_standalone=REPORT_OUT["tables_standalone"],
        changes=REPORT_OUT["changes"],
        tables_html=report(REPORT_OUT["tables_html"], caption="../report/tables.rst", category="Tables"),
        curves=report(REPORT_OUT["training_curves"], caption="../report/curves.rst", category="Training"),
        comparisons=[
            report(path, caption="../report/compare.rst", category="Visual comparison")
            for key, path in REPORT_OUT.items()
            if key.startswith("compare_")
        ],
        # the pic stage's histograms, copied (Snakemake's report takes them from the pic rule)
        pics=[path for key, path in REPORT_OUT.items() if key.startswith("pic_")],
    log:
        REPORT_LOG,
    params:
        cmd=lambda w: REPORT(w).command,
    conda:
        ENV
    shell:
        JOB_SHELL
