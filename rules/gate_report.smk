"""Gate report of the local-expert methods: does each landmark region get its own expert?
(gate statistics on the fitted test scans, a figure, a JSON summary and a per-scan CSV)."""


#: Implicit methods with local experts (a gating network): the only ones with gates to read.
EXPERT_METHOD_NAMES = [m for m, cfg in METHOD_CFG.items()
                       if cfg.kind == "implicit" and cfg.ablation_flags["local_experts"]]
EXPERT_METHODS = names_regex(EXPERT_METHOD_NAMES)


rule gate_report:
    input:
        model=f"{DATA}/models/{{method}}/model.pt",
        fits=lambda w: scan_files(
            f"{DATA}/fits/{{method}}/{{subject}}/{{expression}}.pt", TEST_SCANS,
            method=w.method),
        samples=scan_files(f"{DATA}/samples/{{subject}}/{{expression}}.npz", TEST_SCANS),
        views=lambda w: view_inputs(w.method, TEST_SCANS).get("cameras", []),
        transforms=lambda w: view_inputs(w.method, TEST_SCANS).get("transforms", []),
    output:
        png=report(f"{DATA}/figures/experts_{{method}}.png",
                   caption="../workflow/report/experts.rst", category="Experts"),
        pdf=f"{DATA}/figures/experts_{{method}}.pdf",
        json=f"{DATA}/figures/experts_{{method}}.json",
        csv=f"{DATA}/figures/experts_{{method}}.csv",
    wildcard_constraints:
        method=EXPERT_METHODS,
    params:
        config=lambda w: stage_config("method", method=w.method),
        views=lambda w, input: view_args(input),
        device=CFG.device,
    conda:
        "../envs/torch.yaml"
    log:
        f"{DATA}/logs/gate_report/{{method}}.log",
    benchmark:
        f"{DATA}/benchmarks/gate_report/{{method}}.tsv"
    shell:
        "python -m facerecon.gate_report --config {params.config:q} --model {input.model:q}"
        " --fits {input.fits:q} --samples {input.samples:q} {params.views}"
        " --out-json {output.json:q} --out-csv {output.csv:q} --out-png {output.png:q}"
        " --device {params.device} --threads {threads} > {log:q} 2>&1"
