rule degrade:
    input:
        layout.hr_dir(D, "{dataset}"),
    output:
        directory(layout.lr_dir(D, "{dataset}", "{kind}", "{scale}")),
    log:
        f"{D}/logs/degrade/{{dataset}}_{{kind}}x{{scale}}.log",
    shell:
        "bsr degrade --hr {input} --out {output} --scale {wildcards.scale} --kind {wildcards.kind} 2> {log}"
