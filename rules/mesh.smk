"""Stage 6: marching cubes on the fitted SDF, back to millimetres."""


rule mesh:
    input:
        model=f"{DATA}/models/{{method}}/model.pt",
        codes=f"{DATA}/fits/{{method}}/{{subject}}/{{expression}}.pt",
    output:
        f"{DATA}/meshes/{{method}}/{{subject}}/{{expression}}.ply",
    params:
        m=CFG.mesh,
        device=CFG.device,
    conda:
        "../envs/torch.yaml"
    log:
        f"{DATA}/logs/mesh/{{method}}/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/mesh/{{method}}/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.mesh --model {input.model} --codes {input.codes} --out {output}"
        " --resolution {params.m.resolution} --coarse-resolution {params.m.coarse_resolution}"
        " --chunk-points {params.m.chunk_points} --device {params.device}"
        " --threads {threads} > {log} 2>&1"
