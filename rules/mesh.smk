"""Stage 6: marching cubes on the fitted SDF of implicit methods, back to millimetres."""


rule mesh:
    input:
        model=f"{DATA}/models/{{method}}/model.pt",
        codes=f"{DATA}/fits/{{method}}/{{subject}}/{{expression}}.pt",
        views=lambda w: view_inputs(w.method, [(w.subject, w.expression)]).get("cameras", []),
        transforms=lambda w: view_inputs(w.method, [(w.subject, w.expression)]).get(
            "transforms", []),
    output:
        f"{DATA}/meshes/{{method}}/{{subject}}/{{expression}}.ply",
    wildcard_constraints:
        method=IMPLICIT_METHODS,
    params:
        config=lambda w: stage_config("method", "mesh", method=w.method),
        views=lambda w, input: view_args(input),
        device=CFG.device,
    conda:
        "../envs/torch.yaml"
    log:
        f"{DATA}/logs/mesh/{{method}}/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/mesh/{{method}}/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.mesh --config {params.config:q} --model {input.model:q}"
        " --codes {input.codes:q} {params.views} --out {output:q} --device {params.device}"
        " --threads {threads} > {log:q} 2>&1"
