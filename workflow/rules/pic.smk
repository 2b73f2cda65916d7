rule pic:
    input:
        layout.lr_dir(D, "{dataset}", "{kind}", "{scale}"),
    output:
        tables=directory(layout.pic_dir(D, "{dataset}", "{kind}", "{scale}", "{reduce}")),
        plot=report(
            plan.pic_figure(REPORTS, "{dataset}", "{kind}", "{scale}", "{reduce}"),
            caption="../report/pic.rst",
            category="PIC balance",
        ),
    params:
        patch=config["defaults"]["sampling"]["patch"],
    log:
        f"{D}/logs/pic/{{dataset}}_{{kind}}x{{scale}}-{{reduce}}.log",
    shell:
        "bsr pic --lr {input} --out {output.tables} --reduce {wildcards.reduce} "
        "--plot {output.plot} --patch {params.patch} 2> {log}"
