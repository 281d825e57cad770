"""Stage 1: the raw scans in FaceScape's layout (mm, +z front, +y up) with 68 landmarks."""


rule synthetic_scan:
    output:
        scan=f"{DATA}/raw/{{subject}}/models_reg/{{expression}}.obj",
        landmarks=f"{DATA}/raw/{{subject}}/models_reg/{{expression}}.landmarks.txt",
    params:
        # the dataset root: three folders above <subject>/models_reg/<scan>.obj
        root=lambda w, output: Path(output.scan).parents[2],
        subjects=CFG.synthetic.subjects,
        seed=CFG.synthetic.seed,
        number=lambda w: expression_number(w.expression),
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/synthetic_scan/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/synthetic_scan/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.data.synthetic --out {params.root} --subjects {params.subjects}"
        " --seed {params.seed} --only {wildcards.subject} --expressions {params.number}"
        " > {log} 2>&1"
