import sys

from bsr.download import manual_problems

# A manual dataset's download job fetches nothing, it only checks the files the user placed (its log says so):
# say now, before any job runs, what that check will find missing.
for problem in manual_problems(config):
    print(f"WARNING: {problem}", file=sys.stderr)


rule download:
    output:
        directory(layout.hr_dir(D, "{dataset}")),
    params:
        args=lambda w: plan.download_args(config, w.dataset),
    log:
        f"{D}/logs/download/{{dataset}}.log",
    shell:
        "bsr download {params.args} --lock {D}/datasets.lock --cache {D}/downloads --out {output} 2> {log}"
