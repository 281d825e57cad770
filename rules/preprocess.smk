"""Stage 2: rigid alignment, sphere crop, pseudo-watertight sheet (with its skirt, for the SDF)
and the evaluation ground truth (the same sheet without the skirt)."""


rule preprocess:
    input:
        scan=f"{DATA}/raw/{{subject}}/models_reg/{{expression}}.obj",
        landmarks=f"{DATA}/raw/{{subject}}/models_reg/{{expression}}.landmarks.txt",
    output:
        mesh=f"{DATA}/preprocessed/{{subject}}/{{expression}}.ply",
        face_mesh=f"{DATA}/preprocessed/{{subject}}/{{expression}}.face.ply",
        landmarks=f"{DATA}/preprocessed/{{subject}}/{{expression}}.landmarks.txt",
        transform=f"{DATA}/preprocessed/{{subject}}/{{expression}}.json",
    params:
        config=stage_config("preprocess"),
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/preprocess/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/preprocess/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.preprocess --config {params.config:q} --scan {input.scan:q}"
        " --landmarks {input.landmarks:q} --out-mesh {output.mesh:q}"
        " --out-face-mesh {output.face_mesh:q}"
        " --out-landmarks {output.landmarks:q} --out-transform {output.transform:q}"
        " > {log:q} 2>&1"
