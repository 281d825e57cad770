"""Image input of the multi-scale branch: per scan a view (FaceScape's most frontal one, or
a render), the aligned 256x256 crop, its 68 2D landmarks and a weak-perspective camera."""


rule prepare_images:
    input:
        scan=f"{DATA}/raw/{{subject}}/models_reg/{{expression}}.obj",
        landmarks=f"{DATA}/raw/{{subject}}/models_reg/{{expression}}.landmarks.txt",
        views=scan_images_dir,
    output:
        crop=f"{DATA}/images/{{subject}}/{{expression}}/crop.png",
        landmarks=f"{DATA}/images/{{subject}}/{{expression}}/landmarks2d.txt",
        camera=f"{DATA}/images/{{subject}}/{{expression}}/camera.json",
    params:
        views=lambda w, input: f"--images-dir {shlex.quote(input.views)}" if input.views else "",
        out_dir=lambda w, output: Path(output.crop).parent,
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/prepare_images/{{subject}}/{{expression}}.log",
    benchmark:
        f"{DATA}/benchmarks/prepare_images/{{subject}}/{{expression}}.tsv"
    shell:
        "python -m facerecon.images.prepare --scan {input.scan:q} --landmarks {input.landmarks:q}"
        " {params.views} --out-dir {params.out_dir:q} > {log:q} 2>&1"


#: Scans shown in the alignment figure: the first expressions of the first test subject.
OVERLAY_SCANS = TEST_SCANS[:4]


rule alignment_figure:
    input:
        cameras=scan_files(f"{DATA}/images/{{subject}}/{{expression}}/camera.json", OVERLAY_SCANS),
        scans=scan_files(f"{DATA}/raw/{{subject}}/models_reg/{{expression}}.obj", OVERLAY_SCANS),
    output:
        report("results/figures/alignment_overlay.png",
               caption="../workflow/report/alignment_overlay.rst", category="Figures"),
    params:
        prepared=lambda w, input: [str(Path(c).parent) for c in input.cameras],
    conda:
        "../envs/geometry.yaml"
    log:
        f"{DATA}/logs/alignment_figure.log",
    benchmark:
        f"{DATA}/benchmarks/alignment_figure.tsv"
    shell:
        "python -m facerecon.images.overlay --prepared {params.prepared:q}"
        " --scans {input.scans:q} --out {output:q} > {log:q} 2>&1"
