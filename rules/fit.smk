"""Stage 5: fit new codes to each test scan with the decoder frozen."""


rule fit:
    input:
        model=f"{DATA}/models/{{method}}/model.pt",
        samples=f"{DATA}/samples/{{subject}}/{{expression}}.npz",
    output:
        f"{DATA}/fits/{{method}}/{{subject}}/{{expression}}.pt",
    params:
        fit=lambda w: json.dumps(dataclasses.asdict(method_config(config, w.method).fit)),
        device=CFG.device,
    conda:
        "../envs/torch.yaml"
    log:
        f"{DATA}/logs/fit/{{method}}/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/fit/{{method}}/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.fit --model {input.model} --samples {input.samples}"
        " --fit-json {params.fit:q} --out {output} --device {params.device}"
        " --threads {threads} > {log} 2>&1"
