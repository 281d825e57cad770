"""Stage 3: SDF samples (surface points with normals, space points with exact SDF)."""


rule sample:
    input:
        mesh=f"{DATA}/preprocessed/{{subject}}/{{expression}}.ply",
        landmarks=f"{DATA}/preprocessed/{{subject}}/{{expression}}.landmarks.txt",
    output:
        f"{DATA}/samples/{{subject}}/{{expression}}.npz",
    params:
        config=stage_config("preprocess", "sampling"),
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/sample/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/sample/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.sample --config {params.config:q} --mesh {input.mesh:q}"
        " --landmarks {input.landmarks:q} --out {output:q} --subject {wildcards.subject:q}"
        " --expression {wildcards.expression:q} > {log:q} 2>&1"
