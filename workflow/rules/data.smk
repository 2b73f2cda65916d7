rule download:
    output:
        directory(layout.hr_dir(D, "{dataset}")),
    params:
        args=lambda w: plan.download_args(config, w.dataset),
    log:
        f"{D}/logs/download/{{dataset}}.log",
    shell:
        "bsr download {params.args} --lock {D}/datasets.lock --cache {D}/downloads --out {output} 2> {log}"
