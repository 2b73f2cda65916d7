from bsr.report import write_report


FIGURES = plan.figure_paths(REPORTS, config)


rule report:
    input:
        **plan.report_inputs(config),
    output:
        tables_md=f"{REPORTS}/tables.md",
        tables_tex=f"{REPORTS}/tables.tex",
        tables_standalone=f"{REPORTS}/tables_standalone.tex",
        tables_html=report(f"{REPORTS}/tables.html", caption="../report/tables.rst", category="Tables"),
        curves=report(FIGURES["training_curves"], caption="../report/curves.rst", category="Training"),
        comparisons=[
            report(path, caption="../report/compare.rst", category="Visual comparison")
            for key, path in FIGURES.items()
            if key.startswith("compare_")
        ],
    run:
        write_report(config, REPORTS)
