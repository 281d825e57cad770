"""Stage 2: rigid alignment, sphere crop, pseudo-watertight sheet (also the ground truth)."""


rule preprocess:
    input:
        scan=f"{DATA}/raw/{{subject}}/models_reg/{{expression}}.obj",
        landmarks=f"{DATA}/raw/{{subject}}/models_reg/{{expression}}.landmarks.txt",
    output:
        mesh=f"{DATA}/preprocessed/{{subject}}/{{expression}}.ply",
        landmarks=f"{DATA}/preprocessed/{{subject}}/{{expression}}.landmarks.txt",
        transform=f"{DATA}/preprocessed/{{subject}}/{{expression}}.json",
    params:
        p=CFG.preprocess,
        template=f"--template {CFG.preprocess.template}" if CFG.preprocess.template else "",
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/preprocess/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/preprocess/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.preprocess --scan {input.scan} --landmarks {input.landmarks}"
        " --out-mesh {output.mesh} --out-landmarks {output.landmarks}"
        " --out-transform {output.transform} --radius-mm {params.p.radius_mm}"
        " --offset-mm {params.p.offset_mm} --align {params.p.align} {params.template}"
        " > {log} 2>&1"
