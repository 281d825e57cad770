"""Stage 7: Chamfer / F-score of each reconstruction against its pseudo-watertight ground truth."""


rule evaluate:
    input:
        pred=f"{DATA}/meshes/{{method}}/{{subject}}/{{expression}}.ply",
        gt=f"{DATA}/preprocessed/{{subject}}/{{expression}}.ply",
    output:
        f"{DATA}/metrics/{{method}}/{{subject}}/{{expression}}.json",
    params:
        e=CFG.evaluate,
        icp="" if CFG.evaluate.icp else "--no-icp",
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/evaluate/{{method}}/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/evaluate/{{method}}/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.evaluate --pred {input.pred} --gt {input.gt} --out {output}"
        " --samples {params.e.samples} --seed {params.e.seed}"
        " --threshold-mm {params.e.threshold_mm} {params.icp} > {log} 2>&1"
