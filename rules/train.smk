"""Stage 4: train each method's decoder and codes on the training scans."""


rule train:
    input:
        scan_files(f"{DATA}/samples/{{subject}}/{{expression}}.npz", TRAIN_SCANS),
    output:
        model=f"{DATA}/models/{{method}}/model.pt",
        log_csv=f"{DATA}/models/{{method}}/train_log.csv",
    params:
        method=lambda w: method_json(w.method, "model", "loss", "train"),
        device=CFG.device,
    threads: 2
    conda:
        "../envs/torch.yaml"
    log:
        f"{DATA}/logs/train/{{method}}.log",
    benchmark:
        f"{DATA}/benchmarks/train/{{method}}.tsv"
    shell:
        "python -m facerecon.train --samples {input} --method-json {params.method:q}"
        " --out {output.model} --log-csv {output.log_csv} --device {params.device}"
        " --threads {threads} > {log} 2>&1"
