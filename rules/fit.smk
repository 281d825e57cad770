"""Stage 5: fit the test scans. Implicit methods: new codes, network frozen (`fit`, a group
of scans per job).
Mesh-kind methods: one step from the scan to the reconstructed mesh (`fit_mesh`)."""


rule fit:
    """One job per fit group (`fit.group`: a scan, a subject's scans, or all), fitted as
    one batched problem; one codes file per scan."""
    input:
        model=f"{DATA}/models/{{method}}/model.pt",
        samples=lambda w: scan_files(f"{DATA}/samples/{{subject}}/{{expression}}.npz",
                                     fit_group(w)),
        views=lambda w: view_inputs(w.method, fit_group(w)).get("cameras", []),
        transforms=lambda w: view_inputs(w.method, fit_group(w)).get("transforms", []),
    output:
        group_outputs("fits", ".pt"),
    wildcard_constraints:
        method=IMPLICIT_METHODS,
    priority: NETWORK_PRIORITY
    params:
        config=lambda w: stage_config("method", *TRAINING_SECTIONS, "fit", method=w.method),
        views=lambda w, input: view_args(input),
        device=CFG.device,
    conda:
        "../envs/torch.yaml"
    log:
        f"{DATA}/logs/fit/{{method}}/{FIT_JOB}.log",
    benchmark:
        f"{DATA}/benchmarks/fit/{{method}}/{FIT_JOB}.tsv"
    shell:
        "python -m facerecon.fit --config {params.config:q} --model {input.model:q}"
        " --samples {input.samples:q} {params.views} --out {output:q}"
        " --device {params.device}"
        " --threads {threads} > {log:q} 2>&1"


rule fit_mesh:
    input:
        target=f"{DATA}/preprocessed/{{subject}}/{{expression}}.ply",
        train=scan_files(f"{DATA}/preprocessed/{{subject}}/{{expression}}.ply", TRAIN_SCANS),
        landmarks=f"{DATA}/preprocessed/{{subject}}/{{expression}}.landmarks.txt",
        train_landmarks=scan_files(
            f"{DATA}/preprocessed/{{subject}}/{{expression}}.landmarks.txt", TRAIN_SCANS),
        model_file=lambda w: getattr(METHOD_CFG[w.method].model, "model_file", "") or [],
    output:
        f"{DATA}/meshes/{{method}}/{{subject}}/{{expression}}.ply",
    wildcard_constraints:
        method=MESH_METHODS,
    params:
        config=lambda w: stage_config("method", "model", "preprocess", method=w.method),
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/fit_mesh/{{method}}/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/fit_mesh/{{method}}/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.fit_mesh --config {params.config:q} --target {input.target:q}"
        " --train {input.train:q} --landmarks {input.landmarks:q}"
        " --train-landmarks {input.train_landmarks:q} --out {output:q} > {log:q} 2>&1"
