"""Stage 3: SDF samples (surface points with normals, space points with exact SDF)."""


rule sample:
    input:
        mesh=f"{DATA}/preprocessed/{{subject}}/{{expression}}.ply",
        landmarks=f"{DATA}/preprocessed/{{subject}}/{{expression}}.landmarks.txt",
    output:
        f"{DATA}/samples/{{subject}}/{{expression}}.npz",
    params:
        s=CFG.sampling,
        radius_mm=CFG.preprocess.radius_mm,
        sigmas=" ".join(str(x) for x in CFG.sampling.near_sigma_mm),
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/sample/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/sample/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.sample --mesh {input.mesh} --landmarks {input.landmarks}"
        " --out {output} --subject {wildcards.subject} --expression {wildcards.expression}"
        " --radius-mm {params.radius_mm} --surface-points {params.s.surface_points}"
        " --uniform-points {params.s.uniform_points}"
        " --near-surface-points {params.s.near_surface_points} --near-sigma-mm {params.sigmas}"
        " --seed {params.s.seed} --backend {params.s.backend} > {log} 2>&1"
