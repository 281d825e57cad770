"""Stage 5: fit each test scan. Implicit methods: new codes, network frozen (`fit`).
Mesh-kind methods: one step from the scan to the reconstructed mesh (`fit_mesh`)."""


rule fit:
    input:
        model=f"{DATA}/models/{{method}}/model.pt",
        samples=f"{DATA}/samples/{{subject}}/{{expression}}.npz",
        views=lambda w: view_inputs(w.method, [(w.subject, w.expression)]).get("cameras", []),
        transforms=lambda w: view_inputs(w.method, [(w.subject, w.expression)]).get(
            "transforms", []),
    output:
        f"{DATA}/fits/{{method}}/{{subject}}/{{expression}}.pt",
    wildcard_constraints:
        method=IMPLICIT_METHODS,
    params:
        config=lambda w: stage_config("method", *TRAINING_SECTIONS, "fit", method=w.method),
        views=lambda w, input: view_args(input),
        device=CFG.device,
    conda:
        "../envs/torch.yaml"
    log:
        f"{DATA}/logs/fit/{{method}}/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/fit/{{method}}/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.fit --config {params.config:q} --model {input.model:q}"
        " --samples {input.samples:q} {params.views} --out {output:q}"
        " --device {params.device}"
        " --threads {threads} > {log:q} 2>&1"


rule fit_mesh:
    input:
        target=f"{DATA}/preprocessed/{{subject}}/{{expression}}.ply",
        train=scan_files(f"{DATA}/preprocessed/{{subject}}/{{expression}}.ply", TRAIN_SCANS),
    output:
        f"{DATA}/meshes/{{method}}/{{subject}}/{{expression}}.ply",
    wildcard_constraints:
        method=MESH_METHODS,
    params:
        config=lambda w: stage_config("method", "model", method=w.method),
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/fit_mesh/{{method}}/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/fit_mesh/{{method}}/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.fit_mesh --config {params.config:q} --target {input.target:q}"
        " --train {input.train:q} --out {output:q} > {log:q} 2>&1"
