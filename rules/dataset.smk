"""Stage 1: the raw scans in FaceScape's layout (mm, +z front, +y up) with 68 landmarks.

Each data source only produces `{DATA}/raw/<subject>/models_reg/<k>_<expression>.obj`
(+ `.landmarks.txt`); the stages after this one never know where scans came from.
A built subject depends only on (seed, subject id), so the builders are asked for
exactly one subject: adding subjects to the config builds the new ones and reruns
nothing already built.
"""

RAW_SCAN = f"{DATA}/raw/{{subject}}/models_reg/{{expression}}.obj"
RAW_LANDMARKS = f"{DATA}/raw/{{subject}}/models_reg/{{expression}}.landmarks.txt"


if CFG.dataset == "synthetic":

    rule synthetic_scan:
        output:
            scan=RAW_SCAN,
            landmarks=RAW_LANDMARKS,
        params:
            # the dataset root: three folders above <subject>/models_reg/<scan>.obj
            root=lambda w, output: Path(output.scan).parents[2],
            seed=CFG.synthetic.seed,
            number=lambda w: expression_number(w.expression),
        conda:
            "../envs/geometry.yaml"
        log:
            f"{DATA}/logs/synthetic_scan/{{subject}}/{{expression}}.log",
        benchmark:
            f"{DATA}/benchmarks/synthetic_scan/{{subject}}/{{expression}}.tsv"
        shell:
            "python -m facerecon.data.synthetic --out {params.root:q}"
            " --subjects {wildcards.subject} --seed {params.seed} --only {wildcards.subject}"
            " --expressions {params.number} > {log:q} 2>&1"


if CFG.dataset == "ict":
    from facerecon.data.ict import PACKAGED_MODEL

    #: The model: the compact one shipped with facerecon when `ict.model` is empty, else the
    #: configured one if it exists, else the full model packed from the download.
    if not CFG.ict.model:
        ICT_MODEL = str(PACKAGED_MODEL)
    elif Path(CFG.ict.model).exists():
        ICT_MODEL = CFG.ict.model
    else:
        ICT_MODEL = f"{DATA}/model/ict_facekit.npz"

    rule ict_download:
        output:
            f"{DATA}/download/ict-facekit.zip",
        params:
            url=CFG.ict.url,
            sha256=f"--sha256 {CFG.ict.sha256}" if CFG.ict.sha256 else "",
        conda:
            "../envs/geometry.yaml"
        log:
            f"{DATA}/logs/ict_download.log",
        benchmark:
            f"{DATA}/benchmarks/ict_download.tsv"
        shell:
            "python -m facerecon.data.download {params.url:q} --out {output:q}"
            " {params.sha256} > {log:q} 2>&1"

    rule ict_pack:
        input:
            f"{DATA}/download/ict-facekit.zip",
        output:
            f"{DATA}/model/ict_facekit.npz",
        conda:
            "../envs/geometry.yaml"
        log:
            f"{DATA}/logs/ict_pack.log",
        benchmark:
            f"{DATA}/benchmarks/ict_pack.tsv"
        shell:
            "python -m facerecon.data.ict pack --archive {input:q} --out {output:q} > {log:q} 2>&1"

    rule ict_scan:
        input:
            model=ICT_MODEL,
        output:
            scan=RAW_SCAN,
            landmarks=RAW_LANDMARKS,
        params:
            root=lambda w, output: Path(output.scan).parents[2],
            seed=CFG.ict.seed,
            number=lambda w: expression_number(w.expression),
        conda:
            "../envs/geometry.yaml"
        log:
            f"{DATA}/logs/ict_scan/{{subject}}/{{expression}}.log",
        benchmark:
            f"{DATA}/benchmarks/ict_scan/{{subject}}/{{expression}}.tsv"
        shell:
            "python -m facerecon.data.ict build --model {input.model:q} --out {params.root:q}"
            " --subjects {wildcards.subject} --seed {params.seed} --only {wildcards.subject}"
            " --expressions {params.number} > {log:q} 2>&1"


if CFG.dataset == "facescape":
    FS = CFG.facescape
    FS_DOWNLOADS = [
        f"{DATA}/downloads/{i}_{Path(url.split('?')[0]).name}" for i, url in enumerate(FS.urls)
    ]

    rule facescape_download:
        output:
            f"{DATA}/downloads/{{index}}_{{name}}",
        wildcard_constraints:
            index=r"\d+",
        conda:
            "../envs/geometry.yaml"
        log:
            f"{DATA}/logs/facescape_download/{{index}}_{{name}}.log",
        benchmark:
            f"{DATA}/benchmarks/facescape_download/{{index}}_{{name}}.tsv"
        run:
            # a run block, not a shell command: per-licence links may carry signatures,
            # and Snakemake prints shell commands; the URL stays out of every log.
            import contextlib

            from facerecon.data.download import download

            i = int(wildcards.index)
            with open(log[0], "w") as log_file, contextlib.redirect_stderr(log_file):
                download(FS.urls[i], output[0], sha256=FS.sha256[i] if FS.sha256 else None,
                         token_env=FS.token_env or None, header_name=FS.header_name)

    for part, scans in (("train", TRAIN_SCANS), ("test", TEST_SCANS)):

        rule:
            name:
                f"facescape_import_{part}"
            input:
                FS.archives + FS_DOWNLOADS,
            output:
                scan_files(RAW_SCAN, scans) + scan_files(RAW_LANDMARKS, scans),
            params:
                root=f"{DATA}/raw",
                subjects=" ".join(sorted({s for s, _ in scans})),
                expressions=" ".join(
                    sorted({str(expression_number(e)) for _, e in scans}, key=int)
                ),
                images=(f"--images {' '.join(shlex.quote(p) for p in FS.images)}"
                        if FS.images else ""),
                limit=FS.max_uncompressed_gb,
            conda:
                "../envs/geometry.yaml"
            log:
                f"{DATA}/logs/facescape_import_{part}.log",
            benchmark:
                f"{DATA}/benchmarks/facescape_import_{part}.tsv"
            shell:
                "python -m facerecon.data.facescape import {input:q} --dest {params.root:q}"
                " --subjects {params.subjects} --expressions {params.expressions}"
                " {params.images} --max-uncompressed-gb {params.limit} > {log:q} 2>&1"
