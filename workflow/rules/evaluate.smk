def evaluation_inputs(w):
    kind, scale = plan.experiment_degradation(config, w.experiment)
    return {
        "model": layout.run_file(D, w.experiment, layout.RUN_MODEL),
        "summary": layout.run_file(D, w.experiment, layout.RUN_SUMMARY),
        # Snakemake does not rebuild a missing model for an evaluation that looks up to date: a training
        # killed after its outputs were deleted would leave the old tables in place. The experiment file,
        # rewritten whenever the experiment changes, makes the evaluation (and so the training) rerun.
        "experiment": layout.experiment_config(D, w.experiment),
        "hr": layout.hr_dir(D, w.dataset),
        "lr": layout.lr_dir(D, w.dataset, kind, scale),
    }


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        summary=layout.eval_json(D, "{experiment}", "{dataset}"),
        scores=layout.scores_csv(layout.eval_json(D, "{experiment}", "{dataset}")),
        sample=layout.sample_png(layout.eval_json(D, "{experiment}", "{dataset}")),
    params:
        run_dir=lambda w: layout.run_dir(D, w.experiment),
    log:
        f"{D}/logs/evaluate/{{experiment}}_{{dataset}}.log",
    shell:
        "bsr evaluate --run {params.run_dir} --hr {input.hr} --lr {input.lr} --dataset {wildcards.dataset} "
        "--out {output.summary} --sample {output.sample} > {log} 2>&1"


rule bicubic:
    input:
        layout.hr_dir(D, "{dataset}"),
    output:
        summary=layout.bicubic_json(D, "{dataset}", "{kind}", "{scale}"),
        scores=layout.scores_csv(layout.bicubic_json(D, "{dataset}", "{kind}", "{scale}")),
    log:
        f"{D}/logs/bicubic/{{dataset}}_{{kind}}x{{scale}}.log",
    shell:
        "bsr eval-bicubic --hr {input} --scale {wildcards.scale} --kind {wildcards.kind} "
        "--out {output.summary} > {log} 2>&1"
