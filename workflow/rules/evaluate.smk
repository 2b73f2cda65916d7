def evaluation_inputs(w):
    kind, scale = plan.experiment_degradation(config, w.experiment)
    run = layout.run_dir(D, w.experiment)
    return {
        "model": f"{run}/model.pt",
        "summary": f"{run}/train.json",
        "hr": layout.hr_dir(D, w.dataset),
        "lr": layout.lr_dir(D, w.dataset, kind, scale),
    }


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        summary=layout.eval_json(D, "{experiment}", "{dataset}"),
        scores=layout.eval_json(D, "{experiment}", "{dataset}").replace(".json", ".csv"),
        sample=layout.eval_json(D, "{experiment}", "{dataset}").replace(".json", ".png"),
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
        scores=layout.bicubic_json(D, "{dataset}", "{kind}", "{scale}").replace(".json", ".csv"),
    log:
        f"{D}/logs/bicubic/{{dataset}}_{{kind}}x{{scale}}.log",
    shell:
        "bsr eval-bicubic --hr {input} --scale {wildcards.scale} --kind {wildcards.kind} "
        "--out {output.summary} > {log} 2>&1"
