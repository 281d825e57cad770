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
    # One thread each: a second thread speeds a demo-sized training up only 1.3x, so two
    # trainings side by side finish sooner; `--set-threads train=N` gives one run more.
    threads: 1
    priority: NETWORK_PRIORITY
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
