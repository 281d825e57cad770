"""Stage 6: marching cubes on the fitted SDF of implicit methods, back to millimetres (a fit
group's scans per job)."""


rule mesh:
    """One job per fit group (`fit.group`), the model loaded once; one mesh per scan."""
    input:
        model=f"{DATA}/models/{{method}}/model.pt",
        codes=group_outputs("fits", ".pt"),
        views=lambda w: view_inputs(w.method, fit_group(w)).get("cameras", []),
        transforms=lambda w: view_inputs(w.method, fit_group(w)).get("transforms", []),
    output:
        group_outputs("meshes", ".ply"),
    wildcard_constraints:
        method=IMPLICIT_METHODS,
    priority: NETWORK_PRIORITY
    params:
        config=lambda w: stage_config("method", "mesh", method=w.method),
        views=lambda w, input: view_args(input),
        device=CFG.device,
    conda:
        "../envs/torch.yaml"
    log:
        f"{DATA}/logs/mesh/{{method}}/{FIT_JOB}.log",
    benchmark:
        f"{DATA}/benchmarks/mesh/{{method}}/{FIT_JOB}.tsv"
    shell:
        "python -m facerecon.mesh --config {params.config:q} --model {input.model:q}"
        " --codes {input.codes:q} {params.views} --out {output:q} --device {params.device}"
        " --threads {threads} > {log:q} 2>&1"
