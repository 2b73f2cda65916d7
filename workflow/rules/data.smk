import sys

from bsr.download import manual_problems

# A manual dataset's download job fetches nothing, it only checks the files the user placed (its log says so):
# say now, before any job runs, what that check will find missing.
for problem in manual_problems(config):
    print(f"WARNING: {problem}", file=sys.stderr)

DOWNLOAD = stages.rule_job(config, CONFIG_PATH, "download")
DOWNLOAD_OUT, DOWNLOAD_LOG = stages.rule_paths(config, "download")


rule download:
    output:
        directory(DOWNLOAD_OUT["hr"]),
    log:
        DOWNLOAD_LOG,
    params:
        cmd=lambda w: DOWNLOAD(w).command,
    conda:
        ENV
    shell:
        JOB_SHELL
