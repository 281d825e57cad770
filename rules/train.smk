"""Stage 4: train each implicit method's network and codes on the training scans."""


rule train:
    input:
        samples=scan_files(f"{DATA}/samples/{{subject}}/{{expression}}.npz", TRAIN_SCANS),
        views=lambda w: view_inputs(w.method, TRAIN_SCANS).get("cameras", []),
        transforms=lambda w: view_inputs(w.method, TRAIN_SCANS).get("transforms", []),
    output:
        model=f"{DATA}/models/{{method}}/model.pt",
        log_csv=f"{DATA}/models/{{method}}/train_log.csv",
    wildcard_constraints:
        method=IMPLICIT_METHODS,
    params:
        config=lambda w: stage_config("method", *TRAINING_SECTIONS, method=w.method),
        views=lambda w, input: view_args(input),
        device=CFG.device,
    threads: 2
    conda:
        "../envs/torch.yaml"
    log:
        f"{DATA}/logs/train/{{method}}.log",
    benchmark:
        f"{DATA}/benchmarks/train/{{method}}.tsv"
    shell:
        "python -m facerecon.train --config {params.config:q} --samples {input.samples:q}"
        " {params.views} --out {output.model:q} --log-csv {output.log_csv:q}"
        " --device {params.device}"
        " --threads {threads} > {log:q} 2>&1"
