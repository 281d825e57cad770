"""Stage 7: Chamfer / F-score of each reconstruction against its ground truth: the
pseudo-watertight sheet without its skirt (the visible face, as in ImFace).
One evaluator for every method, whatever its kind."""


rule evaluate:
    input:
        pred=f"{DATA}/meshes/{{method}}/{{subject}}/{{expression}}.ply",
        gt=f"{DATA}/preprocessed/{{subject}}/{{expression}}.face.ply",
        sheet=f"{DATA}/preprocessed/{{subject}}/{{expression}}.ply",
    output:
        f"{DATA}/metrics/{{method}}/{{subject}}/{{expression}}.json",
    params:
        config=stage_config("evaluate"),
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/evaluate/{{method}}/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/evaluate/{{method}}/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.evaluate --config {params.config:q} --pred {input.pred:q}"
        " --gt {input.gt:q} --sheet {input.sheet:q} --out {output:q} > {log:q} 2>&1"
